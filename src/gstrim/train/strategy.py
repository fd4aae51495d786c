"""`Strategy`: how a training run changes the Gaussian population (gsplat's `Strategy` idea).

The trainer calls, for every step (0-based):
  `step_begin`          before the step renders: step 0 is the start of the run, and a step N > 0 sees the
                        population after N completed iterations, which is what a model saved "at
                        iteration N" holds; population edits scheduled "at iteration N" belong here;
  `step_pre_backward`   after the render, before the loss is backpropagated (retain gradients);
  `step_post_backward`  after the optimizer step (accumulate statistics from the gradients).
A strategy edits the population through `train.ops`; its per-Gaussian statistics live in `state` (tensors
with the Gaussians on the first axis), which the ops keep aligned and the checkpoints save. A run that is
resumed continues with the step after its checkpoint, so nothing runs twice.
"""

from __future__ import annotations

import torch

from gstrim.render import RenderOutput
from gstrim.train.ops import Optimizers, Params


class Strategy:
    """No change to the population: plain optimisation (fine-tuning)."""

    def initialize_state(self, n: int) -> dict:
        return {}

    def step_begin(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                   generator: torch.Generator) -> None:
        pass

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                          info: RenderOutput) -> None:
        pass

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int,
                           info: RenderOutput) -> None:
        pass


def accumulate_grad2d(state: dict, info: RenderOutput) -> None:
    """Add this view's |dL/d(means2d)| (3DGS units) to `state["grad2d"]` and count the view in
    `state["count"]`, for the Gaussians the view draws: the densification statistic of 3DGS, which
    Trimming the Fat also scores Gaussians by."""
    visible = info.visible
    norms = info.normalized_means2d_grad().norm(dim=-1)
    state["grad2d"][visible] += norms[visible].to(state["grad2d"].dtype)
    state["count"][visible] += 1


def mean_grad2d(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The per-view mean of an accumulated gradient statistic (float32, on the CPU); 0 where no view drew
    the Gaussian."""
    return (total.double() / count.double().clamp_min(1)).float().cpu()
