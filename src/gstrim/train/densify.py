"""3DGS adaptive density control as a `Strategy` (Kerbl et al. 2023, Sec. 5.2 and `densify_and_prune`).

Every `every` iterations between `start` and `stop`, Gaussians whose mean 2-D positional gradient (over
the views that drew them) reaches `grad_threshold` are cloned when small (largest scale <= percent_dense x
extent) and split in two when large; Gaussians with opacity < `min_opacity` are pruned, and after the first
opacity reset also those wider than `max_screen_size` pixels on screen or `max_world_size` x extent in the
world. Opacities are reset to 0.01 every `reset_every` iterations (and once at `start` on a white
background, as 3DGS does). Iterations are counted from 1 in these rules, as in the reference code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gstrim.render import RenderOutput
from gstrim.train import ops
from gstrim.train.ops import Optimizers, Params
from gstrim.train.strategy import Strategy, accumulate_grad2d


@dataclass
class DensifyConfig:
    grad_threshold: float = 2e-4
    start: int = 500
    stop: int = 15_000
    every: int = 100
    reset_every: int = 3_000
    reset_value: float = 0.01
    min_opacity: float = 0.005
    percent_dense: float = 0.01
    max_screen_size: float = 20.0
    max_world_size: float = 0.1


class DensifyStrategy(Strategy):
    def __init__(self, config: DensifyConfig, extent: float, white_background: bool = False):
        self.config = config
        self.extent = extent
        self.white_background = white_background

    def initialize_state(self, n: int) -> dict:
        return {"grad2d": torch.zeros(n), "count": torch.zeros(n), "max_radii": torch.zeros(n)}

    def step_pre_backward(self, params, optimizers, state, step, info: RenderOutput) -> None:
        if step + 1 < self.config.stop:
            info.means2d.retain_grad()

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                           info: RenderOutput, generator: torch.Generator) -> None:
        cfg = self.config
        it = step + 1
        if it >= cfg.stop:
            return
        accumulate_grad2d(state, info)
        visible = info.visible
        state["max_radii"][visible] = torch.maximum(state["max_radii"][visible], info.radii[visible].float())
        if it > cfg.start and it % cfg.every == 0:
            self.densify_and_prune(params, optimizers, state, prune_large=it > cfg.reset_every,
                                   generator=generator)
        if it % cfg.reset_every == 0 or (self.white_background and it == cfg.start):
            ops.reset_opacity(params, optimizers, cfg.reset_value)

    def densify_and_prune(self, params: Params, optimizers: Optimizers, state: dict, prune_large: bool,
                          generator: torch.Generator) -> dict[str, int]:
        cfg = self.config
        grads = state["grad2d"] / state["count"].clamp_min(1)  # mean over the views that drew each Gaussian
        high = grads >= cfg.grad_threshold
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
