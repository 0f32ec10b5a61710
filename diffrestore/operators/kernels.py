"""Blur kernels: validation and normalisation of a user's kernel, the papers' Gaussian, and random camera shake.

Random kernels come only from a passed ``torch.Generator`` and are drawn once, when the operator is built, never
per call (the counter-example of DESIGN.md: research scripts that redraw the kernel on every call).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .base import DEFAULT_SEED


def normalise_kernel(kernel: torch.Tensor, what: str) -> torch.Tensor:
    """``kernel`` as a float32 CPU tensor summing to 1; ``what`` names it in the one-line error if it cannot be."""
    kernel = kernel.detach().to(device="cpu", dtype=torch.float32)
    if kernel.dim() != 2 or kernel.numel() == 0:
        raise UsageError(f"{what} must be a 2-D array, got shape {tuple(kernel.shape)}")
    if not bool(torch.isfinite(kernel).all()):
        raise UsageError(f"{what} contains NaN or infinite values")
    total = float(kernel.sum())
    if total <= 0:
        raise UsageError(f"{what} must have a positive sum (got {total:g}); it is normalised to sum 1")
    return kernel / total


def gaussian_kernel(kernel_size: int = 61, sigma: float = 3.0) -> torch.Tensor:
    """A ``kernel_size x kernel_size`` isotropic Gaussian (sigma in pixels), normalised to sum 1."""
    radius = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    profile = torch.exp(-0.5 * (radius / sigma) ** 2)
    kernel = profile[:, None] * profile[None, :]
    return kernel / kernel.sum()


def motion_blur_kernel(
    kernel_size: int = 61, intensity: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random camera-shake kernel, drawn once from ``generator`` (``None``: seed 0), normalised to sum 1.

    The camera path is a random walk of ``4 * kernel_size`` steps whose heading drifts as a Brownian motion (total
    spread ``1.5 pi * intensity`` radians over the path) and whose speed jitters by ``intensity``: 0 gives a
    straight streak, 1 a curled, uneven one. The path is scaled so its bounding box spans a random 40-90 % of the
    kernel, centred on its centre of mass (so blurring does not shift the image), kept one pixel inside the
    canvas, and rasterised time-uniformly with bilinear weights.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)

    def draw(*shape: int, normal: bool = False) -> torch.Tensor:
        # Draw on the generator's device, then compute on the CPU.
        fn = torch.randn if normal else torch.rand
        return fn(*shape, generator=generator, device=generator.device).cpu()

    steps = 4 * kernel_size
    heading = 2 * math.pi * draw(1)
    turns = (1.5 * math.pi * intensity / math.sqrt(steps)) * draw(steps, normal=True)
    speed = (1 + intensity * draw(steps, normal=True)).abs()
    extent_fraction = 0.4 + 0.5 * draw(1)
    angles = heading + turns.cumsum(0)
    velocity = torch.stack([angles.sin(), angles.cos()], dim=1) * speed[:, None]
    path = torch.cat([torch.zeros(1, 2), velocity.cumsum(0)])
    extent = float((path.amax(0) - path.amin(0)).max())
    path = path * (extent_fraction * (kernel_size - 3) / max(extent, 1e-6))
    path = path - path.mean(0)
    # Keep every point at least one pixel inside the canvas for the bilinear splat.
    half = (kernel_size - 1) / 2 - 1
    reach = float(path.abs().max())
    if reach > half:
        path = path * (half / reach)
    coords = path + (kernel_size - 1) / 2
    # Sample densely along the path so the raster has no gaps, then splat bilinearly.
    dense = F.interpolate(coords.T[None], size=16 * steps, mode="linear", align_corners=True)[0].T
    low = dense.floor()
    frac = dense - low
    low = low.long()
    kernel = torch.zeros(kernel_size, kernel_size)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            kernel.index_put_((low[:, 0] + dy, low[:, 1] + dx), weight, accumulate=True)
    return kernel / kernel.sum()
