"""Image quality metrics: PSNR and SSIM on tensors in [-1, 1] (``pixel``)."""

from .pixel import psnr, ssim

__all__ = ["psnr", "ssim"]
