"""`Dataset`: training and test cameras of a capture, its sparse points and its scale.

`load_dataset` recognises a COLMAP capture (`sparse/0` + an image folder) or a Blender / NeRF-synthetic
folder (`transforms_train.json`). Splits follow the 3DGS `--eval` convention: COLMAP images sorted by
name with every 8th (index % 8 == 0) held out; Blender uses its test json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gstrim.camera import MAX_AUTO_WIDTH, Camera, Undistortion, image_size, load_size
from gstrim.data import colmap
from gstrim.data.blender import blender_cameras
from gstrim.errors import ConfigError, GstrimError
from gstrim.options import option
from gstrim.progress import log

BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}


@dataclass
class DataOptions:
    """How a dataset is loaded (`load_dataset` keywords); None: the loader's default, or what a run recorded."""
    images: str | None = option(None, "COLMAP image folder name (default: images, or images_N with --downscale N)")
    downscale: int | None = option(None, "divide the image resolution by N (default: photos wider than 1600 px "
                                   "are scaled to 1600 px wide, as 3DGS does; 1 keeps the full size)")
    background: str | None = option(None, "colour behind RGBA images and renders (default: white for Blender, "
                                    "black for COLMAP)", choices=tuple(BACKGROUNDS))
    missing_images: str | None = option(None, "images named by the dataset but absent: stop (default) or leave "
                                        "those views out", choices=("error", "skip"))

    def given(self) -> dict:
        """The options set, as `load_dataset` keywords."""
        return {k: v for k, v in asdict(self).items() if v is not None}


PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
DISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")


@dataclass
class Dataset:
    root: Path
    kind: str  # "colmap" or "blender"
    train: list[Camera]
    test: list[Camera]
    points: np.ndarray | None  # [P, 3] float32 sparse points (COLMAP), None for Blender
    point_colors: np.ndarray | None  # [P, 3] float32 in [0, 1]
    background: tuple[float, float, float]

    @property
    def extent(self) -> float:
        """Scene scale as 3DGS computes it (`getNerfppNorm`): 1.1 x the largest distance of a training
        camera centre from their mean. Learning rates of positions scale with it."""
        return camera_extent(self.train)

    def split(self, name: str) -> list[Camera]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}")
        return self.train if name == "train" else self.test

    def summary(self) -> dict:
        cams = self.train + self.test
        return {
            "root": str(self.root), "kind": self.kind,
            "train_views": len(self.train), "test_views": len(self.test),
            "resolution": sorted({(c.width, c.height) for c in cams}),
            "points": 0 if self.points is None else len(self.points),
            "extent": round(self.extent, 4),
        }


def camera_extent(cameras: list[Camera]) -> float:
    if not cameras:
        return 1.0
    centers = np.stack([c.center for c in cameras])
    return float(np.linalg.norm(centers - centers.mean(axis=0), axis=1).max() * 1.1)


def resolve_background(background: str | tuple | None, default: str) -> tuple[float, float, float]:
    if background is None:
        background = default
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise GstrimError(f"unknown background {background!r}; use black or white")
        return BACKGROUNDS[background]
    return tuple(float(c) for c in background)


def dataset_kind(path: str | Path) -> str:
    """'blender' (a transforms_train.json) or 'colmap', from the folder's files alone."""
    return "blender" if (Path(path) / "transforms_train.json").is_file() else "colmap"


def load_dataset(
    path: str | Path,
    *,
    images: str | None = None,
    downscale: int | None = None,
    background: str | tuple | None = None,
    test_every: int = 8,
    missing_images: str = "error",
) -> Dataset:
    """Load a COLMAP or Blender dataset.

    images: image folder name for COLMAP (default `images`, or `images_N` when `downscale=N` and that
    folder exists); downscale: divide the resolution by N (resizing on load where no `images_N` exists);
    background: 'black', 'white' or an RGB triple (default white for Blender, black for COLMAP);
    test_every: hold out every n-th COLMAP image (0: no test split); missing_images: 'error' or 'skip'.
    """
    root = Path(path)
    if not root.exists():
        raise GstrimError("no such dataset folder", root)
    if downscale is not None and downscale < 1:
        raise ConfigError(f"{{downscale}} must be >= 1, got {downscale}", "downscale", path=root)
    if missing_images not in ("error", "skip"):
        raise ValueError(f"unknown missing_images policy {missing_images!r}")
    if dataset_kind(root) == "blender":
        bg = resolve_background(background, "white")
        train = blender_cameras(root, "train", bg, downscale, missing_images)
        test = blender_cameras(root, "test", bg, downscale, missing_images) \
            if (root / "transforms_test.json").is_file() else []
        dataset = Dataset(root, "blender", train, test, None, None, bg)
    else:
        sparse = colmap.find_sparse_dir(root)
        if sparse is None:
            raise GstrimError("not a dataset: no transforms_train.json and no COLMAP model (sparse/0)", root)
        dataset = _load_colmap(root, sparse, images, downscale, resolve_background(background, "black"),
                               test_every, missing_images)
    if downscale is None and any(c.width == MAX_AUTO_WIDTH and image_size(c.image_path)[0] > MAX_AUTO_WIDTH
                                 for c in dataset.train + dataset.test):
        log(f"{root}: photos wider than {MAX_AUTO_WIDTH} px are used {MAX_AUTO_WIDTH} px wide, as 3DGS does "
            "(--downscale 1 keeps the full size)")
    return dataset


