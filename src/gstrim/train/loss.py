"""The 3DGS photometric loss: (1 - lambda) L1 + lambda (1 - SSIM), lambda = 0.2 (Kerbl et al. 2023, eq. 7)."""

from __future__ import annotations

import torch

from gstrim.metrics.image import ssim

SSIM_WEIGHT = 0.2


def photometric_loss(image: torch.Tensor, target: torch.Tensor, ssim_weight: float = SSIM_WEIGHT) -> torch.Tensor:
    l1 = torch.abs(image - target).mean()
    if ssim_weight == 0:
        return l1
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(image, target, mode="3dgs"))
