"""c3dgs's per-Gaussian sensitivities (Niedermayr et al. 2024, §3.1, `compress.py:calc_importance`).

The sensitivity of a parameter is the mean over all training pixels of |d E / d p|, E the sum of a view's
rendered image on a black background, summed over views (each view's gradient taken in absolute value
before summing). A Gaussian's colour sensitivity is the largest over its SH coefficients (DC and higher
bands, 48 values at degree 3); its shape sensitivity the largest over the 6 entries of its normalised
covariance R diag(u^2) R^T, u = scale / ||scale|| (the covariance is that times ||scale||^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim import progress
from gstrim.camera import Camera
from gstrim.compress.covariance import normalized_covariance, symmetric
from gstrim.render.cpu import RasterizePixels
from gstrim.render.project import project_covariance
from gstrim.render.sh import sh_to_rgb
from gstrim.scene import GaussianScene


@dataclass
class Sensitivity:
    color: torch.Tensor  # [N]
    shape: torch.Tensor  # [N]


def sensitivity(scene: GaussianScene, cameras: list[Camera], sh_degree: int | None = None) -> Sensitivity:
    """One render and backward per view (the CPU rasterizer's pixel stage, whatever device trains)."""
    scene = scene.to("cpu")
    degree = scene.sh_degree if sh_degree is None else sh_degree
    with torch.no_grad():
        ncov = normalized_covariance(scene.quats, scene.scales)
        norm2 = torch.exp(scene.scales).square().sum(-1)
        opacities = scene.activated_opacities()
    sh0 = scene.sh0.detach().clone().requires_grad_(True)
    shN = scene.shN.detach().clone().requires_grad_(True)
    ncov = ncov.requires_grad_(True)
    dtype = scene.means.dtype
    g_color = torch.zeros(len(scene), 1 + shN.shape[1], 3, dtype=dtype)
    g_shape = torch.zeros(len(scene), 6, dtype=dtype)
    black = torch.zeros(3, dtype=dtype)
    pixels = 0
    for camera in progress.track(cameras, "sensitivity"):
        viewmat, K = camera.viewmat.to(dtype), camera.K.to(dtype)
        proj = project_covariance(scene.means, symmetric(ncov) * norm2[:, None, None], viewmat, K, camera.width,
                                  camera.height)
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_rgb(degree, sh0, shN, scene.means - campos)
        image, _ = RasterizePixels.apply(proj.means2d, proj.conics, colors, opacities, proj.radii, proj.depths,
                                         camera.width, camera.height, black)
        g0, gN, gc = torch.autograd.grad(image.sum(), (sh0, shN, ncov), allow_unused=True)
        for grad, target in ((g0, g_color[:, :1]), (gN, g_color[:, 1:]), (gc, g_shape)):
            if grad is not None:  # None: nothing of it is drawn (unused SH bands, nothing in view)
                target += grad.abs()
        pixels += camera.width * camera.height
    return Sensitivity(color=g_color.flatten(1).amax(1) / pixels, shape=g_shape.amax(1) / pixels)
