"""c3dgs's per-Gaussian sensitivities (Niedermayr et al. 2024, §3.1, `compress.py:calc_importance`).

The sensitivity of a parameter is the mean over all training pixels of |d E / d p|, E the sum of a view's
rendered image on a black background, summed over views (each view's gradient taken in absolute value
before summing). A Gaussian's colour sensitivity is the largest over its SH coefficients (DC and higher
bands, 48 values at degree 3); its shape sensitivity the largest over the 6 entries of its normalised
covariance R diag(u^2) R^T, u = scale / ||scale|| (the covariance is that times ||scale||^2). Its `rest`
sensitivity, the largest over the higher bands alone, tells which Gaussians' view-dependent colour matters
(`compress --sh-share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim import devices, progress
from gstrim.camera import Camera
from gstrim.compress.covariance import normalized_covariance, symmetric
from gstrim.render import resolve_device
from gstrim.render.gsplat_backend import rasterize_gsplat
from gstrim.render.project import project_covariance
from gstrim.render.sh import sh_to_rgb
from gstrim.scene import GaussianScene, row_chunks


@dataclass
class Sensitivity:
    color: torch.Tensor  # [N]
    shape: torch.Tensor  # [N]
    rest: torch.Tensor | None = None  # [N], the higher SH bands only (None in caches written before it)

    def subset(self, keep: torch.Tensor) -> Sensitivity:
        return Sensitivity(self.color[keep], self.shape[keep], None if self.rest is None else self.rest[keep])


def _project_and_shade(means, ncov, norm2, sh0, shN, viewmat, K, camera: Camera, degree: int):
    """(means2d, conics, radii, depths, colours) of some Gaussians in a view, differentiable w.r.t. ncov and SH."""
    proj = project_covariance(means, symmetric(ncov) * norm2[:, None, None], viewmat, K, camera.width,
                              camera.height)
    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    return proj.means2d, proj.conics, proj.radii, proj.depths, sh_to_rgb(degree, sh0, shN, means - campos)


def sensitivity(scene: GaussianScene, cameras: list[Camera], sh_degree: int | None = None,
                chunk: int | None = None, device: str = "cpu") -> Sensitivity:
    """One render and backward per view, on `device`: on the CPU, the pixel stage's gradients w.r.t. conics
    and colours, then the chain to the covariance and SH `chunk` Gaussians at a time (default
    `scene.CHUNK_ROWS`): autograd holds one chunk's intermediates, not the scene's (a few GB at a million
    Gaussians), and every Gaussian's gradient is the same as in one piece. On a GPU, gsplat's render of the
    covariances, differentiated by autograd in one piece (c3dgs's way)."""
    degree = scene.sh_degree if sh_degree is None else sh_degree
    target = resolve_device(device)
    if not devices.uses_cpu_kernels(target):
        return _sensitivity_on_device(scene.to(target), cameras, degree)
    from gstrim.render.cpu import RasterizePixels

    scene = scene.to("cpu")
    n = len(scene)
    ncov, norm2 = _shape_inputs(scene)
    opacities = scene.activated_opacities().detach()
    dtype = scene.means.dtype
    g_color = torch.zeros(n, 1 + scene.shN.shape[1], 3, dtype=dtype)
    g_shape = torch.zeros(n, 6, dtype=dtype)
    black = torch.zeros(3, dtype=dtype)
    pixels = 0
    parts = row_chunks(max(n, 1), chunk)  # one empty part for an empty scene

    def inputs(rows: slice, grad: bool):
        leaves = [t[rows].detach().requires_grad_(grad) for t in (ncov, scene.sh0, scene.shN)]
        return leaves, (scene.means[rows], leaves[0], norm2[rows], leaves[1], leaves[2])

    for camera in progress.track(cameras, "sensitivity"):
        viewmat, K = camera.viewmat.to(dtype), camera.K.to(dtype)
        with torch.no_grad():
            drawn = [_project_and_shade(*inputs(rows, False)[1], viewmat, K, camera, degree) for rows in parts]
            means2d, conics, radii, depths, colors = (torch.cat(t) for t in zip(*drawn, strict=True))
        conics.requires_grad_(True)
        colors.requires_grad_(True)
        image, _ = RasterizePixels.apply(means2d, conics, colors, opacities, radii, depths, camera.width,
                                         camera.height, black)
        g_conics, g_colors = torch.autograd.grad(image.sum(), (conics, colors), allow_unused=True)
        for rows in parts:
            leaves, args = inputs(rows, True)
            _, conics_c, _, _, colors_c = _project_and_shade(*args, viewmat, K, camera, degree)
            outputs = [(conics_c, g_conics), (colors_c, g_colors)]
            outputs = [(out, grad[rows]) for out, grad in outputs if grad is not None]
            if not outputs:  # nothing of this view is drawn
                continue
            grads = torch.autograd.grad([o for o, _ in outputs], leaves, [g for _, g in outputs], allow_unused=True)
            for grad, target in zip(grads, (g_shape[rows], g_color[rows, :1], g_color[rows, 1:]), strict=True):
                if grad is not None:  # None: nothing of it is drawn (unused SH bands)
                    target += grad.abs()
        pixels += camera.width * camera.height
    return _per_gaussian(g_shape, g_color, pixels)


def _shape_inputs(scene: GaussianScene) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised covariance [N, 6], squared scale norm [N]): the covariance is their product."""
    with torch.no_grad():
        return normalized_covariance(scene.quats, scene.scales), torch.exp(scene.scales).square().sum(-1)


def _per_gaussian(g_shape: torch.Tensor, g_color: torch.Tensor, pixels: int) -> Sensitivity:
    """The sensitivities of summed |gradients| w.r.t. the 6 covariance entries [N, 6] and the SH coefficients
    [N, 1 + K, 3] (DC first): each Gaussian's largest, per training pixel."""
    rest = g_color[:, 1:].flatten(1).amax(1) if g_color.shape[1] > 1 else g_color.new_zeros(len(g_color))
    return Sensitivity(color=g_color.flatten(1).amax(1) / pixels, shape=g_shape.amax(1) / pixels,
                       rest=rest / pixels)


def _sensitivity_on_device(scene: GaussianScene, cameras: list[Camera], degree: int) -> Sensitivity:
    device, dtype = scene.means.device, scene.means.dtype
    ncov, norm2 = _shape_inputs(scene)
    leaves = [t.detach().requires_grad_(True) for t in (ncov, scene.sh0, scene.shN)]
    totals = [torch.zeros_like(t) for t in leaves]
    black = torch.zeros(3, dtype=dtype, device=device)
    pixels = 0
    for camera in progress.track(cameras, "sensitivity"):
        viewmat, K = camera.viewmat.to(device, dtype), camera.K.to(device, dtype)
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_rgb(degree, leaves[1], leaves[2], scene.means - campos)
        image = rasterize_gsplat(scene.means, None, None, scene.opacities, colors, viewmat, K, camera.width,
                                 camera.height, black, covars=symmetric(leaves[0]) * norm2[:, None, None])[0]
        for total, grad in zip(totals, torch.autograd.grad(image.sum(), leaves, allow_unused=True), strict=True):
            if grad is not None:
                total += grad.abs()
        pixels += camera.width * camera.height
    g_shape, g_sh0, g_shN = (t.cpu() for t in totals)
    return _per_gaussian(g_shape, torch.cat([g_sh0, g_shN], 1), pixels)
