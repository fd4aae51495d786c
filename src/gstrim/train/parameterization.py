"""What the trainer optimises, and how it decodes to the `GaussianScene` it renders.

The default, `RawParameters`, optimises the six raw tensors of the scene (3DGS's parameterisation) with
the per-attribute learning rates of `LearningRates`. Another parameterisation (codebook indices and
centroids, fake-quantised attributes for quantisation-aware fine-tuning) subclasses `Parameterization`
and reuses the whole loop: the trainer only ever calls the methods below.

Population edits (`train.ops`, used by densification and pruning) need every tensor to have the Gaussians
on its first axis; a parameterisation with shared tensors (codebooks) is for strategies that do not edit
the population.
"""

from __future__ import annotations

import torch

from gstrim.scene import PARAM_NAMES, GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates, means_lr, restart_fraction, set_lr


class Parameterization:
    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        """The tensors to optimise, initialised from `scene` (the trainer makes them leaf parameters)."""
        raise NotImplementedError

    def decode(self, params: Params) -> GaussianScene:
        """The scene the parameters stand for, differentiable w.r.t. them."""
        raise NotImplementedError

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        raise NotImplementedError

    def update_learning_rates(self, optimizers: Optimizers, step: int, total: int, extent: float) -> None:
        """Set this step's learning rates (schedules)."""

    def state_dict(self) -> dict:
        """State of its own that a checkpoint must keep (observers of fake quantisation, fixed indices)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class RawParameters(Parameterization):
    """The raw INRIA parameters, one Adam per tensor (as gsplat does: a Gaussian-count edit then touches
    one optimizer state per key), position rate decaying over the run (or restarting at `restarts`). With
    `boost` > 1 the other rates restart too: at `boost` times their value at each restart, decaying
    log-linearly back to it by the next."""

    def __init__(self, lrs: LearningRates | None = None, restarts: tuple[int, ...] = (), boost: float = 1.0):
        self.lrs = lrs or LearningRates()
        self.restarts = tuple(restarts)
        self.boost = boost

    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        return scene.params()

    def decode(self, params: Params) -> GaussianScene:
        return GaussianScene(**{k: params[k] for k in PARAM_NAMES})

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        lrs = self.lrs
        rate = {"means": lrs.means * extent, "scales": lrs.scales, "quats": lrs.quats,
                "opacities": lrs.opacities, "sh0": lrs.sh0, "shN": lrs.shN}
        # fused: one kernel per tensor instead of ~10 elementwise ops (4 ms instead of 16.5 ms per step for
        # 97k Gaussians on 2 cores, bench/profile_step.py); the same update up to float32 rounding
        return {name: torch.optim.Adam([p], lr=rate[name], eps=ADAM_EPS, fused=True) for name, p in params.items()}

    def update_learning_rates(self, optimizers: Optimizers, step: int, total: int, extent: float) -> None:
        set_lr(optimizers["means"], means_lr(step, total, self.lrs, extent, self.restarts))
        if self.boost != 1.0:
            factor = self.boost ** (1.0 - restart_fraction(step, total, self.restarts))
            for name in ("scales", "quats", "opacities", "sh0", "shN"):
                set_lr(optimizers[name], factor * getattr(self.lrs, name))
