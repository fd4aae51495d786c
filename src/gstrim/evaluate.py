"""Held-out evaluation as the 3DGS papers report it, and renders to disk.

Renders are quantised to 8 bits before scoring, because the INRIA protocol (`render.py` then
`metrics.py`) scores the saved PNGs. Defaults follow that protocol too: SSIM with zero padding ('3dgs')
and LPIPS-VGG fed [0, 1] images; both are labelled in the results (`../shared/notes/metrics-formats-cli.md`).
Results go to `results.json` / `per_view.json` keyed by method name (`ours_<iteration>`), as INRIA writes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gstrim import progress
from gstrim.data.camera import Camera
from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path, write_text_atomic
from gstrim.metrics import LPIPS, psnr, ssim
from gstrim.render import rasterize, resolve_device
from gstrim.scene import GaussianScene


def quantize(image: torch.Tensor) -> torch.Tensor:
    """The image as a PNG stores it: clamped to [0, 1] and rounded to 8 bits."""
    return torch.round(image.clamp(0, 1) * 255) / 255


def save_png(path: Path, image: torch.Tensor) -> None:
    array = (image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array), "RGB").save(tmp, format="PNG")


def view_name(index: int) -> str:
    return f"{index:05d}.png"  # INRIA's naming of renders


def render_views(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto",
                 description: str = "render") -> Iterator[tuple[int, Camera, torch.Tensor, float]]:
    """(index, camera, 8-bit-quantised render on the CPU, render seconds) per view, without gradients, on
    the GPU (gsplat) when `device` is 'auto' and one is available."""
    scene = scene.to(resolve_device(device))
    cuda = scene.means.device.type == "cuda"
    with torch.no_grad():
        if cameras:  # untimed warm-up: the first call loads the compiled kernels
            rasterize(scene, cameras[0], background=background)
        for i, cam in enumerate(progress.track(cameras, description)):
            t0 = time.perf_counter()
            image = rasterize(scene, cam, background=background).image
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            yield i, cam, quantize(image.cpu()), seconds


def write_renders(scene: GaussianScene, cameras: list[Camera], out_dir: Path, *, background=None,
                  device: str = "auto") -> int:
    """`out_dir/renders/00000.png` ... and the matching `out_dir/gt/00000.png` (INRIA's `render.py` layout)."""
    out_dir = Path(out_dir)
    for i, cam, image, _ in render_views(scene, cameras, background=background, device=device):
        save_png(out_dir / "renders" / view_name(i), image)
        save_png(out_dir / "gt" / view_name(i), cam.image)
    return len(cameras)


@dataclass
class Evaluation:
    label: str
    gaussians: int
    lpips_label: str
    ssim_mode: str
    per_view: dict[str, dict[str, float]] = field(default_factory=dict)  # view -> {PSNR, SSIM, LPIPS, ms}

    def mean(self, key: str) -> float:
        return float(np.mean([v[key] for v in self.per_view.values()])) if self.per_view else float("nan")

    def summary(self) -> dict:
        return {
            "PSNR": self.mean("PSNR"), "SSIM": self.mean("SSIM"), "LPIPS": self.mean("LPIPS"),
            "views": len(self.per_view), "gaussians": self.gaussians,
            "render_ms": self.mean("render_ms"), "ssim_mode": self.ssim_mode, "lpips": self.lpips_label,
        }


def evaluate(scene: GaussianScene, cameras: list[Camera], *, label: str = "ours", background=None,
             lpips_net: str = "vgg", lpips_input: str = "3dgs", ssim_mode: str = "3dgs",
             device: str = "auto") -> Evaluation:
    """PSNR, SSIM and LPIPS of every view's render against its photo."""
    if not cameras:
        raise GstrimError("no views to evaluate (the dataset has no test split?)")
    lpips = LPIPS(lpips_net, lpips_input)
    result = Evaluation(label, len(scene), lpips.label, ssim_mode)
    with torch.no_grad():
        for i, cam, image, seconds in render_views(scene, cameras, background=background, device=device,
                                                   description="evaluate"):
            target = cam.image
            result.per_view[view_name(i)] = {
                "PSNR": float(psnr(image, target)), "SSIM": float(ssim(image, target, ssim_mode)),
                "LPIPS": float(lpips(image, target)), "render_ms": 1000 * seconds,
            }
    return result


def write_results(model_dir: Path, evaluation: Evaluation) -> None:
    """Merge into `results.json` and `per_view.json` of a model folder (other methods' entries are kept)."""
    model_dir = Path(model_dir)
    per_metric = {key: {view: m[key] for view, m in evaluation.per_view.items()} for key in ("SSIM", "PSNR", "LPIPS")}
    merge_json(model_dir / "results.json", evaluation.label, evaluation.summary())
    merge_json(model_dir / "per_view.json", evaluation.label, per_metric)


def merge_json(path: Path, key: str, entry) -> None:
    """Set `key` in a JSON object file, keeping its other entries (an unreadable file starts afresh)."""
    existing = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
    existing[key] = entry
    write_text_atomic(path, json.dumps(existing, indent=1))
