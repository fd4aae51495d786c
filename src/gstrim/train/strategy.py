"""`Strategy`: how a training run changes the Gaussian population (gsplat's `Strategy` idea).

The loop calls `step_pre_backward` after rendering and `step_post_backward` after the optimizer step; a
strategy reads the render's per-Gaussian information and edits the population through `train.ops`.
Its per-Gaussian statistics live in `state` (tensors with the Gaussians on the first axis), which the ops
keep aligned and the checkpoints save.
"""

from __future__ import annotations

import torch

from gstrim.render import RenderOutput
from gstrim.train.ops import Optimizers, Params


class Strategy:
    """No change to the population: plain optimisation (fine-tuning)."""

    def initialize_state(self, n: int) -> dict:
        return {}

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                          info: RenderOutput) -> None:
        pass

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                           info: RenderOutput, generator: torch.Generator) -> None:
        pass


def accumulate_grad2d(state: dict, info: RenderOutput) -> None:
    """Add this view's |dL/d(means2d)| (3DGS units) to `state["grad2d"]` and count the view in
    `state["count"]`, for the Gaussians the view draws: the densification statistic of 3DGS, which
    Trimming the Fat also scores Gaussians by."""
    visible = info.visible
    norms = info.normalized_means2d_grad().norm(dim=-1)
    state["grad2d"][visible] += norms[visible].to(state["grad2d"].dtype)
    state["count"][visible] += 1
