"""k-space sampling masks for ``mri.MultiCoilMRI``: Cartesian lines (random, equispaced, Gaussian density), 2-D
variable-density Poisson disc, InverseBench's exact masks, and a user's own 0/1 array.

Every mask is a ``KSpaceMask``: a bool ``(H, W)`` tensor (True = sampled) that states its realised
``acceleration`` (grid points over sampled points), which may differ from the one asked for (docs/mri.md).

Line masks sample whole columns (``orientation="vertical"``: the phase-encode direction runs along the width, as
InverseBench and fastMRI store knee k-space) or whole rows (``"horizontal"``). Of ``N`` lines they keep
``floor(N / R)`` (InverseBench's budget), including a block of ``acs`` fully sampled centre lines (the
autocalibration signal, which coil-map estimation needs). The default ``acs`` is InverseBench's:
``floor(0.08 N)`` for ``1 < R <= 6``, else ``floor(0.04 N)``; ``center_fraction`` gives ``floor(f N)`` instead.
The block is centred on the DC line ``N // 2`` (``N // 2 - acs // 2`` onwards, fastMRI's placement).

Randomness comes only from the ``torch.Generator`` passed (None: seed ``DEFAULT_SEED``), so a seed gives one mask.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..errors import SizeMismatchError, UsageError
from .base import DEFAULT_SEED

ORIENTATIONS: tuple[str, ...] = ("vertical", "horizontal")
#: mask kinds by name, as ``build_operator("mri", sampling=...)`` takes them
MASK_KINDS: tuple[str, ...] = ("random", "equispaced", "gaussian", "poisson")


@dataclasses.dataclass(frozen=True)
class KSpaceMask:
    """A sampling pattern: ``mask`` bool ``(H, W)``, True = sampled; ``kind`` its name; ``acs`` the side(s) of its
    fully sampled centre (lines for a line mask, (rows, cols) for a 2-D one, None if unknown)."""

    mask: torch.Tensor
    kind: str
    acs: int | tuple[int, int] | None = None

    @property
    def sampled(self) -> int:
        return int(self.mask.sum())

    @property
    def acceleration(self) -> float:
        """Grid points over sampled points: the acceleration actually achieved (inf for an empty mask)."""
        return math.inf if self.sampled == 0 else self.mask.numel() / self.sampled


# --------------------------------------------------------------------------------------------------- line masks


def default_acs_lines(lines: int, acceleration: float) -> int:
    """InverseBench's number of centre lines: 8 % of the lines for accelerations up to 6, else 4 % (rounded down)."""
    return math.floor((0.08 if 1 < acceleration <= 6 else 0.04) * lines)


def centre_block(lines: int, count: int) -> torch.Tensor:
    """Indices of ``count`` consecutive lines around the DC line ``lines // 2`` (the extra line of an even block
    on the negative-frequency side, as ``fftshift`` orders them)."""
    start = lines // 2 - count // 2
    return torch.arange(start, start + count)


def _check_acceleration(acceleration: float) -> float:
    acceleration = float(acceleration)
    if not math.isfinite(acceleration) or acceleration < 1:
        raise UsageError(f"mri: acceleration must be a number >= 1, got {acceleration}")
    return acceleration


