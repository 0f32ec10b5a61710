"""The noise level of an image, estimated from the image itself (``--noise-sigma auto``).

Estimator (Donoho & Johnstone 1994, "Ideal spatial adaptation by wavelet shrinkage"): the finest-scale diagonal
(HH) Haar wavelet coefficients ``d = (a - b - c + e) / 2`` of the 2x2 blocks ``[a b; c e]`` of a natural image are
mostly noise (smooth content, and edges along rows or columns, cancel); the orthonormal Haar transform keeps white
noise's std, and the median absolute deviation ignores the few coefficients that hold signal:

    sigma = median(|d|) / 0.6745        (0.6745 = the median of |N(0, 1)|)

Details, each measured on 256 x 256 crops of 16 skimage photos with noise added and rounded to 8 bits
(``python benchmarks/small_noise.py estimate``):
- Blocks are the non-overlapping ones of the decimated transform; an odd last row or column is left out.
- Colour: every channel's coefficients pooled into one median. The median of the three per-channel estimates
  agrees within 5 % of the truth on every photo, and pooling is a little steadier (spread 2.1 % against 2.4 % over
  300 noise draws on 64 x 64 RGB).
- The median is interpolated inside its lattice cell (``grouped_median``): a file's integers make the coefficients
  multiples of half a step, and the plain median, stuck on that lattice, was off by up to 16 % at sigma 0.01.
- Blocks with a clipped pixel (black or white) are left out: clipping removes noise, and at sigma 0.1 it had pulled
  the estimate down by 13 % and 25 % on coffee and hubble_deep_field (now 4 % and 3 %).
- ``known`` (inpainting): only blocks whose four pixels are all known count, so whatever fills a hole cannot bias
  the estimate. Fewer than ``MIN_COEFFICIENTS`` usable coefficients and the estimate falls back to the floor (the
  median's relative standard error is about 1.17 / sqrt(n): 10 % at 128); ``raw`` still holds their MAD and
  ``describe()`` says both. (A 64 x 64 image with 70 % of its pixels missing at random has ~24: floor.)

The floor is the file's quantisation step, 1 / (2^bits - 1): 1/255 for 8-bit, 1/65535 for 16-bit files (a
design choice). Not the rounding error's rms, step / sqrt(12) = 0.29 step, because that is the error of a
rounding independent of the image, and rounding is not: a flat region rounds to one value (HH exactly 0), a
gradient to a pattern. And a level under one step is not something the estimate can tell apart from a photo's own
content: clean 8-bit photos read from 0.2 to 3.7 steps (grass 11), so below a step the number says more about
the photo than about its noise. A file only gives its pixels to within a step; a likelihood sharper than that asks
for a fit the solvers do not reach (benchmarks/small_noise.py: with sigma = step / sqrt(12) DAPS's misfit stays at
1.8-8.5x the noise std, with the step it is 1.1-2.9x).

Known limit: fine detail in the HH band reads as noise, so at low noise the estimate is high. Photos with little
of it (moon, cell, retina, rocket, brick) read the floor when clean and are within 13 % at sigma 0.01; photos with
grain or fur (astronaut, coffee, camera, chelsea) read 1.4-1.9x at 0.01 and 1.1-1.2x at 0.03 (clean: 0.006-0.014);
grass and gravel 4.6x and 2.5x at 0.01. At 0.1 every photo is within 6 % (grass 11 %). Blur removes HH content,
so a blurred input reads its noise accurately (astronaut blurred: 1.01x at 0.01, unblurred 1.65x); downsampling
packs detail in, so a super-resolution input (a 256 crop shrunk 4x) read 2.5-5x a noise of 1/255 (astronaut,
coffee, chelsea; rocket 1.2x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UsageError

#: the median of |Z| for Z ~ N(0, 1): median(|d|) / this is the std of Gaussian coefficients
MAD_TO_SIGMA = 0.6745
#: fewer fully known 2x2 blocks than this and the estimate falls back to the floor (median's error ~10 % at 128)
MIN_COEFFICIENTS = 128


@dataclass(frozen=True)
class NoiseEstimate:
    """An estimated noise std on the [0, 1] intensity scale and how it was reached.

    ``sigma``: the estimate used, at least ``floor``. ``floor``: the file's quantisation step. ``raw``: the MAD
    estimate before flooring (None when no coefficient was usable). ``coefficients``: how many HH coefficients the
    median was taken over; below MIN_COEFFICIENTS ``raw`` is too uncertain and ``sigma`` is the floor.
    ``bit_depth``: the file's bits per sample."""

    sigma: float
    floor: float
    raw: float | None
    coefficients: int
    bit_depth: int

    @property
    def reliable(self) -> bool:
        """Whether enough coefficients were usable for ``raw`` to count."""
        return self.raw is not None and self.coefficients >= MIN_COEFFICIENTS

    @property
    def floored(self) -> bool:
        """Whether the floor, not the image's coefficients, set ``sigma``."""
        return not self.reliable or self.raw is None or self.raw < self.floor

    def run_note(self) -> str:
        """``describe``, plus what to do when the estimate could not be trusted (too few usable coefficients)."""
        text = self.describe()
        if not self.reliable:
            return f"{text}; too few known 2x2 blocks to trust it: give --noise-sigma if the file is noisy"
        return f"{text} (--noise-sigma auto; give a number to override)"

    def describe(self) -> str:
        """One line for the run's output, e.g. 'estimated noise sigma 0.0123 on [0, 1] (MAD of 24,576 wavelet
        coefficients; floor 1/255)'."""
        head = f"estimated noise sigma {self.sigma:.4f} on [0, 1]"
        floor = f"floor 1/{2**self.bit_depth - 1}"
        if self.raw is None:
            return f"{head} ({floor}: no usable wavelet coefficient)"
        source = f"MAD of {self.coefficients:,} wavelet coefficients"
        if not self.reliable:
            return (f"{head} ({floor}: only {self.coefficients:,} usable wavelet coefficients, fewer than "
                    f"{MIN_COEFFICIENTS}; their MAD gave {self.raw:.4f})")
        if self.floored:
            return f"{head} ({source} gave {self.raw:.4f}, below the {floor})"
        return f"{head} ({source}; {floor})"


