"""A learned keep-mask while trimming (`trim --mask-weight W`): which Gaussians the loss can do without is
learned during the fine-tuning between prunes, post hoc from the trained prior, and each prune after the first
removes the Gaussians whose mask fell lowest (OR-ed with the gradient score, at the schedule's counts).

A gate per Gaussian multiplies its opacity, sigmoid(o) x sigmoid(m), under a sparsity loss W x mean(sigmoid(m))
that pulls every gate down while the photometric loss holds up the Gaussians it needs: the learnable masks of
Compact 3D Gaussian Representation (Lee et al., CVPR 2024, Sec. 3.1), whose forward pass is hard (a
straight-through 0/1 mask). gstrim's gate is soft instead: post hoc, from a converged scene, a hard mask's
gradient is the first-order change of the loss, which is zero on average at an optimum of the opacity, so it
ranks by noise; a soft gate lowers the opacity and meets the loss's resistance. The gate is baked into the
opacity at the last prune (`bake`), so the fine-tuning after it is plain and the scene does not jump.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gstrim.scene import GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates
from gstrim.train.parameterization import RawParameters

MASK_INIT = 6.0  # logit of a fresh gate: sigmoid 0.9975, so the scene starts as it was (gstrim's choice)
MASK_LR = 0.05  # Adam rate of the gate logits: 3DGS's opacity rate (gstrim's choice)


def masked_opacities(opacities: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(o) x sigmoid(m)), from log-sigmoids so that neither underflows."""
    log_p = F.logsigmoid(opacities) + F.logsigmoid(mask_logits)
    return log_p - torch.log1p(-torch.exp(log_p).clamp_max(1 - 1e-7))


class MaskedParameters(RawParameters):
    """`RawParameters` plus a keep-mask logit per Gaussian ("mask", on the Gaussians' axis, so prunes keep it
    aligned and checkpoints save it), active until the step `until`."""

    def __init__(self, weight: float, until: int, lrs: LearningRates | None = None, restarts: tuple[int, ...] = (),
                 boost: float = 1.0):
        super().__init__(lrs, restarts, boost)
        self.weight, self.until = weight, until
        self.active = True

    def init_params(self, scene: GaussianScene) -> dict[str, torch.Tensor]:
        return {**scene.params(), "mask": torch.full((len(scene),), MASK_INIT)}

    def decode(self, params: Params) -> GaussianScene:
        scene = super().decode(params)
        if not self.active:
            return scene
        return GaussianScene(**{**scene.params(), "opacities": masked_opacities(params["opacities"],
                                                                                 params["mask"])})

    def make_optimizers(self, params: Params, extent: float) -> Optimizers:
        optimizers = super().make_optimizers({k: v for k, v in params.items() if k != "mask"}, extent)
        optimizers["mask"] = torch.optim.Adam([params["mask"]], lr=MASK_LR, eps=ADAM_EPS, fused=True)
        return optimizers

    def update_learning_rates(self, optimizers: Optimizers, step: int, total: int, extent: float) -> None:
        super().update_learning_rates(optimizers, step, total, extent)
        self.active = step < self.until

    def penalty(self, params: Params) -> torch.Tensor | None:
        """The sparsity loss, W x mean(sigmoid(m)), while the mask acts."""
        return self.weight * torch.sigmoid(params["mask"]).mean() if self.active else None


def bake(params: Params) -> None:
    """Fold the gates into the opacities at the last prune (the mask is off from then on, `until`): the scene
    renders the same before and after."""
    with torch.no_grad():
        params["opacities"].copy_(masked_opacities(params["opacities"], params["mask"]))


def keep_probability(params: Params) -> torch.Tensor:
    """sigmoid(m) per Gaussian, on the CPU: what a prune ranks by."""
    return torch.sigmoid(params["mask"].detach()).cpu()
