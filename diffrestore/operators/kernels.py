"""Blur kernels: validation and normalisation of a user's kernel, the papers' Gaussian, and random camera shake.

Random kernels come only from a passed ``torch.Generator`` and are drawn once, when the operator is built, never
per call (research scripts that redraw the kernel on every call make a different problem at every step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import DiffrestoreError, UsageError
from .base import DEFAULT_SEED


def check_kernel_shape(shape: tuple[int, ...], what: str, *, error: type[DiffrestoreError] = UsageError) -> None:
    """Refuse anything but a non-empty 2-D shape. Separate so a file reader can check a header before reading."""
    if len(shape) != 2 or 0 in shape:
        raise error(f"{what} has shape {tuple(shape)}; a blur kernel must be a non-empty 2-D array (kh, kw)",
                    hint="save one kernel as a 2-D array, e.g. numpy.save(path, kernel)")


def normalise_kernel(
    kernel: torch.Tensor, what: str, *, error: type[DiffrestoreError] = UsageError
) -> torch.Tensor:
    """``kernel`` as a float32 CPU tensor summing to 1, or ``error`` with a one-line message naming ``what``.

    Every check a blur kernel needs lives here (a kernel file read by imageio comes through here too): real,
    2-D and non-empty, finite, no negative weight (a point-spread function spreads light, it cannot remove
    any), not all zero. The checks run in float64, so a value float32 cannot hold is reported as what it is
    rather than as an overflow to infinity.
    """
    kernel = torch.as_tensor(kernel).detach().to(device="cpu")
    if kernel.is_complex():
        raise error(f"{what} has complex values ({kernel.dtype}); a blur kernel must be real",
                    hint="give its real part (kernel.real) if that is the kernel")
    check_kernel_shape(tuple(kernel.shape), what, error=error)
    values = kernel.to(torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise error(f"{what} contains NaN or infinite values; a blur kernel's weights must be finite",
                    hint="re-export the kernel; NaN usually means the estimation that made it diverged")
    negative = int((values < 0).sum())
    if negative:
        raise error(
            f"{what} has {negative} negative weight(s), down to {float(values.min()):.3g}; a blur kernel's "
            "weights must be >= 0 (blur spreads light, it cannot remove any)",
            hint="clip them to 0 first, e.g. numpy.clip(kernel, 0, None)",
        )
    peak = float(values.max())
    if peak == 0.0:
        raise error(f"{what} sums to 0: a blur kernel must have a positive sum to be normalised to 1",
                    hint="an all-black kernel image or an all-zero array holds no blur")
    total = float(values.sum())
    # Ordinary kernels are normalised in float32 exactly as before, so results stay bitwise the same; only values
    # float32 cannot hold (a sum past 1e38, or weights so small they would flush to 0) are scaled in float64 first.
    if peak < 1e-30 or total > 1e38:
        values = values / peak
    kernel32 = values.to(torch.float32)
    return kernel32 / float(kernel32.sum())


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
    kernel = splat_bilinear(dense, kernel_size)
    return kernel / kernel.sum()


def splat_bilinear(points: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """A ``kernel_size`` square canvas with each (row, col) point of ``points`` ((P, 2), inside the canvas) spread
    over its four neighbouring pixels by bilinear weights (summing to 1 per point); not normalised. A neighbour
    past the last row or column (a point exactly on it, weight 0) is folded onto it."""
    low = points.floor()
    frac = points - low
    low = low.long()
    kernel = torch.zeros(kernel_size, kernel_size)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
            rows = (low[:, 0] + dy).clamp_max(kernel_size - 1)
            cols = (low[:, 1] + dx).clamp_max(kernel_size - 1)
            kernel.index_put_((rows, cols), weight, accumulate=True)
    return kernel