def quantisation_step(bit_depth: int) -> float:
    """The step between neighbouring values of a ``bit_depth``-bit file on the [0, 1] scale (1/255 for 8 bits)."""
    # 16 bits at most (PNG and TIFF samples): grouped_median keeps one counter per lattice value
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, int) or not 1 <= bit_depth <= 16:
        raise UsageError(f"bit_depth must be an integer in 1..16, got {bit_depth!r}")
    return 1.0 / (2**bit_depth - 1)


def _as_chw(image: torch.Tensor) -> torch.Tensor:
    """One image as (C, H, W): accepts (1, C, H, W), (C, H, W) or (H, W)."""
    if image.dim() == 4 and image.shape[0] == 1:
        return image[0]
    if image.dim() == 3:
        return image
    if image.dim() == 2:
        return image[None]
    raise UsageError(f"noise estimation takes one image (1, C, H, W), got shape {tuple(image.shape)}")


def _as_hw_mask(known: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The known-pixel mask as a bool (H, W): accepts (1, 1, H, W), (1, H, W) or (H, W)."""
    mask = known
    while mask.dim() > 2 and mask.shape[0] == 1:
        mask = mask[0]
    if tuple(mask.shape) != (height, width):
        raise UsageError(f"known mask of shape {tuple(known.shape)} does not fit a {width}x{height} image")
    return mask.to(torch.bool)


def _blocks(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four corners (top-left, top-right, bottom-left, bottom-right) of every non-overlapping 2x2 block of a
    (..., H, W) tensor; an odd last row or column has no block and is dropped."""
    h, w = t.shape[-2] // 2 * 2, t.shape[-1] // 2 * 2
    t = t[..., :h, :w]
    return t[..., 0::2, 0::2], t[..., 0::2, 1::2], t[..., 1::2, 0::2], t[..., 1::2, 1::2]


def haar_diagonal(image: torch.Tensor) -> torch.Tensor:
    """The finest-scale diagonal (HH) coefficients of the orthonormal Haar transform, (C, H // 2, W // 2)."""
    a, b, c, d = _blocks(image)
    return (a - b - c + d) / 2


def usable_blocks(chw: torch.Tensor, known: torch.Tensor | None, step: float) -> torch.Tensor:
    """A bool (H // 2, W // 2): blocks whose four pixels are known (if ``known`` is given), finite and off the
    range ends in every channel. One unknown, NaN or clipped pixel spoils its block's coefficient: a clipped
    pixel (black or white within half a ``step``, in tensor units) has lost its noise, and blown-out skies or black
    backgrounds would otherwise pull the median towards 0."""
    usable = (torch.isfinite(chw) & (chw.abs() < 1 - step / 2)).all(dim=0)
    if known is not None:
        usable = usable & _as_hw_mask(known, chw.shape[-2], chw.shape[-1]).to(usable.device)
    a, b, c, d = _blocks(usable)
    return a & b & c & d


def grouped_median(values: torch.Tensor, spacing: float) -> float:
    """The median of non-negative ``values`` that lie on (or near) a lattice of ``spacing``, interpolated inside
    its lattice cell.

    A file's pixels are integers, so HH coefficients are multiples of half a step and a plain median of |d| can only
    be 0, 0.5, 1, ... steps: at 8 bits that moves a sigma of 0.01 by up to 15 %. Taking each lattice value as a
    cell of width ``spacing`` around it (the cell of 0 is [0, spacing / 2], |d| being folded) with its values spread
    evenly, the median is where the piecewise-linear distribution function crosses one half (the grouped-data
    median). Off-lattice values are binned the same way, which moves their median by far less than ``spacing``."""
    bins = torch.bincount(torch.round(values / spacing).long().flatten())
    cumulative = bins.cumsum(0).double()  # float: half of an odd count is x.5
    half = float(cumulative[-1]) / 2
    # the first cell whose cumulative count reaches half; it is never empty
    cell = int(torch.searchsorted(cumulative, torch.tensor([half], dtype=cumulative.dtype))[0])
    below = float(cumulative[cell] - bins[cell])
    low, width = (0.0, 0.5) if cell == 0 else (cell - 0.5, 1.0)
    return spacing * (low + width * (half - below) / float(bins[cell]))


def estimate_noise(image: torch.Tensor, *, known: torch.Tensor | None = None, bit_depth: int = 8) -> NoiseEstimate:
    """The std of additive white Gaussian noise in ``image`` on the [0, 1] intensity scale, with how it was found.

    ``image``: one image in tensor units ([-1, 1]), (1, C, H, W), (C, H, W) or (H, W). ``known``: bool (1, 1, H, W)
    or (H, W), True where pixels are KNOWN (the opposite of a mask file's white = missing); None = all.
    ``bit_depth``: the file's bits per sample (8 or 16), which sets the floor."""
    floor = quantisation_step(bit_depth)
    chw = _as_chw(image).detach().to(torch.float32)  # float32 resolves a 16-bit step (1.5e-5) to 1e-7
    usable = usable_blocks(chw, known, 2 * floor)  # a step of the file is 2 * floor in tensor units
    coefficients = haar_diagonal(chw)[:, usable]  # (C, blocks): every channel of every usable block
    count = int(coefficients.numel())
    raw = None
    if count:
        # coefficients are multiples of floor (half a step); tensor units span 2, the [0, 1] scale 1
        raw = grouped_median(coefficients.abs(), floor) / MAD_TO_SIGMA / 2
    sigma = max(raw, floor) if raw is not None and count >= MIN_COEFFICIENTS else floor
    return NoiseEstimate(sigma=sigma, floor=floor, raw=raw, coefficients=count, bit_depth=bit_depth)


def estimate_noise_sigma(image: torch.Tensor, *, known: torch.Tensor | None = None, bit_depth: int = 8) -> float:
    """``estimate_noise(...).sigma``: the noise std on [0, 1], floored at the file's quantisation step."""
    return estimate_noise(image, known=known, bit_depth=bit_depth).sigma
