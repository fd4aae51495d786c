"""antimatter15 `.splat` files: 32 bytes per Gaussian, no SH beyond DC.

Layout (antimatter15/splat `convert.py`, also gsplat's exporter): position float32 x3, linear scale
float32 x3, RGBA uint8 (RGB = 0.5 + SH_C0 * f_dc, A = sigmoid(opacity)), rotation uint8 x4 as
q * 128 + 128 of the normalised w x y z quaternion. Writers sort by exp(sum of log scales) * opacity,
largest first, as `convert.py` does, so progressive web viewers draw the big splats first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.scene import GaussianScene, num_sh_rest, rgb_to_sh0, sh0_to_rgb

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == 32
# Opacity is stored in 1/255 steps; keep 0 and 255 away from infinite logits.
_ALPHA_EPS = 1e-6


def read_splat(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    path = Path(path)
    if not path.is_file():
        raise GstrimError("no such file", path)
    data = path.read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise GstrimError(
            f"truncated or not a .splat file: {len(data)} bytes is not a multiple of 32", path
        )
    return scene_from_splat_bytes(data).check_finite(str(path), nonfinite)


def scene_from_splat_bytes(data: bytes) -> GaussianScene:
    rec = np.frombuffer(data, dtype=SPLAT_DTYPE)
    n = len(rec)
    rgba = rec["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], _ALPHA_EPS, 1 - _ALPHA_EPS)
    with np.errstate(divide="ignore"):
        scales = np.log(rec["scale"].astype(np.float64))
    return GaussianScene.from_numpy(
        means=rec["position"],
        scales=scales,
        quats=(rec["rot"].astype(np.float64) - 128.0) / 128.0,
        opacities=np.log(alpha / (1 - alpha)),
        sh0=rgb_to_sh0(rgba[:, None, :3]),
        shN=np.zeros((n, num_sh_rest(0), 3)),
    )


def roundtrip(scene: GaussianScene) -> GaussianScene:
    """What a `.splat` of the scene decodes to, in the scene's order (SH beyond DC dropped)."""
    return scene_from_splat_bytes(splat_bytes(scene, sort=False)).to(scene.means.device)


def splat_bytes(scene: GaussianScene, sort: bool = True) -> bytes:
    p = scene.numpy()
    n = len(scene)
    opacity = 1.0 / (1.0 + np.exp(-p["opacities"].astype(np.float64)))
    order = np.argsort(-np.exp(p["scales"].sum(axis=1)) * opacity, kind="stable") if sort else np.arange(n)
    q = p["quats"].astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rgb = sh0_to_rgb(p["sh0"][:, 0, :].astype(np.float64))
    rec = np.empty(n, dtype=SPLAT_DTYPE)
    rec["position"] = p["means"]
    rec["scale"] = np.exp(p["scales"].astype(np.float64))
    rec["rgba"] = np.clip(np.round(np.concatenate([rgb, opacity[:, None]], axis=1) * 255), 0, 255)
    rec["rot"] = np.clip(np.round(q * 128 + 128), 0, 255)
    return rec[order].tobytes()


def splat_size(n: int, sh_degree: int = 0) -> int:
    """Bytes of a `.splat` file of n Gaussians (whatever their SH degree: only DC is stored)."""
    return SPLAT_DTYPE.itemsize * n


def write_splat(path: str | Path, scene: GaussianScene, sort: bool = True) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(splat_bytes(scene, sort=sort))