def _line_plan(size: tuple[int, int], acceleration: float, center_fraction: float | None, acs_lines: int | None,
               orientation: str) -> tuple[int, int, torch.Tensor]:
    """(lines, extra lines to draw, ACS indices) for a line mask, every parameter checked."""
    if orientation not in ORIENTATIONS:
        raise UsageError(f"mri: orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    acceleration = _check_acceleration(acceleration)
    height, width = (int(v) for v in size)
    lines = width if orientation == "vertical" else height
    if center_fraction is not None and acs_lines is not None:
        raise UsageError("mri: give center_fraction or acs_lines, not both")
    if center_fraction is not None:
        if not 0 <= float(center_fraction) <= 1:
            raise UsageError(f"mri: center_fraction must be in [0, 1], got {center_fraction}")
        acs = math.floor(float(center_fraction) * lines)
    else:
        acs = default_acs_lines(lines, acceleration) if acs_lines is None else int(acs_lines)
    budget = math.floor(lines / acceleration)
    if not 0 <= acs <= budget:
        raise UsageError(f"mri: acceleration {acceleration:g} keeps {budget} of {lines} lines, fewer than the {acs} "
                         "centre (ACS) lines; lower center_fraction or the acceleration")
    return lines, budget - acs, centre_block(lines, acs)


def _outer(lines: int, acs_index: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(lines, dtype=torch.bool)
    keep[acs_index] = False
    return keep.nonzero()[:, 0]


def _to_mask(size: tuple[int, int], chosen: torch.Tensor, orientation: str, kind: str, acs: int) -> KSpaceMask:
    height, width = (int(v) for v in size)
    profile = torch.zeros(width if orientation == "vertical" else height, dtype=torch.bool)
    profile[chosen] = True
    mask = profile[None, :].expand(height, width) if orientation == "vertical" else profile[:, None].expand(height,
                                                                                                            width)
    return KSpaceMask(mask.contiguous(), kind, acs)


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)


def _uniform(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=generator.device).cpu()


def random_lines(size: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
                 acs_lines: int | None = None, generator: torch.Generator | None = None,
                 orientation: str = "vertical") -> KSpaceMask:
    """The ACS block plus lines drawn uniformly without replacement from the rest, ``floor(N / R)`` in all
    (InverseBench's ``pattern='random'``; fastMRI's ``RandomMaskFunc`` draws each line by a coin instead, so its
    count varies). ``size = (H, W)``."""
    lines, extra, acs = _line_plan(size, acceleration, center_fraction, acs_lines, orientation)
    outer = _outer(lines, acs)
    drawn = outer[_uniform(len(outer), _generator(generator)).argsort()[:extra]]
    return _to_mask(size, torch.cat([acs, drawn]), orientation, "random", len(acs))


def equispaced_lines(size: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
                     acs_lines: int | None = None, generator: torch.Generator | None = None,
                     orientation: str = "vertical") -> KSpaceMask:
    """The ACS block plus lines at equal steps through the lines outside it, ``floor(N / R)`` in all: the step
    is ``(N - acs) / (floor(N / R) - acs)`` (rounded down line by line, so it alternates between two integers when
    it is not one) and the first line is offset by a random share of a step from ``generator``.
    InverseBench's ``'equispaced'`` takes every ``int(R)``-th outer line instead, which keeps more lines than the
    budget (4x keeps 99 of 320 lines: 3.2x); ``inversebench_lines`` reproduces it."""
    lines, extra, acs = _line_plan(size, acceleration, center_fraction, acs_lines, orientation)
    outer = _outer(lines, acs)
    chosen = acs
    if extra > 0:
        step = len(outer) / extra
        offset = float(_uniform(1, _generator(generator))[0]) * step
        positions = [math.floor(offset + j * step) for j in range(extra)]
        chosen = torch.cat([acs, outer[torch.tensor(positions, dtype=torch.long)]])
    return _to_mask(size, chosen, orientation, "equispaced", len(acs))


def gaussian_lines(size: tuple[int, int], acceleration: float, *, std: float = 0.15,
                   center_fraction: float | None = None, acs_lines: int | None = None,
                   generator: torch.Generator | None = None, orientation: str = "vertical") -> KSpaceMask:
    """The ACS block plus lines drawn without replacement with probability proportional to a Gaussian around the
    DC line, of standard deviation ``std * N`` lines: ``floor(N / R)`` lines in all. (score-MRI's ``gaussian1d``
    draws with replacement, so it keeps fewer lines than asked; here the count is exact.)"""
    if not float(std) > 0:
        raise UsageError(f"mri: std must be > 0, got {std}")
    lines, extra, acs = _line_plan(size, acceleration, center_fraction, acs_lines, orientation)
    outer = _outer(lines, acs)
    chosen = acs
    if extra > 0:
        distance = (outer - lines // 2).to(torch.float32) / (float(std) * lines)
        # the floor keeps far lines drawable (last) when the tails underflow, so any budget can be met
        weights = torch.exp(-0.5 * distance**2).clamp_min(1e-30)
        generator = _generator(generator)
        drawn = torch.multinomial(weights.to(generator.device), extra, replacement=False, generator=generator).cpu()
        chosen = torch.cat([acs, outer[drawn]])
    return _to_mask(size, chosen, orientation, "gaussian", len(acs))


def inversebench_lines(size: tuple[int, int], acceleration: float, pattern: str = "random", seed: int = 0,
                       orientation: str = "vertical") -> KSpaceMask:
    """InverseBench's mask (``MultiCoilMRI.get_mask``) bit for bit: its ACS rule, its ACS block
    ``[(N - acs) // 2, (N + acs) // 2)`` (one line off centre for an odd block), ``'random'`` drawn by numpy's
    legacy generator seeded with ``seed`` (``np.random.choice`` without replacement) and ``'equispaced'`` every
    ``int(R)``-th line outside the block. Use it to compare with InverseBench's numbers; prefer the others."""
    if pattern not in ("random", "equispaced"):
        raise UsageError(f"mri: InverseBench's pattern is 'random' or 'equispaced', got {pattern!r}")
    if orientation not in ORIENTATIONS:
        raise UsageError(f"mri: orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    acceleration = _check_acceleration(acceleration)
    height, width = (int(v) for v in size)
    lines = width if orientation == "vertical" else height
    acs = default_acs_lines(lines, acceleration)
    budget = math.floor(lines / acceleration)
    centre = np.arange((lines - acs) // 2, (lines + acs) // 2)
    outer = np.setdiff1d(np.arange(lines), centre)
    if pattern == "random":
        if budget < acs:
            raise UsageError(f"mri: acceleration {acceleration:g} keeps fewer lines than the {acs} centre lines")
        extra = np.random.RandomState(seed).choice(outer, size=budget - acs, replace=False)
    else:
        extra = outer[:: int(acceleration)]
    chosen = torch.from_numpy(np.concatenate([centre, extra]).astype(np.int64))
    return _to_mask(size, chosen, orientation, f"inversebench-{pattern}", acs)


# ------------------------------------------------------------------------------------------------- Poisson disc


def _radius_grid(size: tuple[int, int]) -> np.ndarray:
    """Each grid point's distance from DC, in half-sizes along each axis (1 on the inscribed ellipse)."""
    height, width = size
    ky = (np.arange(height, dtype=np.float32) - height // 2) / max(height / 2, 1.0)
    kx = (np.arange(width, dtype=np.float32) - width // 2) / max(width / 2, 1.0)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _dart_throw(order: np.ndarray, radius: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Greedy Poisson disc on the grid: visit points in ``order``; accept one when no accepted point lies closer
    than its own radius. ``start`` (bool) is accepted beforehand."""
    height, width = start.shape
    reach = math.ceil(float(radius.max()))
    accepted = np.zeros((height + 2 * reach, width + 2 * reach), dtype=bool)
    accepted[reach:reach + height, reach:reach + width] = start
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    distance2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    flat_radius = radius.ravel()
    for index in order:
        y, x = divmod(int(index), width)
        r = float(flat_radius[index])
        if r <= 0:
            continue
        window = accepted[y:y + 2 * reach + 1, x:x + 2 * reach + 1]
        if not (window & (distance2 < r * r)).any():
            accepted[y + reach, x + reach] = True
    return accepted[reach:reach + height, reach:reach + width]


def poisson_disc(size: tuple[int, int], acceleration: float, *, calib: tuple[int, int] | None = None,
                 density_slope: float = 2.0, crop_corners: bool = True, tol: float = 0.02,
                 generator: torch.Generator | None = None) -> KSpaceMask:
    """A 2-D variable-density Poisson-disc mask (every point sampled at most once; sampled points keep a minimum
    distance that grows with the distance ``rho`` from DC as ``r0 (1 + density_slope * rho)``), with a fully
    sampled centre box ``calib = (rows, cols)`` (default: the 1-D ACS rule on each side) and, with
    ``crop_corners``, nothing beyond the inscribed ellipse (``rho > 1``; sigpy's default). ``r0`` is found by
    bisection until the realised acceleration is within ``tol`` (relative) of ``acceleration``; where no radius
    gets there (small grids, where the count jumps), points are added or dropped in the visiting order to meet
    ``round(H W / R)``; UsageError when even that cannot (too few points inside the ellipse). Points are visited
    in a random order from ``generator``."""
    acceleration = _check_acceleration(acceleration)
    height, width = (int(v) for v in size)
    if calib is None:
        calib = (default_acs_lines(height, acceleration), default_acs_lines(width, acceleration))
    rows, cols = (int(v) for v in calib)
    if not (0 <= rows <= height and 0 <= cols <= width):
        raise UsageError(f"mri: calib {calib} does not fit in the {width}x{height} k-space")
    start = np.zeros((height, width), dtype=bool)
    start[np.ix_(centre_block(height, rows).numpy(), centre_block(width, cols).numpy())] = True
    rho = _radius_grid((height, width))
    allowed = ~start & ((rho <= 1.0) if crop_corners else True)
    target = height * width / acceleration
    order = _uniform(height * width, _generator(generator)).argsort().numpy()
    order = order[allowed.ravel()[order]]
    profile = 1.0 + float(density_slope) * rho
    low, high = math.log(0.5), math.log(float(max(height, width)))  # r0 bounds: below 1 every point is accepted
    best: np.ndarray | None = None
    for _ in range(30):
        r0 = math.exp((low + high) / 2)
        mask = _dart_throw(order, np.where(allowed, r0 * profile, 0.0).astype(np.float32), start)
        count = int(mask.sum())
        if best is None or abs(count - target) < abs(int(best.sum()) - target):
            best = mask
        if abs(count - target) <= tol * target:
            break
        if count > target:
            low = math.log(r0)
        else:
            high = math.log(r0)
    assert best is not None
    if abs(int(best.sum()) - target) > tol * target:
        # On small grids the count jumps as the radius passes a grid distance; meet the budget by adding
        # unsampled points in the visiting order, or dropping the last accepted ones (never the calibration box).
        wanted = round(target)
        flat = best.ravel().copy()
        if int(flat.sum()) < wanted:
            free = order[~flat[order]]
            if len(free) < wanted - int(flat.sum()):
                raise UsageError(f"mri: a Poisson-disc mask cannot reach acceleration {acceleration:g} on "
                                 f"{width}x{height}; lower it or set crop_corners=False")
            flat[free[:wanted - int(flat.sum())]] = True
        else:
            taken = order[flat[order]]
            flat[taken[len(taken) - (int(flat.sum()) - wanted):]] = False
        best = flat.reshape(height, width)
    return KSpaceMask(torch.from_numpy(best), "poisson", (rows, cols))


# -------------------------------------------------------------------------------------------------- user masks


def mask_from_array(array, size: tuple[int, int] | None = None) -> KSpaceMask:
    """A user's mask: a 2-D array (numpy, tensor, nested lists) of 0/1 or bool, 1 = sampled; ``size = (H, W)``,
    when given, must match. Anything else (other values, NaN, 1-D or 3-D) is refused with a one-line message."""
    tensor = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array)
    if tensor.dim() != 2:
        raise UsageError(f"mri: a sampling mask must be a 2-D array (H, W) of 0/1, got shape {tuple(tensor.shape)}")
    if tensor.dtype != torch.bool:
        values = tensor.to(torch.float32)
        if not bool(((values == 0) | (values == 1)).all()):
            raise UsageError("mri: a sampling mask must hold only 0 (skipped) and 1 (sampled)")
        tensor = values == 1
    if size is not None and tuple(tensor.shape) != tuple(int(v) for v in size):
        raise SizeMismatchError(f"mri: mask size {tensor.shape[1]}x{tensor.shape[0]} differs from the k-space size "
                                f"{size[1]}x{size[0]} (W x H)")
    return KSpaceMask(tensor.contiguous(), "user")


def build_mask(kind: str, size: tuple[int, int], acceleration: float, *, center_fraction: float | None = None,
               generator: torch.Generator | None = None) -> KSpaceMask:
    """A mask by name (``MASK_KINDS``): line masks are vertical; ``poisson`` takes ``center_fraction`` of each
    side as its calibration box."""
    if kind not in MASK_KINDS:
        raise UsageError(f"mri: sampling must be one of {', '.join(MASK_KINDS)}, got {kind!r}")
    if kind == "poisson":
        calib = None
        if center_fraction is not None:
            calib = (math.floor(center_fraction * size[0]), math.floor(center_fraction * size[1]))
        return poisson_disc(size, acceleration, calib=calib, generator=generator)
    make = {"random": random_lines, "equispaced": equispaced_lines, "gaussian": gaussian_lines}[kind]
    return make(size, acceleration, center_fraction=center_fraction, generator=generator)
