"""3DGS adaptive density control as a `Strategy` (Kerbl et al. 2023, Sec. 5.2 and `densify_and_prune`).

At every iteration N that is a multiple of `every`, with `start` < N < `stop`, Gaussians whose mean 2-D
positional gradient (over the views that drew them since the last densification) reaches `grad_threshold`
are cloned when small (largest scale <= percent_dense x extent) and split in two when large; Gaussians with
opacity < `min_opacity` are pruned, and after the first opacity reset also those wider than
`max_screen_size` pixels on screen or `max_world_size` x extent in the world. Opacities are reset to 0.01 at
every multiple of `reset_every` below `stop` (and once at `start` on a white background, as 3DGS does).
Iterations are counted from 1 in these rules, as in the reference code.

The edits of iteration N run at the beginning of the next step (`step_begin(N)`), after iteration N's
gradients were accumulated and its optimizer step taken; a model saved at iteration N is therefore the one
before N's densification, as 3DGS saves it, and the last iteration of a run never densifies.

Short runs end settled: `stop=None` (the default) densifies during the first half of the run, never past
iteration 15,000, which is 3DGS's schedule for its 30,000-iteration runs exactly (the INRIA code densifies
until 15,000 of 30,000), and for a 7,000-iteration run stops at 3,500 after one opacity reset at 3,000, so
3,500 iterations optimise the final population instead of ending mid-densification, one reset ago.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim.errors import ConfigError
from gstrim.options import option
from gstrim.render import RenderOutput
from gstrim.train import ops
from gstrim.train.ops import Optimizers, Params
from gstrim.train.strategy import Strategy, accumulate_grad2d, mean_grad2d

DENSIFY_UNTIL = 15_000  # 3DGS `densify_until_iter`


@dataclass
class DensifyConfig:
    grad_threshold: float = option(2e-4, "mean 2-D gradient from which a Gaussian is cloned or split",
                                   flag="--densify-grad-threshold")
    start: int = option(500, "first densification iteration", flag="--densify-from")
    stop: int | None = option(None, "densify before this iteration (default: half the run, at most 15000, as 3DGS)",
                              flag="--densify-until")
    every: int = option(100, "iterations between densifications", flag="--densify-every")
    reset_every: int = option(3_000, "iterations between opacity resets", flag="--opacity-reset-every")
    reset_value: float = 0.01
    min_opacity: float = 0.005
    percent_dense: float = 0.01
    max_screen_size: float = 20.0
    max_world_size: float = 0.1
    # the "no 3D prior" ablation of Trimming the Fat (Sec. 4.3): after densification stops, keep pruning
    # Gaussians below `prune_opacity` (default: min_opacity) every `every` iterations until `prune_until`
    prune_until: int | None = None
    prune_opacity: float | None = None

    def stop_for(self, iterations: int) -> int:
        """The last iteration (exclusive) that densifies, in a run of `iterations`."""
        return self.stop if self.stop is not None else min(DENSIFY_UNTIL, iterations // 2)


class DensifyStrategy(Strategy):
    def __init__(self, config: DensifyConfig, extent: float, white_background: bool = False,
                 iterations: int = 30_000):
        self.config = config
        self.extent = extent
        self.white_background = white_background
        self.stop = config.stop_for(iterations)

    def initialize_state(self, n: int) -> dict:
        return {"grad2d": torch.zeros(n), "count": torch.zeros(n), "max_radii": torch.zeros(n)}

    def step_begin(self, params, optimizers, state, step, generator) -> None:
        cfg, it = self.config, step  # `step` iterations are complete: edits of iteration `it` are due
        if it >= self.stop and cfg.prune_until is not None and it < cfg.prune_until and it % cfg.every == 0:
            threshold = cfg.min_opacity if cfg.prune_opacity is None else cfg.prune_opacity
            prune = torch.sigmoid(params["opacities"].detach()) < threshold
            if bool(prune.all()):
                raise ConfigError(f"iteration {it}: every Gaussian is below the pruning opacity {threshold}; "
                                  "choose a lower {prune_opacity}", "prune_opacity")
            ops.remove(params, optimizers, state, prune)
        if it == 0 or it >= self.stop:
            return
        if it > cfg.start and it % cfg.every == 0:
            self.densify_and_prune(params, optimizers, state, prune_large=it > cfg.reset_every,
                                   generator=generator)
        if it % cfg.reset_every == 0 or (self.white_background and it == cfg.start):
            ops.reset_opacity(params, optimizers, cfg.reset_value)

    def step_pre_backward(self, params, optimizers, state, step, info: RenderOutput) -> None:
        if step + 1 < self.stop:
            info.means2d.retain_grad()

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                           info: RenderOutput) -> None:
        if step + 1 >= self.stop:
            return
        accumulate_grad2d(state, info)
        visible = info.visible
        state["max_radii"][visible] = torch.maximum(state["max_radii"][visible], info.radii[visible].float())

    def densify_and_prune(self, params: Params, optimizers: Optimizers, state: dict, prune_large: bool,
                          generator: torch.Generator) -> dict[str, int]:
        cfg = self.config
        high = mean_grad2d(state["grad2d"], state["count"]).to(state["grad2d"].device) >= cfg.grad_threshold
        small = torch.exp(params["scales"].detach()).amax(dim=1) <= cfg.percent_dense * self.extent
        clone, split = high & small, high & ~small
        n_clone, n_split = int(clone.sum()), int(split.sum())
        ops.duplicate(params, optimizers, state, clone)
        ops.split(params, optimizers, state, torch.cat([split, split.new_zeros(n_clone)]), generator)

        prune = torch.sigmoid(params["opacities"].detach()) < cfg.min_opacity
        if prune_large:
            prune |= state["max_radii"] > cfg.max_screen_size
            prune |= torch.exp(params["scales"].detach()).amax(dim=1) > cfg.max_world_size * self.extent
        n_prune = int(prune.sum())
        ops.remove(params, optimizers, state, prune)
        for key in ("grad2d", "count", "max_radii"):
            state[key].zero_()
        return {"cloned": n_clone, "split": n_split, "pruned": n_prune}
