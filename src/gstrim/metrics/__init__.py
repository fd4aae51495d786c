"""Image quality metrics: PSNR, SSIM (3DGS and valid conventions), LPIPS (AlexNet, VGG)."""

from gstrim.metrics.image import SSIM_MODES, psnr, ssim, ssim_map
from gstrim.metrics.lpips import LPIPS, LPIPS_INPUTS, LPIPS_NETS

__all__ = ["LPIPS", "LPIPS_INPUTS", "LPIPS_NETS", "SSIM_MODES", "psnr", "ssim", "ssim_map"]
