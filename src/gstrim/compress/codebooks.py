"""From a scene and its sensitivities to c3dgs's codebook scene (Niedermayr et al. 2024, §3.2,
`compression/vq.py:compress_gaussians`).

Gaussians no training pixel depends on are removed: those whose colour and shape sensitivities are both
exactly zero. (c3dgs removes every Gaussian of zero colour sensitivity; but a Gaussian whose colour is
clamped at black in every view has a zero colour gradient and still occludes what lies behind it: on
chair_400 trimmed to 9,072 Gaussians, the 53 of them cost 0.72 dB when removed.) The
colour (DC and higher SH bands together) and the normalised covariance are clustered separately, each
weighted by its sensitivity; the most sensitive Gaussians are not clustered but keep their own vector,
appended to the codebook. With `shared_dc` False the colour codebook holds the higher bands only and each
Gaussian keeps its own DC (beyond c3dgs: the base colour is where the colour codebook lost most); then
`sh_share` < 1 keeps the higher bands for only that fraction of the Gaussians, those of the largest rest
sensitivity, and the others are DC only (index -1): a per-Gaussian SH degree, 0 or the scene's.

Two choices differ from c3dgs, for scenes of every size. (1) The un-clustered Gaussians are a fixed
fraction (the most sensitive), where c3dgs uses absolute thresholds (6e-7 colour, 3e-6 shape): a
sensitivity is a Gaussian's share of the image, so it scales with 1/N, and on the 3,600 Gaussians of the
built-in example 95 % (colour) and 99 % (shape) of them exceed c3dgs's thresholds, tuned on scenes of
millions. (2) A codebook has at most a quarter as many entries as the Gaussians it clusters (4,096 by
default, c3dgs's size, reached from 16,384 Gaussians up). The covariance codebook is turned back into rotation and unit
scale by eigen-decomposition; the scale norm stays per Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim.compress.covariance import normalized_covariance, rotation_and_scale
from gstrim.compress.sensitivity import Sensitivity
from gstrim.io.gsz import CodebookScene
from gstrim.kmeans import nearest, weighted_kmeans
from gstrim.scene import GaussianScene

_TRACE = (0, 3, 5)  # diagonal entries of a stored upper triangle
CODEBOOK_SHARE = 4  # a codebook has at most one entry per this many clustered Gaussians


@dataclass
class ClusterSettings:
    size: int  # codebook entries (before the un-clustered ones are appended)
    keep: float  # fraction of the Gaussians, the most sensitive, that keep their own vector
    steps: int
    batch: int


@dataclass
class CodebookReport:
    removed: int  # Gaussians of zero sensitivity (colour and shape)
    kept_sh: int  # Gaussians with their own colour entry
    kept_shape: int
    dc_only: int = 0  # Gaussians without view-dependent colour


def _unit_trace(six: torch.Tensor) -> torch.Tensor:
    return six / six[:, _TRACE].sum(-1, keepdim=True).clamp_min(1e-12)


def _cluster(x: torch.Tensor, importance: torch.Tensor, settings: ClusterSettings, generator: torch.Generator,
             project=None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, int]:
    """(codebook, index per row, rows kept un-clustered), the k-means run on `device`."""
    keep = torch.zeros(len(x), dtype=torch.bool)
    keep[torch.argsort(importance, descending=True, stable=True)[:round(settings.keep * len(x))]] = True
    rest = torch.nonzero(~keep)[:, 0]
    size = min(settings.size, max(1, len(rest) // CODEBOOK_SHARE))
    clustered = x[rest].to(device)
    centroids = weighted_kmeans(clustered, importance[rest].to(device), size, steps=settings.steps,
                                batch=settings.batch, generator=generator, project=project)
    index = torch.empty(len(x), dtype=torch.long)
    index[rest] = nearest(clustered, centroids).cpu()
    centroids = centroids.cpu()
    kept = torch.nonzero(keep)[:, 0]
    index[kept] = len(centroids) + torch.arange(len(kept))
    return torch.cat([centroids, x[kept]]), index, len(kept)


def build_codebooks(scene: GaussianScene, sens: Sensitivity, color: ClusterSettings, shape: ClusterSettings,
                    generator: torch.Generator, shared_dc: bool = True,
                    sh_share: float = 1.0, device: torch.device | str = "cpu"
                    ) -> tuple[CodebookScene, CodebookReport]:
    with torch.no_grad():
        alive = (sens.color > 0) | (sens.shape > 0)
        scene = scene.subset(alive)
        sens = sens.subset(alive)
        sh = torch.cat([scene.sh0, scene.shN], 1) if shared_dc else scene.shN
        dc_only = 0
        if sh.shape[1] == 0:  # degree 0 with a DC of its own: no colour codebook
            sh_book, sh_index, kept_sh = sh, None, len(sh)
        else:
            with_sh = torch.ones(len(sh), dtype=torch.bool)
            if not shared_dc and sh_share < 1:
                rest = sens.rest if sens.rest is not None else sens.color
                with_sh[:] = False
                with_sh[torch.argsort(rest, descending=True, stable=True)[:round(sh_share * len(sh))]] = True
            rows = torch.nonzero(with_sh)[:, 0]
            sh_index = torch.full((len(sh),), -1, dtype=torch.long)
            if len(rows):
                sh_book, sh_index[rows], kept_sh = _cluster(sh[rows].flatten(1), sens.color[rows], color, generator,
                                                            device=device)
                sh_book = sh_book.reshape(-1, *sh.shape[1:])
            else:
                sh_book, kept_sh = sh[:0], 0
            dc_only = len(sh) - len(rows)
        sh_dc, sh_rest = (sh_book[:, :1], sh_book[:, 1:]) if shared_dc else (scene.sh0, sh_book)
        six = normalized_covariance(scene.quats, scene.scales)
        cov_book, shape_index, kept_shape = _cluster(six, sens.shape, shape, generator, project=_unit_trace,
                                                          device=device)
        rotations, axes = rotation_and_scale(cov_book)
        plain = CodebookScene.from_scene(scene)
        cs = CodebookScene(means=plain.means, opacities=plain.opacities, scale_norms=plain.scale_norms,
                           sh_dc=sh_dc.contiguous(), sh_rest=sh_rest.contiguous(),
                           rotations=rotations, unit_scales=torch.nn.functional.normalize(axes, dim=-1),
                           sh_index=sh_index, shape_index=shape_index, shared_dc=shared_dc)
    return cs, CodebookReport(int((~alive).sum()), kept_sh, kept_shape, dc_only)
