"""Held-out evaluation as the 3DGS papers report it, and renders to disk.

Renders are quantised to 8 bits before scoring, because the INRIA protocol (`render.py` then
`metrics.py`) scores the saved PNGs. Defaults follow that protocol too: SSIM with zero padding ('3dgs')
and LPIPS-VGG fed [0, 1] images, as graphdeco-inria/gaussian-splatting's `metrics.py` does (its issue
#1239); both conventions are labelled in the results.
Results are `records.Evaluation`s, written to `results.json` / `per_view.json` keyed by method name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gstrim import progress
from gstrim.camera import Camera
from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.metrics import LPIPS, psnr, ssim
from gstrim.records import Evaluation
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
                 description: str = "render", keep_on_device: bool = False
                 ) -> Iterator[tuple[int, Camera, torch.Tensor, float]]:
    """(index, camera, 8-bit-quantised render, render seconds) per view, without gradients, on the GPU (gsplat)
    when `device` is 'auto' and one is available; the render comes back to the CPU unless `keep_on_device`."""
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
            yield i, cam, quantize(image if keep_on_device else image.cpu()), seconds


def write_renders(scene: GaussianScene, cameras: list[Camera], out_dir: Path, *, background=None,
                  device: str = "auto") -> int:
    """`out_dir/renders/00000.png` ... and the matching `out_dir/gt/00000.png` (INRIA's `render.py` layout)."""
    out_dir = Path(out_dir)
    for i, cam, image, _ in render_views(scene, cameras, background=background, device=device):
        save_png(out_dir / "renders" / view_name(i), image)
        save_png(out_dir / "gt" / view_name(i), cam.image)
    return len(cameras)


def conditions(cameras: list[Camera], background, dataset: str | Path | None = None, split: str = "test") -> dict:
    """What a score depends on besides the scene: the views (dataset, split, resolution) and the background."""
    sizes = sorted({f"{c.width}x{c.height}" for c in cameras})
    named = {(0.0, 0.0, 0.0): "black", (1.0, 1.0, 1.0): "white"}
    bg = named.get(tuple(float(v) for v in background), str(tuple(background))) if background is not None else "black"
    root = str(Path(dataset).resolve()) if dataset is not None else None
    return {"dataset": root, "split": split, "resolution": ",".join(sizes), "background": bg}


def evaluate(scene: GaussianScene, cameras: list[Camera], *, label: str = "ours", background=None,
             lpips_net: str = "vgg", lpips_input: str = "3dgs", ssim_mode: str = "3dgs",
             device: str = "auto", dataset: str | Path | None = None, split: str = "test") -> Evaluation:
    """PSNR, SSIM and LPIPS of every view's render against its photo, computed where the render is (a GPU run's
    metrics on the GPU); `dataset` and `split` name the views in the record's conditions."""
    if not cameras:
        raise GstrimError("no views to evaluate (the dataset has no test split?)")
    lpips = LPIPS(lpips_net, lpips_input)
    measured = conditions(cameras, background, dataset, split) | {"ssim": ssim_mode, "lpips": lpips.label}
    result = Evaluation(label, len(scene), lpips.label, ssim_mode, conditions=measured)
    with torch.no_grad():
        for i, cam, image, seconds in render_views(scene, cameras, background=background, device=device,
                                                   description="evaluate", keep_on_device=True):
            target = cam.image_on(image.device)
            result.per_view[view_name(i)] = {
                "PSNR": float(psnr(image, target)), "SSIM": float(ssim(image, target, ssim_mode)),
                "LPIPS": float(lpips(image, target)), "render_ms": 1000 * seconds,
            }
    return result
