"""The learning rates of 3DGS (Kerbl et al. 2023, `arguments/__init__.py`; the same values as gsplat's
`simple_trainer.py`) and the position-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Adam's epsilon in 3DGS and gsplat: small, so that rarely-seen Gaussians still move.
ADAM_EPS = 1e-15


@dataclass
class LearningRates:
    means: float = 1.6e-4  # times the scene extent; decays exponentially to means_final
    means_final: float = 1.6e-6
    scales: float = 5e-3
    quats: float = 1e-3
    opacities: float = 5e-2
    sh0: float = 2.5e-3
    shN: float = 2.5e-3 / 20


def restart_fraction(step: int, total_steps: int, restarts: tuple[int, ...] = ()) -> float:
    """How far `step` is, from 0 to 1, between the restart before it (or the start) and the next one (or the end)."""
    start = max((r for r in restarts if r <= step), default=0)
    end = min((r for r in restarts if r > step), default=total_steps)
    return min(max((step - start) / max(end - start, 1), 0.0), 1.0)


def means_lr(step: int, total_steps: int, lrs: LearningRates, extent: float,
             restarts: tuple[int, ...] = ()) -> float:
    """Log-linear decay of the position learning rate from `means` to `means_final` (times the extent)
    over `total_steps` (3DGS `get_expon_lr_func` without its warm-up; gsplat decays over the run's length
    too). Equal initial and final rates give a constant rate, as fine-tuning after pruning uses.
    `restarts`: steps where the rate jumps back to `means` and decays again, reaching `means_final` at the
    next restart (or at the end): warm restarts after each prune step."""
    t = restart_fraction(step, total_steps, restarts)
    return extent * math.exp((1 - t) * math.log(lrs.means) + t * math.log(lrs.means_final))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
