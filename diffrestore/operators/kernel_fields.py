"""Kernel grids that vary smoothly across the image, for simulating spatially varying blur (``--simulate``).

Two physical causes, each drawn once from a generator (never per call):

``shake_field``: camera shake with an in-plane rotation. During the exposure the camera translates by t and rolls
by an angle omega about the image centre c, so the scene point at p moves by d(p) = t + omega R (p - c) (R: a
quarter turn); to first order each point is streaked along the segment from -d(p)/2 to d(p)/2. The corners streak
more than the centre and in other directions - the pattern of real handheld shake (Whyte et al., IJCV 98, 2012,
show that rotation is what makes shake non-uniform).

``defocus_field``: a tilted scene plane seen with a shallow depth of field. The blur disk's radius grows linearly
along one direction of the frame (from a sharp band to the most defocused corner).

Both return (rows, cols, k, k) kernels at the nodes of :func:`~.varying_blur.hat_weights`' grid (node j of n over
a length L at (j + 0.5) L / n - 0.5), normalised to sum 1.
"""

from __future__ import annotations

import math

import torch

from .base import DEFAULT_SEED
from .kernels import splat_bilinear


def grid_nodes(length: int, nodes: int) -> torch.Tensor:
    """Pixel coordinates of the grid's nodes along one axis (the centres of ``nodes`` equal cells)."""
    return (torch.arange(nodes, dtype=torch.float32) + 0.5) * length / nodes - 0.5


def _draw(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=generator.device).cpu()


def segment_kernel(kernel_size: int, displacement: tuple[float, float]) -> torch.Tensor:
    """The streak of a point moved by ``displacement`` (dy, dx) pixels at constant speed, centred, rasterised with
    bilinear weights at sub-pixel steps; a displacement under a pixel gives (nearly) the identity kernel."""
    dy, dx = displacement
    half = (kernel_size - 1) / 2
    samples = max(2, math.ceil(8 * max(abs(dy), abs(dx))) + 1)
    t = torch.linspace(-0.5, 0.5, samples)
    points = torch.stack([half + t * dy, half + t * dx], dim=1).clamp(0, kernel_size - 1 - 1e-4)
    kernel = splat_bilinear(points, kernel_size)
    return kernel / kernel.sum()


def disk_kernel(kernel_size: int, radius: float, supersample: int = 8) -> torch.Tensor:
    """A uniform disk of ``radius`` pixels (anti-aliased by ``supersample``^2 sub-pixel samples), centred;
    radius 0 is the identity."""
    half = (kernel_size - 1) / 2
    offsets = (torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample - 0.5
    axis = (torch.arange(kernel_size, dtype=torch.float32)[:, None] + offsets[None, :]).reshape(-1) - half
    inside = (axis[:, None] ** 2 + axis[None, :] ** 2 <= max(radius, 0.0) ** 2).to(torch.float32)
    kernel = inside.reshape(kernel_size, supersample, kernel_size, supersample).mean(dim=(1, 3))
    if float(kernel.sum()) == 0.0:
        kernel[kernel_size // 2, kernel_size // 2] = 1.0
    return kernel / kernel.sum()


def shake_field(rows: int, cols: int, image_size: tuple[int, int], kernel_size: int = 31,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(rows, cols, k, k) streaks of a shake with translation and roll, drawn from ``generator`` (None: seed 0).
    The translation's length is 20-50 % of the kernel, the roll adds 20-50 % more at the frame's corners, and the
    field is scaled so that no streak leaves the kernel."""
    generator = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
    height, width = image_size
    reach = kernel_size - 3
    heading, length, roll_share, roll_sign = _draw(generator, 4)
    t = (0.2 + 0.3 * float(length)) * reach * torch.tensor([math.sin(2 * math.pi * heading),
                                                            math.cos(2 * math.pi * heading)])
    corner = math.hypot(height / 2, width / 2)
    omega = (0.2 + 0.3 * float(roll_share)) * reach / corner * (1.0 if float(roll_sign) < 0.5 else -1.0)
    ys, xs = grid_nodes(height, rows) - (height - 1) / 2, grid_nodes(width, cols) - (width - 1) / 2
    # d(p) = t + omega R (p - c), R (y, x) = (x, -y): a roll about the centre moves points tangentially
    dy = t[0] + omega * xs[None, :].expand(rows, cols)
    dx = t[1] - omega * ys[:, None].expand(rows, cols)
    longest = float(torch.sqrt(dy**2 + dx**2).max())
    if longest > reach:
        dy, dx = dy * (reach / longest), dx * (reach / longest)
    return torch.stack([torch.stack([segment_kernel(kernel_size, (float(dy[r, c]), float(dx[r, c])))
                                     for c in range(cols)]) for r in range(rows)])


def defocus_field(rows: int, cols: int, image_size: tuple[int, int], kernel_size: int = 15,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(rows, cols, k, k) disks whose radius grows linearly across the frame along a random direction, from 0-25 %
    to 100 % of the kernel's half-width (a tilted plane out of focus), drawn from ``generator`` (None: seed 0)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
    height, width = image_size
    heading, sharpest = (float(v) for v in _draw(generator, 2))
    direction = (math.sin(2 * math.pi * heading), math.cos(2 * math.pi * heading))
    ys, xs = grid_nodes(height, rows)[:, None], grid_nodes(width, cols)[None, :]
    along = direction[0] * ys + direction[1] * xs
    share = (along - along.min()) / max(float(along.max() - along.min()), 1e-6)
    largest = (kernel_size - 1) / 2
    radii = largest * (0.25 * sharpest + (1 - 0.25 * sharpest) * share)
    return torch.stack([torch.stack([disk_kernel(kernel_size, float(radii[r, c])) for c in range(cols)])
                        for r in range(rows)])
