"""Cameras between the training cameras, for distillation: views the capture never took, near those it did
(`trim --distill-views`). Each lies on the way from a camera to its nearest neighbour: centre interpolated,
rotation slerped (Shoemake 1985)."""

from __future__ import annotations

import math

import numpy as np
import torch

from gstrim.camera import Camera
from gstrim.errors import ConfigError


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method: the largest diagonal term)."""
    t = np.trace(R)
    if t > 0:
        s = 2 * math.sqrt(1 + t)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(1 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = s / 4
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def _matrix_from_quat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    if a @ b < 0:
        b = -b  # the shorter way round
    dot = float(np.clip(a @ b, -1.0, 1.0))
    if dot > 0.9995:
        q = a + t * (b - a)
    else:
        theta = math.acos(dot)
        q = (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)
    return q / np.linalg.norm(q)


def between_views(cameras: list[Camera], count: int, seed: int = 0) -> list[Camera]:
    """`count` virtual cameras between the given ones: each on the way from a random camera to its nearest
    neighbour (centre interpolated, rotation slerped, at a random fraction in [0.25, 0.75]), with the first
    camera's intrinsics and size: views the capture never took, near those it did."""
    if len(cameras) < 2:
        raise ConfigError("{distill_views} needs at least two training views to place views between", "distill_views")
    rng = np.random.default_rng(seed + 7)
    centres = np.stack([c.center for c in cameras])
    views = []
    for k in range(count):
        i = int(rng.integers(len(cameras)))
        d = np.linalg.norm(centres - centres[i], axis=1)
        d[i] = np.inf
        j, t = int(np.argmin(d)), float(rng.uniform(0.25, 0.75))
        a, b = cameras[i].viewmat.double().numpy(), cameras[j].viewmat.double().numpy()
        R = _matrix_from_quat(_slerp(_quat_from_matrix(a[:3, :3]), _quat_from_matrix(b[:3, :3]), t))
        centre = (1 - t) * centres[i] + t * centres[j]
        viewmat = np.eye(4)
        viewmat[:3, :3], viewmat[:3, 3] = R, -R @ centre
        views.append(Camera(f"between_{k:04d}", cameras[i].width, cameras[i].height, cameras[i].K.clone(),
                            torch.from_numpy(viewmat).float()))
    return views
