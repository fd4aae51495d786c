"""PSNR and SSIM on [H, W, 3] images in [0, 1].

SSIM (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, mean over
pixels and channels, in two conventions:
  '3dgs'  : "same"-size output with zero padding, as the INRIA 3DGS code computes it (`utils/loss_utils.py`)
            and as its papers report it; also the training loss's D-SSIM.
  'valid' : only windows fully inside the image (no padding), as pytorch-msssim, mip-NeRF and
            nerfbaselines compute it.
The two differ by 0.001-0.01 on 512x384 images and more on small ones (measured in `tests/test_metrics.py`
against pytorch-msssim 1.0.0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_MODES = ("3dgs", "valid")
_WINDOW = 11
_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2


def psnr(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of one image (peak 1.0): 20 log10(1 / sqrt(MSE)), as 3DGS computes it per view."""
    mse = torch.mean((image.double() - target.double()) ** 2)
    return (-10.0 * torch.log10(mse)).to(image.dtype)


def _gaussian_window(dtype, device) -> torch.Tensor:
    x = torch.arange(_WINDOW, dtype=torch.float64, device=device) - _WINDOW // 2
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    g = g / g.sum()
    return g.to(dtype)


def _as_batch(image: torch.Tensor) -> torch.Tensor:
    """[H, W, C] or [B, H, W, C] -> [B, C, H, W]."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise ValueError(f"expected an [H, W, C] or [B, H, W, C] image, got shape {tuple(image.shape)}")
    return image.permute(0, 3, 1, 2)


def ssim_map(image: torch.Tensor, target: torch.Tensor, mode: str = "3dgs") -> torch.Tensor:
    """Per-pixel SSIM, [B, C, H', W'] (H' = H in '3dgs' mode, H - 10 in 'valid' mode). Differentiable."""
    if mode not in SSIM_MODES:
        raise ValueError(f"unknown SSIM mode {mode!r}; use one of {SSIM_MODES}")
    x, y = _as_batch(image), _as_batch(target)
    channels = x.shape[1]
    g = _gaussian_window(x.dtype, x.device)
    pad = _WINDOW // 2 if mode == "3dgs" else 0
    # The 2-D Gaussian window is separable: blur rows, then columns (same result as the 11x11 kernel).
    kx = g.view(1, 1, 1, _WINDOW).expand(channels, 1, 1, _WINDOW)
    ky = g.view(1, 1, _WINDOW, 1).expand(channels, 1, _WINDOW, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, kx, padding=(0, pad), groups=channels)
        return F.conv2d(t, ky, padding=(pad, 0), groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)
    den = (mu_x * mu_x + mu_y * mu_y + _C1) * (sxx + syy + _C2)
    return num / den


def ssim(image: torch.Tensor, target: torch.Tensor, mode: str = "3dgs") -> torch.Tensor:
    """Mean SSIM over pixels and channels (and the batch, if any)."""
    return ssim_map(image, target, mode).mean()
