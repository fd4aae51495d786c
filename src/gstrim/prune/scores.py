"""Importance scores for pruning: one signature, `score(scene, cameras, *, background, device) -> [N]`,
higher = more important, and one registry (`register_score`): a new score is one registration, and the
trim strategy, its configuration and the command line's `--score` choices pick it up.

* `opacity`: the activated opacity sigmoid(logit) (Trimming the Fat's baseline; its Table 1).
* `gradient`: Trimming the Fat's gradient score (Ali et al. 2024, Sec. 3.2): per Gaussian, the mean over the
  views that draw it of |dL/d(means2d)|, L the training loss 0.8 L1 + 0.2 D-SSIM, in the units of the 3DGS
  densification statistic (pixel gradient times W/2, H/2: INRIA `backward.cu`; the authors' `train_prune.py`
  accumulates the same `xyz_gradient_accum / denom`, salmanali96/Trimming-the-Fat).
  Gaussians no view draws score 0.
* `lightgaussian`: LightGaussian's global significance (Fan et al. 2024, VITA-Group/LightGaussian):
  opacity times the number of training pixels where the Gaussian is blended, times (V / V_90)^0.1,
  V the product of the scales and V_90 the volume at the 90 % position of the descending sort.
* `pup`: PUP-3DGS's sensitivity (Hanson et al. 2025, j-alex-hanson/gaussian-splatting-pup): log |det F|,
  F the 6x6 Fisher sum over views, pixels and channels of g g^T, g = d pixel / d(mean, log-scale). gstrim
  evaluates it per pixel (the authors pool 4x4 patches) and through means2d and the conic only: the small
  path from the mean through the SH view direction is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gstrim import kernel_cache, progress
from gstrim.camera import Camera
from gstrim.render import pixel_statistics, rasterize, resolve_device
from gstrim.render.project import project
from gstrim.scene import GaussianScene
from gstrim.train.loss import photometric_loss
from gstrim.train.strategy import accumulate_grad2d, mean_grad2d

Score = Callable[..., torch.Tensor]


def opacity_score(scene: GaussianScene, cameras: list[Camera] | None = None, **_) -> torch.Tensor:
    return scene.activated_opacities().detach().cpu()


def gradient_statistics(scene: GaussianScene, cameras: list[Camera], *, background=None,
                        device: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over views of |dL/d(means2d)| in 3DGS units, number of views that draw each Gaussian)."""
    live = scene.to(resolve_device(device))
    params = {k: v.detach().clone().requires_grad_(True) for k, v in live.params().items()}
    live = GaussianScene(**params)
    stats = {"grad2d": torch.zeros(len(scene), dtype=torch.float64, device=live.means.device)}
    stats["count"] = torch.zeros_like(stats["grad2d"])
    for cam in progress.track(cameras, "gradient score"):
        out = rasterize(live, cam, background=background)
        out.means2d.retain_grad()
        photometric_loss(out.image, cam.image_on(out.image.device)).backward()
        accumulate_grad2d(stats, out)
        for p in params.values():
            p.grad = None
    return stats["grad2d"].cpu(), stats["count"].cpu()


def gradient_score(scene: GaussianScene, cameras: list[Camera], *, background=None,
                   device: str = "auto") -> torch.Tensor:
    return mean_grad2d(*gradient_statistics(scene, cameras, background=background, device=device))


def _on_device(scene: GaussianScene, device: str) -> GaussianScene:
    """The scene's values (no graph) on the run's device, where the pixel statistics are computed."""
    return GaussianScene(**{k: v.detach() for k, v in scene.to(resolve_device(device)).params().items()})


def visibility_score(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto",
                     **_) -> torch.Tensor:
    """The effective opacity: the largest blending weight alpha * T of a Gaussian over the views' pixels. Unlike
    the opacity it is low for an opaque Gaussian hidden behind a surface."""
    scene = _on_device(scene, device)
    weight = torch.zeros(len(scene), dtype=torch.float64, device=scene.means.device)
    for cam in progress.track(cameras, "visibility"):
        stats = pixel_statistics(scene, cam, background=background, fisher=False)
        weight = torch.maximum(weight, stats.max_weight.double())
    return weight.float().cpu()


LIGHTGAUSSIAN_V_POW = 0.1  # LightGaussian's `v_pow` (VITA-Group/LightGaussian `prune.py`)


