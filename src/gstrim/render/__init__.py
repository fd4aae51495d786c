"""`rasterize(scene, camera, ...)`: one entry point for every renderer of gstrim.

Backends: 'cpu' (Numba kernels; per-Gaussian stages in torch) and, on NVIDIA GPUs, 'gsplat'. 'auto' picks
gsplat when CUDA is available and the scene lives on the GPU, the CPU backend otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim.data.camera import Camera
from gstrim.render.project import Projection, project
from gstrim.render.sh import sh_to_rgb
from gstrim.scene import GaussianScene

BACKENDS = ("auto", "cpu")


@dataclass
class RenderOutput:
    image: torch.Tensor  # [H, W, 3]
    alpha: torch.Tensor  # [H, W]
    means2d: torch.Tensor  # [N, 2] pixels; call .retain_grad() before backward to read its gradient
    radii: torch.Tensor  # [N] int32, 0 where the Gaussian is not drawn
    depths: torch.Tensor  # [N]
    colors: torch.Tensor  # [N, 3] view-dependent colours
    width: int
    height: int

    @property
    def visible(self) -> torch.Tensor:
        return self.radii > 0

    def normalized_means2d_grad(self) -> torch.Tensor:
        """dL/d(means2d) in the units of the 3DGS densification statistic: pixel gradient times W/2 and H/2
        (INRIA `backward.cu` and gsplat's DefaultStrategy both scale it so)."""
        if self.means2d.grad is None:
            raise RuntimeError("means2d has no gradient: call out.means2d.retain_grad() before backward()")
        scale = torch.tensor([0.5 * self.width, 0.5 * self.height], dtype=self.means2d.grad.dtype)
        return self.means2d.grad * scale


def rasterize(scene: GaussianScene, camera: Camera, *, sh_degree: int | None = None,
              background: torch.Tensor | tuple | None = None, backend: str = "auto") -> RenderOutput:
    """Render `scene` from `camera`; differentiable w.r.t. every scene parameter."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    from gstrim.render.cpu import RasterizePixels

    dtype = scene.means.dtype
    degree = scene.sh_degree if sh_degree is None else sh_degree
    bg = torch.as_tensor(camera.background if background is None else background, dtype=dtype)
    viewmat, K = camera.viewmat.to(dtype), camera.K.to(dtype)
    proj: Projection = project(scene.means, scene.quats, scene.scales, viewmat, K, camera.width, camera.height)
    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    colors = sh_to_rgb(degree, scene.sh0, scene.shN, scene.means - campos)
    opacities = torch.sigmoid(scene.opacities)
    image, alpha = RasterizePixels.apply(proj.means2d, proj.conics, colors, opacities, proj.radii, proj.depths,
                                         camera.width, camera.height, bg)
    return RenderOutput(image, alpha, proj.means2d, proj.radii, proj.depths, colors, camera.width, camera.height)


__all__ = ["BACKENDS", "RenderOutput", "rasterize"]