def _image_folder(root: Path, images: str | None, downscale: int | None,
                  names: list[str]) -> tuple[Path, int | None]:
    """The image folder to read and the downscale still to apply on load.

    With `downscale=N`, `images_N` is used when it holds every image of the model; otherwise the
    full-size `images` are resized on load (some captures ship a partial `images_N`).
    """
    if images is not None:
        folder = root / images
        if not folder.is_dir():
            raise GstrimError("image folder is missing", folder)
        return folder, downscale
    if downscale and downscale > 1:
        folder = root / f"images_{downscale}"
        if folder.is_dir() and all((folder / n).is_file() for n in names):
            return folder, None
    folder = root / "images"
    if not folder.is_dir():
        raise GstrimError("image folder is missing", folder)
    return folder, downscale


def _colmap_intrinsics(cam: colmap.ColmapCamera) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, OpenCV distortion coefficients or None) of a COLMAP camera at its own resolution."""
    p = cam.params
    if cam.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    else:
        fx, fy, cx, cy = p[:4]
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    dist = {
        "SIMPLE_PINHOLE": None, "PINHOLE": None,
        "SIMPLE_RADIAL": lambda: np.array([p[3], 0, 0, 0]),
        "RADIAL": lambda: np.array([p[3], p[4], 0, 0]),
        "OPENCV": lambda: p[4:8].copy(),
        # OpenCV's rational model takes k1 k2 p1 p2 k3 k4 k5 k6 in that order, as COLMAP stores them.
        "FULL_OPENCV": lambda: p[4:12].copy(),
    }[cam.model]
    return K, (dist() if dist else None)


def _load_colmap(root, sparse, images, downscale, background, test_every, missing_images) -> Dataset:
    model = colmap.read_model(sparse)
    for cam in model.cameras.values():
        if cam.model not in PINHOLE_MODELS + DISTORTED_MODELS:
            raise GstrimError(
                f"camera {cam.id} uses the unsupported COLMAP model {cam.model}; supported: "
                f"{', '.join(PINHOLE_MODELS + DISTORTED_MODELS)} (undistort it with COLMAP first)",
                sparse,
            )
    folder, resize = _image_folder(root, images, downscale, [im.name for im in model.images.values()])
    undistortions: dict[tuple, Undistortion] = {}
    cameras = []
    for im in sorted(model.images.values(), key=lambda im: im.name):
        path = folder / im.name
        if not path.is_file():
            if missing_images == "skip":
                continue
            raise GstrimError(f"image {im.name!r} of the COLMAP model is missing", path)
        cam = model.cameras[im.camera_id]
        width, height = load_size(*image_size(path), resize or (1 if downscale else None))
        K, dist = _colmap_intrinsics(cam)
        # Scale intrinsics by the actual image size, not by the folder name.
        K[0] *= width / cam.width
        K[1] *= height / cam.height
        undistortion = None
        if dist is not None:
            key = (cam.id, width, height)
            if key not in undistortions:
                undistortions[key] = Undistortion.create(K, dist, width, height)
            undistortion = undistortions[key]
            K = undistortion.K_dst
        viewmat = np.eye(4)
        viewmat[:3, :3] = colmap.qvec_to_rotmat(im.qvec)
        viewmat[:3, 3] = im.tvec
        cameras.append(Camera(
            name=im.name, width=width, height=height,
            K=torch.tensor(K, dtype=torch.float32), viewmat=torch.tensor(viewmat, dtype=torch.float32),
            image_path=path, background=background, undistortion=undistortion,
        ))
    if not cameras:
        raise GstrimError("the COLMAP model has no usable images", sparse)
    if test_every and test_every > 0:
        test = [c for i, c in enumerate(cameras) if i % test_every == 0]
        train = [c for i, c in enumerate(cameras) if i % test_every != 0]
    else:
        train, test = cameras, []
    return Dataset(root, "colmap", train, test, model.points_xyz.astype(np.float32),
                   model.points_rgb.astype(np.float32) / 255.0, background)
