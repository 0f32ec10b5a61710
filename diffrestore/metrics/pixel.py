"""Image quality metrics: PSNR and SSIM, in float32, batched.

Both take tensors in tensor units ([-1, 1], shape (N, C, H, W)) and score them on the user's [0, 1] intensity
scale (data range 1), which is what papers and image viewers report. Values outside [-1, 1] are clamped first,
because a saved image is clamped too and the score should describe the file the user gets.

SSIM follows Wang et al. 2004 (IEEE TIP 13(4)): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, statistics over the "valid" region only (no padding, so borders do not invent structure), averaged
over channels and positions. Images smaller than the window use the largest odd window that fits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    import torch

    if x.dim() == 3:
        x = x.unsqueeze(0)
    return ((x.to(torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0).cpu()


def _check(x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _to_unit(x), _to_unit(reference)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"cannot compare images of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        a, b = a.expand(max(a.shape[0], b.shape[0]), -1, -1, -1), b.expand(max(a.shape[0], b.shape[0]), -1, -1, -1)
    return a, b


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (N,). Identical images give +inf."""
    import torch

    a, b = _check(x, reference)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-20)), torch.full_like(mse, float("inf")))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    import torch

    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return g


def ssim(x: torch.Tensor, reference: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image, shape (N,), in [-1, 1] (1 = identical)."""
    import torch.nn.functional as F

    a, b = _check(x, reference)
    _, c, h, w = a.shape
    size = min(window_size, h, w)
    if size % 2 == 0:
        size -= 1
    if size < 1:
        raise ValueError(f"image of size {w}x{h} is too small for SSIM")
    g = _gaussian_window(size, sigma)
    # A separable filter (rows, then columns) applied per channel.
    kernel_h = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)
    kernel_v = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kernel_h, groups=c), kernel_v, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)
