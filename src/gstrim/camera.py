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
    # How the file becomes `image`: composite RGBA over this colour, undistort, resize to (width, height).
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    undistortion: Undistortion | None = None
    _image: torch.Tensor | None = field(default=None, repr=False)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R = self.viewmat[:3, :3].double().numpy()
        t = self.viewmat[:3, 3].double().numpy()
        return -R.T @ t

    @property
    def image(self) -> torch.Tensor:
        """The photo as an [H, W, 3] float32 tensor in [0, 1], loaded on first use and kept."""
        if self._image is None:
            if self.image_path is None:
                raise GstrimError(f"camera {self.name!r} has no image")
            self._image = torch.from_numpy(load_rgb(self.image_path, self.width, self.height,
                                                    self.background, self.undistortion))
        return self._image

    def set_image(self, image: torch.Tensor) -> None:
        self._image = image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, reading only its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise GstrimError("image file is missing", path) from None
    except OSError as exc:
        raise GstrimError(f"cannot read image ({exc})", path) from None


def load_rgb(path: Path, width: int, height: int, background=(0.0, 0.0, 0.0),
             undistortion: Undistortion | None = None) -> np.ndarray:
    """Read an image file as float32 RGB in [0, 1] at (width, height).

    RGBA is composited over `background` (as 3DGS does for Blender data); a size change uses box
    filtering for integer factors (area average, no ringing) and Lanczos otherwise.
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
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise GstrimError("image file is missing", path) from None
    except OSError as exc:
        raise GstrimError(f"cannot read image ({exc})", path) from None
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4]
        arr = arr[:, :, :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    if undistortion is not None:
        arr = undistortion.image(arr)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)
