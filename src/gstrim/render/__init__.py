"""`rasterize(scene, camera, ...)`: one entry point for every renderer of gstrim.

Backends: 'cpu' (Numba kernels for the per-Gaussian and the pixel stages) and, on NVIDIA GPUs, 'gsplat'. 'auto' picks
gsplat when the scene lives on a CUDA device, the CPU backend otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim import devices
from gstrim.camera import Camera
from gstrim.errors import GstrimError
from gstrim.render.gsplat_backend import gsplat_available, rasterize_gsplat
from gstrim.render.project import Projection, project
from gstrim.render.sh import check_sh_degree, sh_to_rgb
from gstrim.scene import GaussianScene

BACKENDS = ("auto", "cpu", "gsplat")


@dataclass
class RenderOutput:
    image: torch.Tensor  # [H, W, 3]
    alpha: torch.Tensor  # [H, W]
    # means2d and depths are defined only where radii > 0 (gsplat leaves the others unset)
    means2d: torch.Tensor  # [N, 2] pixels ([1, N, 2] from gsplat); .retain_grad() it before backward
    radii: torch.Tensor  # [N] int32, 0 where the Gaussian is not drawn
    depths: torch.Tensor  # [N] camera-space z
    colors: torch.Tensor  # [N, 3] view-dependent colours
    width: int
    height: int

    @property
    def visible(self) -> torch.Tensor:
        return self.radii > 0

    def normalized_means2d_grad(self) -> torch.Tensor:
        """dL/d(means2d) in the units of the 3DGS densification statistic: pixel gradient times W/2 and H/2
        (INRIA `backward.cu` and gsplat's DefaultStrategy both scale it so)."""
        grad = self.means2d.grad
        if grad is None:
            raise RuntimeError("means2d has no gradient: call out.means2d.retain_grad() before backward()")
        grad = grad.reshape(-1, 2)
        return grad * torch.tensor([0.5 * self.width, 0.5 * self.height], dtype=grad.dtype, device=grad.device)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when gsplat and a GPU are available (the gsplat backend), else the CPU."""
    if device == "auto":
        device = "cuda" if gsplat_available() else "cpu"
    if torch.device(device).type == "cuda" and not gsplat_available():
        raise GstrimError("CUDA rendering needs the gsplat package and a CUDA GPU (pip install gstrim[gpu])")
    return torch.device(device)


def rasterize(scene: GaussianScene, camera: Camera, *, sh_degree: int | None = None,
              background: torch.Tensor | tuple | None = None, backend: str = "auto") -> RenderOutput:
    """Render `scene` from `camera`; differentiable w.r.t. every scene parameter."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    device = scene.means.device
    if backend == "auto":
        backend = "cpu" if devices.uses_cpu_kernels(device) else "gsplat"
    if backend == "gsplat" and not gsplat_available():
        raise GstrimError("the gsplat backend needs the gsplat package and a CUDA GPU (pip install gstrim[gpu])")
    if backend == "cpu" and device.type != "cpu":
        raise GstrimError(f"the cpu backend renders CPU tensors; the scene is on {device}")
    dtype = scene.means.dtype
    degree = scene.sh_degree if sh_degree is None else sh_degree
    bg = torch.as_tensor(camera.background if background is None else background, dtype=dtype, device=device)
    viewmat, K = camera.viewmat.to(device, dtype), camera.K.to(device, dtype)
    if backend == "gsplat":
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_rgb(degree, scene.sh0, scene.shN, scene.means - campos)
        image, alpha, means2d, radii, depths = rasterize_gsplat(
            scene.means, scene.quats, scene.scales, scene.opacities, colors, viewmat, K, camera.width,
            camera.height, bg)
        return RenderOutput(image, alpha, means2d, radii, depths, colors, camera.width, camera.height)

    from gstrim.render.cpu import ProjectAndShade, RasterizePixels

    check_sh_degree(degree, scene.shN)
    means2d, conics, colors, depths, radii = ProjectAndShade.apply(
        scene.means, scene.quats, scene.scales, scene.sh0, scene.shN, viewmat, K, camera.width, camera.height, degree)
    image, alpha = RasterizePixels.apply(means2d, conics, colors, scene.activated_opacities(), radii, depths,
                                         camera.width, camera.height, bg)
    return RenderOutput(image, alpha, means2d, radii, depths, colors, camera.width, camera.height)


@dataclass
class PixelStatistics:
    projection: Projection
    hits: torch.Tensor  # [N] pixels where each Gaussian is blended
    max_weight: torch.Tensor  # [N] largest blending weight alpha * T over the pixels
    # [N, 15] upper triangle of the sum over pixels and channels of h h^T, h = d pixel / d(means2d, conic)
    fisher2d: torch.Tensor


def pixel_statistics(scene: GaussianScene, camera: Camera, *, sh_degree: int | None = None,
                     background: torch.Tensor | tuple | None = None, fisher: bool = True) -> PixelStatistics:
    """Per-Gaussian pixel statistics of one view for pruning scores (LightGaussian, PUP-3DGS), on the scene's
    device: the CPU kernels on the CPU, torch on a GPU (`pair_statistics`, the same rules). `fisher=False`
    skips the Fisher entries (`fisher2d` is then [N, 0]), the costly part."""
    with torch.no_grad():
        device, dtype = scene.means.device, scene.means.dtype
        degree = scene.sh_degree if sh_degree is None else sh_degree
        bg = torch.as_tensor(camera.background if background is None else background, dtype=dtype, device=device)
        viewmat, K = camera.viewmat.to(device, dtype), camera.K.to(device, dtype)
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_rgb(degree, scene.sh0, scene.shN, scene.means - campos)
        proj = project(scene.means, scene.quats, scene.scales, viewmat, K, camera.width, camera.height)
        opacities, size = scene.activated_opacities(), (camera.width, camera.height)
        if devices.uses_cpu_kernels(device):
            from gstrim.render.cpu import pixel_statistics as kernel

            hits, max_weight, fisher2d = kernel(proj.means2d, proj.conics, colors, opacities, proj.radii, proj.depths,
                                                *size, bg, fisher)
        else:
            from gstrim.render.pair_statistics import pixel_statistics as on_device

            hits, max_weight, fisher2d = on_device(proj, colors, opacities, *size, bg, fisher)
    return PixelStatistics(proj, hits, max_weight, fisher2d)


__all__ = ["BACKENDS", "PixelStatistics", "RenderOutput", "pixel_statistics", "rasterize", "resolve_device"]
