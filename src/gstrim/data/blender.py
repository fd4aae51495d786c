"""Blender / NeRF-synthetic datasets: `transforms_{train,test}.json` with RGBA PNG frames.

Each frame's `transform_matrix` is camera-to-world in Blender/OpenGL axes (y up, camera looking down -z);
focal length from `camera_angle_x` (horizontal field of view), principal point at the image centre, as
the NeRF authors' loader and 3DGS's `readCamerasFromTransforms` do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from gstrim.camera import Camera, image_size, load_size
from gstrim.errors import GstrimError
from gstrim.io.limits import read_text_bytes

BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])  # flip camera y and z axes


def read_transforms(path: Path) -> dict:
    try:
        meta = json.loads(read_text_bytes(path))
    except FileNotFoundError:
        raise GstrimError("file is missing", path) from None
    except json.JSONDecodeError as exc:
        raise GstrimError(f"invalid JSON ({exc.msg} at line {exc.lineno})", path) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise GstrimError(f"invalid JSON ({type(exc).__name__})", path) from None
    if not isinstance(meta, dict) or "camera_angle_x" not in meta or not isinstance(meta.get("frames"), list):
        raise GstrimError("not a Blender transforms file (needs 'camera_angle_x' and 'frames')", path)
    return meta


def frame_path(root: Path, file_path: str) -> Path:
    p = root / file_path
    return p if p.suffix else p.with_suffix(".png")


def blender_cameras(root: Path, split: str, background, downscale: int | None,
                    missing_images: str) -> list[Camera]:
    path = root / f"transforms_{split}.json"
    meta = read_transforms(path)
    cameras = []
    for i, frame in enumerate(meta["frames"]):
        try:
            image_path = frame_path(root, frame["file_path"])
            c2w = np.asarray(frame["transform_matrix"], np.float64).reshape(4, 4) @ BLENDER_TO_OPENCV
        except (KeyError, ValueError, TypeError):
            raise GstrimError(f"frame {i} lacks a valid 'file_path' or 'transform_matrix'", path) from None
        if not image_path.is_file():
            if missing_images == "skip":
                continue
            raise GstrimError(f"image referenced by {path.name} is missing", image_path)
        width, height = load_size(*image_size(image_path), downscale)
        focal = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
        cameras.append(Camera(
            name=image_path.relative_to(root).as_posix(), width=width, height=height,
            K=torch.tensor(K, dtype=torch.float32),
            viewmat=torch.tensor(np.linalg.inv(c2w), dtype=torch.float32),
            image_path=image_path, background=background,
        ))
    return cameras
