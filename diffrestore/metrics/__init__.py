"""Image quality metrics.

``pixel``: PSNR and SSIM on tensors in [-1, 1]. ``catalogue``: every metric name (PSNR, SSIM, three LPIPS
variants, two FIDs, KID), their parsing and the ``Scorer`` that computes them (torch-free at import).
``lpips``, ``fid`` (FID, KID, the Inception input pipeline), ``networks`` (AlexNet, VGG16, strict weight
loading) and ``inception``: the networks, whose weights come through the model registry (family "metric").
``random_weights``: seeded stand-ins in the published files' layouts, for tests. See docs/metrics.md.
"""

from .pixel import psnr, ssim

__all__ = ["psnr", "ssim"]
