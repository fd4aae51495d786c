"""The keep rule of Trimming the Fat (Ali et al. 2024, eq. 5) and removal schedules (eq. 6).

Eq. 5 keeps a Gaussian when its opacity >= Q_opacity(gamma) OR its gradient score >= Q_gradient(gamma),
quantiles over the current population; the authors' code removes a Gaussian only when both scores are
strictly below their quantiles (`gradient_aware_prune` in
salmanali96/Trimming-the-Fat, `scene/gaussian_model.py`).

gstrim states the rule with ranks: with r_o and r_g a Gaussian's 0-based ranks by opacity and by gradient
(ascending), it is below the gamma-quantile of a score when its rank is < k = ceil(gamma (N - 1)), the
number of values strictly below torch.quantile's linearly interpolated gamma-quantile when there are no
ties. So it is removed when m = max(r_o, r_g) < k: on scores without ties this is the authors' strict rule
exactly; with ties (above all the many exactly-zero gradients of Gaussians no view has seen, which make
Q_gradient = 0 and the strict rule prune nothing) ranks still select exactly k Gaussians per
score, ties broken by the other score and then by index, deterministically. Ordering Gaussians by m also
gives the OR rule's removal order, so any requested count is met exactly by the smallest-m Gaussians.
"""

from __future__ import annotations

import math

import torch

from gstrim.errors import ConfigError, GstrimError


def ranks(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """0-based ascending rank by `primary`, ties broken by `secondary`, then by index."""
    n = primary.shape[0]
    order = torch.arange(n)
    # stable sorts from the least to the most significant key
    order = order[torch.sort(secondary[order].double(), stable=True).indices]
    order = order[torch.sort(primary[order].double(), stable=True).indices]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank


def removal_order(opacity: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Indices of the Gaussians in the order the OR rule removes them: by m = max(r_opacity, r_gradient),
    then by min rank, then index."""
    r_o, r_g = ranks(opacity, gradient), ranks(gradient, opacity)
    m, low = torch.maximum(r_o, r_g), torch.minimum(r_o, r_g)
    n = m.shape[0]
    key = m * n + low  # fits in int64 for any realistic N
    return torch.sort(key, stable=True).indices


def prune_mask_gamma(opacity: torch.Tensor, gradient: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 5 at quantile level `gamma`: True for the Gaussians to remove."""
    check_gamma(gamma)
    n = opacity.shape[0]
    k = math.ceil(gamma * (n - 1)) if n else 0
    r_o, r_g = ranks(opacity, gradient), ranks(gradient, opacity)
    return torch.maximum(r_o, r_g) < k


def prune_mask_count(opacity: torch.Tensor, gradient: torch.Tensor, count: int) -> torch.Tensor:
    """The OR rule at the quantile level that removes exactly `count` Gaussians."""
    n = opacity.shape[0]
    if not 0 <= count <= n:
        raise ValueError(f"cannot remove {count} of {n} Gaussians")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[removal_order(opacity, gradient)[:count]] = True
    return mask


def check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma < 1.0:
        raise ConfigError(f"{{gamma}} must be in [0, 1), got {gamma} (the paper uses 0.225-0.6)", "gamma")


def survivors_schedule(n: int, steps: int, *, removal: float | None = None, count: int | None = None) -> list[int]:
    """Gaussians left after each of `steps` prune steps, ending at n (1 - removal) or at `count`: each step
    removes the same fraction 1 - (1 - R)^(1/t) (eq. 6), rounded so that the last step lands exactly."""
    if steps < 1:
        raise GstrimError(f"the number of prune steps must be at least 1, got {steps}")
    if count is None:
        if removal is None or not 0.0 <= removal < 1.0:
            raise ConfigError(f"{{target_removal}} must be in [0, 1), got {removal}", "target_removal")
        final = round(n * (1.0 - removal))
    else:
        final = count
    if not 1 <= final <= n:
        raise GstrimError(f"the target of {final:,} Gaussians is outside 1..{n:,} (the scene has {n:,})")
    keep = final / n
    return [round(n * keep ** (s / steps)) for s in range(1, steps)] + [final]