def lightgaussian_score(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto",
                        **_) -> torch.Tensor:
    scene = _on_device(scene, device)
    hits = torch.zeros(len(scene), dtype=torch.float64, device=scene.means.device)
    for cam in progress.track(cameras, "LightGaussian score"):
        hits += pixel_statistics(scene, cam, background=background, fisher=False).hits.double()
    hits = hits.cpu()
    volume = torch.exp(scene.scales.detach().double().cpu()).prod(dim=1)
    if len(scene) == 0:
        return hits.float()
    v90 = torch.sort(volume, descending=True).values[int(0.9 * len(scene))]
    opacity = scene.activated_opacities().detach().double().cpu()
    return (hits * opacity * (volume / v90) ** LIGHTGAUSSIAN_V_POW).float()


def spatial_jacobian(scene: GaussianScene, camera: Camera) -> torch.Tensor:
    """[N, 5, 6] d(means2d x, y, conic a, b, c) / d(mean xyz, log-scale xyz) per Gaussian, float64, by
    forward-mode differentiation of the projection (each Gaussian depends on its own parameters only, so one
    batched tangent per input coordinate gives every Gaussian's column)."""
    means, scales, quats = (v.detach().double() for v in (scene.means, scene.scales, scene.quats))
    viewmat, K = camera.viewmat.to(means.device, torch.float64), camera.K.to(means.device, torch.float64)

    def screen(m, s):
        proj = project(m, quats, s, viewmat, K, camera.width, camera.height)
        return torch.cat([proj.means2d, proj.conics], dim=1)

    columns = []
    for k in range(6):
        tangent = torch.zeros(len(scene), 6, dtype=torch.float64, device=means.device)
        tangent[:, k] = 1.0
        _, column = torch.func.jvp(screen, (means, scales), (tangent[:, :3], tangent[:, 3:]))
        columns.append(column)
    return torch.stack(columns, dim=2)


def _symmetric(upper: torch.Tensor, size: int) -> torch.Tensor:
    rows, cols = torch.triu_indices(size, size)
    full = upper.new_zeros(upper.shape[0], size, size)
    full[:, rows, cols] = upper
    full[:, cols, rows] = upper
    return full


def spatial_fisher(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto"
                   ) -> torch.Tensor:
    """[N, 6, 6] PUP-3DGS's Fisher over `cameras`: sum of J^T M J, M the per-view 5x5 screen-space Fisher."""
    scene = _on_device(scene, device)
    fisher = torch.zeros(len(scene), 6, 6, dtype=torch.float64, device=scene.means.device)
    for cam in progress.track(cameras, "PUP-3DGS score"):
        stats = pixel_statistics(scene, cam, background=background)
        seen = stats.hits > 0
        if not bool(seen.any()):
            continue
        J = spatial_jacobian(scene.subset(seen), cam)
        M = _symmetric(stats.fisher2d[seen].double(), 5)
        fisher[seen] += J.transpose(1, 2) @ M @ J
    return fisher.cpu()


def pup_score(scene: GaussianScene, cameras: list[Camera], *, background=None, device: str = "auto",
              **_) -> torch.Tensor:
    singular = torch.linalg.svdvals(spatial_fisher(scene, cameras, background=background, device=device))
    # Gaussians no view constrains in some direction get a floor, not -inf: the least important, still ordered
    return torch.log(singular.clamp_min(1e-300)).sum(dim=1).float()


@dataclass(frozen=True)
class ImportanceScore:
    name: str
    fn: Score
    # kept when this score OR `keep_with` is high (eq. 5 of Trimming the Fat: the opacity); None: ranked alone
    keep_with: Score | None = None
    # the CPU kernels it calls beyond the renderer's (`kernel_cache`), compiled up front by a CPU run
    kernels: tuple[str, ...] = ()


SCORES: dict[str, ImportanceScore] = {}


def register_score(name: str, fn: Score, *, keep_with: Score | None = None,
                   kernels: tuple[str, ...] = ()) -> ImportanceScore:
    SCORES[name] = ImportanceScore(name, fn, keep_with, kernels)
    return SCORES[name]


PIXELS = kernel_cache.PIXEL_STATISTICS
register_score("gradient", gradient_score, keep_with=opacity_score)
register_score("opacity", opacity_score)
register_score("lightgaussian", lightgaussian_score, kernels=PIXELS)
register_score("pup", pup_score, kernels=PIXELS)
# beyond the paper (docs/pruning.md, "closing the synthetic-scene gap")
register_score("gradient-visibility", gradient_score, keep_with=visibility_score, kernels=PIXELS)
