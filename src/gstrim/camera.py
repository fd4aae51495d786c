"""`Camera`: a pinhole view with its photo, in the conventions gsplat uses.

`viewmat` is world-to-camera (OpenCV axes: x right, y down, z forward). `K` uses the pixel-corner
convention shared by COLMAP and gsplat: the centre of pixel (row i, column j) is at (j + 0.5, i + 0.5),
so scaling an image by s scales every entry of K by s exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from gstrim.errors import GstrimError


@dataclass
class Undistortion:
    """Maps a distorted pinhole image (intrinsics `K_src`, OpenCV coefficients `dist`) to `K_dst`."""

    K_src: np.ndarray
    dist: np.ndarray
    K_dst: np.ndarray
    width: int
    height: int
    _maps: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @staticmethod
    def _to_cv(K: np.ndarray) -> np.ndarray:
        # OpenCV puts pixel centres at integer coordinates: shift the principal point by half a pixel.
        K = K.copy()
        K[:2, 2] -= 0.5
        return K

    @classmethod
    def create(cls, K_src: np.ndarray, dist: np.ndarray, width: int, height: int) -> Undistortion:
        """Choose the undistorted intrinsics so that every output pixel has source data (alpha = 0)."""
        K_cv, _ = cv2.getOptimalNewCameraMatrix(cls._to_cv(K_src), dist, (width, height), 0, (width, height))
        K_dst = K_cv.copy()
        K_dst[:2, 2] += 0.5
        return cls(K_src, dist, K_dst, width, height)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        if self._maps is None:
            self._maps = cv2.initUndistortRectifyMap(
                self._to_cv(self.K_src), self.dist, None, self._to_cv(self.K_dst),
                (self.width, self.height), cv2.CV_32FC1,
            )
        return cv2.remap(rgb, *self._maps, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    def points(self, uv: np.ndarray) -> np.ndarray:
        """Distorted pixel coordinates [M, 2] -> undistorted ones (corner convention both sides)."""
        pts = (np.asarray(uv, np.float64) - 0.5).reshape(-1, 1, 2)
        out = cv2.undistortPoints(pts, self._to_cv(self.K_src), self.dist, P=self._to_cv(self.K_dst))
        return out.reshape(-1, 2) + 0.5


@dataclass
class Camera:
    name: str
    width: int
    height: int
    K: torch.Tensor  # [3, 3] float32
    viewmat: torch.Tensor  # [4, 4] float32, world-to-camera
    image_path: Path | None = None
    # How the file becomes `image`: undistort and resize to (width, height), composite RGBA over this colour.
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    undistortion: Undistortion | None = None
    _pixels: torch.Tensor | None = field(default=None, repr=False)  # the photo as read, uint8
    _image: torch.Tensor | None = field(default=None, repr=False)  # a float target given by `set_image`

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R = self.viewmat[:3, :3].double().numpy()
        t = self.viewmat[:3, 3].double().numpy()
        return -R.T @ t

    @property
    def pixels(self) -> torch.Tensor:
        """The photo as uint8 [H, W, 3] (RGB) or [H, W, 4] (RGBA), read on first use and kept: a quarter of
        the memory of float32, so that a capture's photos fit where its float images would not."""
        if self._pixels is None:
            if self.image_path is None:
                raise GstrimError(f"camera {self.name!r} has no image")
            self._pixels = torch.from_numpy(load_pixels(self.image_path, self.width, self.height,
                                                        self.undistortion))
        return self._pixels

    @property
    def image(self) -> torch.Tensor:
        """The target as an [H, W, 3] float32 tensor in [0, 1], decoded from `pixels` on each use."""
        return self.decode(self.stored())

    def stored(self) -> torch.Tensor:
        """What this camera keeps of its target (uint8 pixels, or the float image given): the thing to move
        to a device once and `decode` there on each use."""
        return self._image if self._image is not None else self.pixels

    def image_on(self, device: torch.device | str) -> torch.Tensor:
        """`image`, decoded on `device` (the stored 8-bit photo is what moves there, a quarter of the float)."""
        return self.decode(self.stored().to(device))

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """`stored` (as `stored()` returns it, on any device) -> the float image."""
        return stored if stored.is_floating_point() else decode_pixels(stored, self.background)

    def set_image(self, image: torch.Tensor) -> None:
        self._image = image


# 3DGS's `-r -1` default (utils/camera_utils.py, loadCam): photos wider than 1.6K are scaled to 1600 px wide.
MAX_AUTO_WIDTH = 1600


def load_size(width: int, height: int, downscale: int | None) -> tuple[int, int]:
    """The size a photo of (width, height) is used at: divided by `downscale` when one is given (1 keeps
    the full size), else capped at 1600 px wide as 3DGS does by default."""
    if downscale:
        return round(width / downscale), round(height / downscale)
    if width > MAX_AUTO_WIDTH:
        return MAX_AUTO_WIDTH, round(height * MAX_AUTO_WIDTH / width)
    return width, height


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise GstrimError("image file is missing", path) from None
    except OSError as exc:
        raise GstrimError(f"cannot read image ({exc})", path) from None


def load_pixels(path: Path, width: int, height: int, undistortion: Undistortion | None = None) -> np.ndarray:
    """Read an image file as uint8 RGB, or RGBA when it has transparency, at (width, height).

    A size change uses box filtering for integer factors (area average, no ringing) and Lanczos otherwise;
    undistortion remaps the uint8 channels (alpha included) before any compositing.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.size != (width, height):
                fx, fy = im.size[0] / width, im.size[1] / height
                if fx == fy and fx.is_integer():
                    im = im.reduce(int(fx))
                else:
                    im = im.resize((width, height), Image.Resampling.LANCZOS)
            has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
            arr = np.array(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise GstrimError("image file is missing", path) from None
    except OSError as exc:
        raise GstrimError(f"cannot read image ({exc})", path) from None
    if undistortion is not None:
        arr = undistortion.image(arr)
    return np.ascontiguousarray(arr)


def decode_pixels(pixels: torch.Tensor, background=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """uint8 [H, W, 3|4] -> float32 RGB in [0, 1]; RGBA is composited over `background` (as 3DGS does for
    Blender data)."""
    arr = pixels.to(torch.float32) / 255.0
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4]
        bg = torch.tensor(background, dtype=torch.float32, device=arr.device)
        arr = (arr[:, :, :3] * alpha + bg * (1.0 - alpha)).clamp_(0.0, 1.0)
    return arr


def spread_views(cameras: list[Camera], count: int) -> list[Camera]:
    """At most `count` of the cameras, evenly spread over the list (first and last included)."""
    return [cameras[round(i * (len(cameras) - 1) / max(count - 1, 1))] for i in range(min(count, len(cameras)))]
