"""Importance scores for pruning: one signature, `score(scene, cameras, *, background, device) -> [N]`,
higher = more important.

* `opacity`: the activated opacity sigmoid(logit) (Trimming the Fat's baseline; its Table 1).
* `gradient`: Trimming the Fat's gradient score (Ali et al. 2024, Sec. 3.2): per Gaussian, the mean over the
  views that draw it of |dL/d(means2d)|, L the training loss 0.8 L1 + 0.2 D-SSIM, in the units of the 3DGS
  densification statistic (pixel gradient times W/2, H/2; ../shared/notes/reference-methods.md §1.1).
  Gaussians no view draws score 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gstrim import progress
from gstrim.data.camera import Camera
from gstrim.render import rasterize, resolve_device
from gstrim.scene import GaussianScene
from gstrim.train.loss import photometric_loss
from gstrim.train.strategy import accumulate_grad2d

Score = Callable[..., torch.Tensor]


def opacity_score(scene: GaussianScene, cameras: list[Camera] | None = None, **_) -> torch.Tensor:
    return torch.sigmoid(scene.opacities.detach()).cpu()


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
        photometric_loss(out.image, cam.image.to(out.image.device)).backward()
        accumulate_grad2d(stats, out)
        for p in params.values():
            p.grad = None
    return stats["grad2d"].cpu(), stats["count"].cpu()


def mean_gradient(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The per-view mean of an accumulated gradient statistic; 0 where no view drew the Gaussian."""
    return (total.double() / count.double().clamp_min(1)).float().cpu()


def gradient_score(scene: GaussianScene, cameras: list[Camera], *, background=None,
                   device: str = "auto") -> torch.Tensor:
    return mean_gradient(*gradient_statistics(scene, cameras, background=background, device=device))


SCORES: dict[str, Score] = {"opacity": opacity_score, "gradient": gradient_score}
