"""A learned keep-mask while trimming (`trim --mask-weight W`): which Gaussians the loss can do without is
learned during the fine-tuning between prunes, post hoc from the trained prior, and each prune removes the
Gaussians whose mask fell lowest.

The mask follows Compact 3D Gaussian Representation (Lee et al., CVPR 2024, Sec. 3.1): a logit m per
Gaussian, a hard mask 1[sigmoid(m) > MASK_THRESHOLD] in the forward pass with the straight-through gradient of
sigmoid(m), the opacity multiplied by the mask, and a sparsity loss W x mean(sigmoid(m)) that pulls every
mask down while the photometric loss holds up the Gaussians it needs. gstrim masks the opacity only (Lee et
al. also mask the scale) and keeps the count schedule of the trim: the mask ranks, the schedule decides how
many go. The mask acts until the last prune; the fine-tuning after it is plain.

The multiplication is made in the logit the renderers take: where the mask is 1 the logit is the raw one
exactly (so an unmasked scene renders bit for bit as without a mask), and its derivative by the mask is that
of logit(sigmoid(o) x M) at M = 1, 1 / (1 - sigmoid(o)); a masked Gaussian's logit drops by MASKED_DROP, which
makes it invisible (its alpha stays far under the renderers' 1/255).
"""

from __future__ import annotations

import torch

from gstrim.scene import GaussianScene
from gstrim.train.ops import Optimizers, Params
from gstrim.train.optim import ADAM_EPS, LearningRates
from gstrim.train.parameterization import RawParameters

MASK_INIT = 2.0  # logit of a fresh mask: sigmoid 0.88, far above the threshold (gstrim's choice)
MASK_LR = 0.01  # Adam rate of the mask logits (gstrim's choice: ~100 iterations to cross from the start)
MASK_THRESHOLD = 0.01  # sigmoid(m) at or under which the mask is 0 in the forward pass
MASKED_DROP = 30.0  # logit drop of a masked Gaussian: sigmoid(o - 30) < 1e-9 for any opacity logit o < 9


def masked_opacities(opacities: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """The opacity logits with the straight-through hard mask applied (see the module's docstring)."""
    soft = torch.sigmoid(mask_logits)
    hard = soft > MASK_THRESHOLD
    through = (soft - soft.detach()) / (1.0 - torch.sigmoid(opacities.detach())).clamp_min(1e-6)
    return torch.where(hard, opacities + through, opacities.detach() - MASKED_DROP)


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


def keep_probability(params: Params) -> torch.Tensor:
    """sigmoid(m) per Gaussian, on the CPU: what a prune ranks by."""
    return torch.sigmoid(params["mask"].detach()).cpu()
