"""Measurement operators ``y = A(x)`` and noise models ``y ~ p(y | A(x))``.

Conventions (see DESIGN.md):
- Images are ``(N, C, H, W)`` float32 tensors in [-1, 1] ("tensor units"); users talk in [0, 1] intensity.
- Every operator is a ``torch.nn.Module``; masks, kernels and index tables are registered buffers, so
  ``op.to(device, dtype)`` moves them. Operators are built for one image shape ``(C, H, W)``.
- Linear operators have an exact ``adjoint`` (tested: ``<A x, y> = <x, A^T y>``) and a ``pinv`` (the
  Moore-Penrose pseudo-inverse): closed form for identity, inpainting, box super-resolution, colorization and
  circular blur; otherwise a batched conjugate-gradient solve of the normal equations (CGLS).
- Random things (motion kernels, random masks, noise) come only from a passed ``torch.Generator``; a motion
  kernel is drawn once, at construction, and never redrawn per call.

Boundary handling (what happens at the image border):
- blur (gaussian, motion, file kernel): ``boundary="reflect"`` (default, like the papers' code) extends the image
  by mirror reflection (edge pixel not repeated) before a linear convolution, so ``y`` has the size of ``x``;
  ``"replicate"`` repeats the edge pixel; ``"circular"`` wraps around (periodic) and has a closed-form pinv.
  Kernels larger than the image are fine (the extension keeps reflecting / wrapping).
- super-resolution: output size is ``ceil(H / f) x ceil(W / f)``. The bicubic kernel reads past the border
  through mirror reflection; sizes not divisible by ``f`` are extended at the bottom / right by the same rule.
  Box averages each ``f x f`` block; a partial block at the bottom / right averages the pixels that exist
  (``avg_pool2d(..., ceil_mode=True)``). Nothing is cropped and the adjoint stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import SizeMismatchError, UsageError

__all__ = [
    "BLUR_BOUNDARIES",
    "NOISE_NAMES",
    "OPERATOR_NAMES",
    "BlurOperator",
    "Colorize",
    "GaussianNoise",
    "HighDynamicRange",
    "Identity",
    "Inpaint",
    "LinearOperator",
    "NoNoise",
    "NoiseModel",
    "Operator",
    "PhaseRetrieval",
    "PoissonNoise",
    "Problem",
    "SuperResolution",
    "box_mask",
    "build_noise",
    "build_operator",
    "gaussian_kernel",
    "image_shape_for_measurement",
    "motion_blur_kernel",
    "paper_sigma_to_unit",
    "random_mask",
    "simulate",
]

#: Every name ``build_operator`` accepts; the tests are parametrised over this tuple.
OPERATOR_NAMES: tuple[str, ...] = (
    "identity",
    "inpaint",
    "sr",
    "gaussian_blur",
    "motion_blur",
    "kernel_blur",
    "colorize",
    "phase_retrieval",
    "hdr",
)
BLUR_BOUNDARIES: tuple[str, ...] = ("reflect", "replicate", "circular")
SR_KERNELS: tuple[str, ...] = ("bicubic", "box")
NOISE_NAMES: tuple[str, ...] = ("none", "gaussian", "poisson")
#: ITU-R BT.601 luma weights (R, G, B); they sum to 1, so the map commutes with [0,1] <-> [-1,1].
BT601_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
#: Seed used for a motion kernel or random mask when the caller passes no generator (reproducible by default).
DEFAULT_SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# Base classes
# ----------------------------------------------------------------------------------------------------------------
class Operator(torch.nn.Module):
    """A measurement operator built for images of shape ``image_shape = (C, H, W)``.

    ``forward(x)`` maps ``(N, C, H, W)`` to ``(N, *output_shape)``. Nonlinear operators are differentiable.
    """

    linear: bool = False
    name: str = "operator"

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape: tuple[int, int, int] = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        self.output_shape: tuple[int, int, int] = self.image_shape

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise SizeMismatchError(
                f"operator '{self.name}' was built for images of shape (N, {', '.join(map(str, self.image_shape))})"
                f" but got {tuple(x.shape)}"
            )

    def _check_output(self, y: torch.Tensor) -> None:
        if y.dim() != 4 or tuple(y.shape[1:]) != self.output_shape:
            raise SizeMismatchError(
                f"operator '{self.name}' expects measurements of shape (N, {', '.join(map(str, self.output_shape))})"
                f" but got {tuple(y.shape)}"
            )

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, output_shape={self.output_shape}"


class LinearOperator(Operator):
    """A linear operator with an exact ``adjoint`` and a pseudo-inverse ``pinv``.

    The default ``pinv`` runs CGLS (conjugate gradients on ``A^T A x = A^T y``) from ``x = 0``, which converges
    to the minimum-norm least-squares solution, i.e. ``A^+ y``. Subclasses with a closed form override it.
    """

    linear = True
    #: CGLS budget of the fallback pseudo-inverse (fixed, so results are reproducible and time is bounded).
    cg_max_iter: int = 100
    cg_tol: float = 1e-6

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.cg_pinv(y)

    def cg_pinv(self, y: torch.Tensor, *, max_iter: int | None = None, tol: float | None = None) -> torch.Tensor:
        """CGLS for ``min ||A x - y||`` per batch item; stops when every item's normal residual ``||A^T r||``
        has fallen below ``tol`` times its start value, or after ``max_iter`` iterations."""
        max_iter = self.cg_max_iter if max_iter is None else int(max_iter)
        tol = self.cg_tol if tol is None else float(tol)

        def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a * b).flatten(1).sum(1).view(-1, 1, 1, 1)

        residual = y.clone()
        s = self.adjoint(residual)
        x = torch.zeros_like(s)
        direction = s.clone()
        gamma = dot(s, s)
        gamma_start = gamma.clone()
        for _ in range(max_iter):
            q = self.forward(direction)
            qq = dot(q, q)
            # An item that has converged (or has y = 0) has gamma = qq = 0: step size 0, not NaN.
            alpha = torch.where(qq > 0, gamma / qq.clamp_min(torch.finfo(qq.dtype).tiny), torch.zeros_like(qq))
            x = x + alpha * direction
            residual = residual - alpha * q
            s = self.adjoint(residual)
            gamma_new = dot(s, s)
            if bool((gamma_new <= (tol**2) * gamma_start).all()):
                break
            beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(torch.finfo(gamma.dtype).tiny), gamma * 0)
            direction = s + beta * direction
            gamma = gamma_new
        return x


# ----------------------------------------------------------------------------------------------------------------
# Border extension along one axis, as small dense matrices (exact adjoint, deterministic on every device)
# ----------------------------------------------------------------------------------------------------------------
def _source_index(i: int, n: int, mode: str) -> int:
    """Which pixel of a length-``n`` row sits at (possibly out-of-range) position ``i`` after extension."""
    if mode == "zero":
        return -1
    if mode == "replicate" or n == 1:
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    # reflect without repeating the edge (torch's "reflect"), continued periodically for any distance
    period = 2 * (n - 1)
    i = i % period
    return i if i < n else period - i


def _extension_matrices(n: int, before: int, after: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices ``E_b (before, n)`` and ``E_a (after, n)`` whose rows pick the source pixel of each padded one
    (an all-zero row for ``mode="zero"``)."""
    e_before = torch.zeros(before, n)
    e_after = torch.zeros(after, n)
    for matrix, positions in ((e_before, range(-before, 0)), (e_after, range(n, n + after))):
        for row, i in enumerate(positions):
            source = _source_index(i, n, mode)
            if source >= 0:
                matrix[row, source] = 1.0
    return e_before, e_after


def _extend(x: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor, axis: int) -> torch.Tensor:
    """Extend ``x`` along ``axis`` (-2 = rows, -1 = columns) by the extension matrices."""
    if axis == -2:
        return torch.cat([e_before @ x, x, e_after @ x], dim=-2)
    return torch.cat([x @ e_before.T, x, x @ e_after.T], dim=-1)


def _extend_adjoint(g: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor, axis: int) -> torch.Tensor:
    """Adjoint of ``_extend``: fold the padded border back onto the pixels it was copied from."""
    nb, na = e_before.shape[0], e_after.shape[0]
    n = g.shape[axis] - nb - na
    if axis == -2:
        gb, gi, ga = g[..., :nb, :], g[..., nb : nb + n, :], g[..., nb + n :, :]
        return gi + e_before.T @ gb + e_after.T @ ga
    gb, gi, ga = g[..., :nb], g[..., nb : nb + n], g[..., nb + n :]
    return gi + gb @ e_before + ga @ e_after


# ----------------------------------------------------------------------------------------------------------------
# Operators
# ----------------------------------------------------------------------------------------------------------------
class Identity(LinearOperator):
    """``A x = x`` (denoising)."""

    name = "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return x.clone()

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return y.clone()

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)


class Inpaint(LinearOperator):
    """``A x = x * known``: missing pixels read as 0. The output keeps the input's shape.

    ``mask`` is a bool tensor ``(H, W)`` or ``(1 | N, 1, H, W)`` with True = MISSING (the file convention: white =
    missing). A batched mask applies mask ``i`` to image ``i``. ``A`` is an orthogonal projection, so
    ``adjoint = pinv = A``.
    """

    name = "inpaint"

    def __init__(self, image_shape: tuple[int, int, int], mask: torch.Tensor) -> None:
        super().__init__(image_shape)
        mask = torch.as_tensor(mask)
        _, height, width = self.image_shape
        if mask.dim() == 2:
            mask = mask[None, None]
        elif mask.dim() == 3:
            mask = mask[:, None]
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise UsageError(f"inpaint mask must have shape (H, W) or (N, 1, H, W), got {tuple(mask.shape)}")
        if tuple(mask.shape[-2:]) != (height, width):
            raise SizeMismatchError(
                f"mask size {mask.shape[-1]}x{mask.shape[-2]} differs from image size {width}x{height} (W x H)"
            )
        missing = mask.bool() if mask.dtype == torch.bool else mask > 0.5
        self.register_buffer("known", (~missing).to(torch.float32))

    @property
    def missing(self) -> torch.Tensor:
        """Bool mask, True = missing."""
        return self.known < 0.5

    def _check_batch(self, t: torch.Tensor) -> None:
        if self.known.shape[0] not in (1, t.shape[0]):
            raise SizeMismatchError(f"inpaint mask batch {self.known.shape[0]} does not match image batch {t.shape[0]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        self._check_batch(x)
        return x * self.known

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        self._check_batch(y)
        return y * self.known

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)


def box_mask(image_size: tuple[int, int], top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A ``(1, 1, H, W)`` bool mask, True (missing) inside the box; ``image_size = (H, W)``."""
    img_h, img_w = (int(v) for v in image_size)
    top, left, height, width = (int(v) for v in (top, left, height, width))
    if height <= 0 or width <= 0 or top < 0 or left < 0 or top + height > img_h or left + width > img_w:
        raise UsageError(
            f"box (top={top}, left={left}, height={height}, width={width}) does not fit inside the "
            f"{img_w}x{img_h} image"
        )
    mask = torch.zeros(1, 1, img_h, img_w, dtype=torch.bool)
    mask[..., top : top + height, left : left + width] = True
    return mask


def random_mask(
    image_size: tuple[int, int], fraction: float, generator: torch.Generator | None = None, *, batch: int = 1
) -> torch.Tensor:
    """A ``(batch, 1, H, W)`` bool mask with exactly ``round(fraction * H * W)`` random missing pixels per item."""
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"missing fraction must be in [0, 1), got {fraction}")
    generator = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
    img_h, img_w = (int(v) for v in image_size)
    count = round(fraction * img_h * img_w)
    scores = torch.rand(batch, img_h * img_w, generator=generator, device=generator.device).cpu()
    order = scores.argsort(dim=1)
    mask = torch.zeros(batch, img_h * img_w, dtype=torch.bool)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(batch, 1, img_h, img_w)


def _resample_axis(n: int, taps: int, stride: int, before: int, mode: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Geometry of one axis of ``out[i] = sum_t w[t] * ext(x)[stride * i + t]``: the output length
    ``ceil(n / stride)`` and the extension matrices that make the last window fit."""
    out = -(-n // stride)
    after = max(0, stride * (out - 1) + taps - before - n)
    e_before, e_after = _extension_matrices(n, before, after, mode)
    return out, e_before, e_after


def _partial_block_scale(n: int, factor: int) -> torch.Tensor:
    """Per-output factor turning a sum-over-``factor``/``factor`` into a mean over the pixels that exist."""
    out = -(-n // factor)
    counts = torch.full((out,), float(factor))
    counts[-1] = n - factor * (out - 1)
    return factor / counts


def _cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel; a = -0.5 is the one PIL and torch's antialiased resize use."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def _bicubic_taps(factor: int) -> tuple[torch.Tensor, int]:
    """Taps of antialiased bicubic downsampling by ``factor`` and how far left of the block they start.

    Output pixel ``i`` is centred at input coordinate ``(i + 0.5) * f - 0.5``; the kernel is the cubic stretched
    by ``f`` (support ``2 f`` each side), normalised to sum 1.
    """
    centre = (factor - 1) / 2
    first = math.floor(centre - 2 * factor) + 1
    last = math.ceil(centre + 2 * factor) - 1
    positions = torch.arange(first, last + 1, dtype=torch.float32)
    weights = _cubic((positions - centre) / factor)
    return weights / weights.sum(), -first


class SuperResolution(LinearOperator):
    """Downsampling by an integer ``factor``: antialiased ``"bicubic"`` (the resize kernel of PIL / torch
    ``antialias=True``, a = -0.5) or ``"box"`` (average pooling over ``f x f`` blocks).

    Output ``(N, C, ceil(H / f), ceil(W / f))``. Bicubic reads past the border by mirror reflection (also to fill
    the last window when the size is not divisible by ``f``). Box: a partial last block averages the pixels that
    exist. Box has a closed-form pinv (``A A^T`` is diagonal); bicubic uses the CGLS fallback.
    """

    name = "sr"

    def __init__(self, image_shape: tuple[int, int, int], factor: int = 4, kernel: str = "bicubic") -> None:
        super().__init__(image_shape)
        self.factor, self.kernel = int(factor), kernel
        channels, height, width = self.image_shape
        if kernel == "bicubic":
            weights, before = _bicubic_taps(self.factor)
            mode = "reflect"
            row_scale, col_scale = torch.ones(-(-height // self.factor)), torch.ones(-(-width // self.factor))
        else:
            # Zero-extend, then rescale the partial last block so it is a mean over the pixels it has.
            weights, before, mode = torch.full((self.factor,), 1.0 / self.factor), 0, "zero"
            row_scale, col_scale = _partial_block_scale(height, self.factor), _partial_block_scale(width, self.factor)
        out_h, rows_before, rows_after = _resample_axis(height, weights.numel(), self.factor, before, mode)
        out_w, cols_before, cols_after = _resample_axis(width, weights.numel(), self.factor, before, mode)
        self.register_buffer("weights", weights)
        self.register_buffer("rows_before", rows_before)
        self.register_buffer("rows_after", rows_after)
        self.register_buffer("cols_before", cols_before)
        self.register_buffer("cols_after", cols_after)
        self.register_buffer("scale", row_scale[:, None] * col_scale[None, :])
        self.output_shape = (channels, out_h, out_w)
        if kernel == "box":
            # Rows of A touch disjoint pixels, so A A^T is diagonal and A A^T 1 is that diagonal.
            ones = torch.ones(1, 1, *self.output_shape[1:])
            self.register_buffer("gram_diagonal", self._forward(self._adjoint(ones)))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        z = x.reshape(n * c, 1, h, w)
        z = _extend(z, self.rows_before, self.rows_after, -2)
        z = F.conv2d(z, self.weights.view(1, 1, -1, 1), stride=(self.factor, 1))
        z = _extend(z, self.cols_before, self.cols_after, -1)
        z = F.conv2d(z, self.weights.view(1, 1, 1, -1), stride=(1, self.factor)) * self.scale
        return z.reshape(n, c, z.shape[-2], z.shape[-1])

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        n, c, h, w = y.shape
        z = y.reshape(n * c, 1, h, w) * self.scale
        z = F.conv_transpose2d(z, self.weights.view(1, 1, 1, -1), stride=(1, self.factor))
        z = _extend_adjoint(z, self.cols_before, self.cols_after, -1)
        z = F.conv_transpose2d(z, self.weights.view(1, 1, -1, 1), stride=(self.factor, 1))
        z = _extend_adjoint(z, self.rows_before, self.rows_after, -2)
        return z.reshape(n, c, z.shape[-2], z.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return self._adjoint(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        if self.kernel == "box":
            self._check_output(y)
            return self._adjoint(y / self.gram_diagonal)
        return self.cg_pinv(y)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, kernel={self.kernel!r}, {super().extra_repr()}"


def _fast_length(n: int) -> int:
    """The smallest m >= n whose prime factors are all 2, 3, 5 or 7 (pocketfft is several times slower on sizes
    with a large prime factor: 316 = 4 x 79 takes 3.9x as long as 320)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5, 7):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _fast_fft_size(rows: int, cols: int) -> tuple[int, int]:
    """An FFT grid at least rows x cols that pocketfft transforms fast. Zero-padding a linear convolution further
    changes nothing in the kept output: wrap-around only reaches indices the caller crops away."""
    return _fast_length(rows), _fast_length(cols)


class BlurOperator(LinearOperator):
    """Convolution of every channel with one normalised kernel (true convolution, kernel centre at
    ``(kh // 2, kw // 2)``); ``y`` has the shape of ``x``. Computed with FFTs, so big kernels stay cheap.

    ``boundary``: ``"reflect"`` (mirror, edge not repeated; the papers' choice) or ``"replicate"`` extend the image
    by ``kernel_size - 1`` pixels, convolve linearly and crop (pinv by CGLS); ``"circular"`` convolves periodically
    (pinv in closed form: ``conj(K) / |K|^2`` where ``|K| > rcond * max |K|``, 0 elsewhere).
    """

    name = "blur"
    #: relative threshold on the kernel spectrum below which the circular pinv treats a frequency as lost
    rcond: float = 1e-3

    def __init__(self, image_shape: tuple[int, int, int], kernel: torch.Tensor, boundary: str = "reflect") -> None:
        super().__init__(image_shape)
        if boundary not in BLUR_BOUNDARIES:
            raise UsageError(f"unknown blur boundary '{boundary}' (use one of: {', '.join(BLUR_BOUNDARIES)})")
        kernel = _normalise_kernel(torch.as_tensor(kernel), "blur kernel")
        self.boundary = boundary
        _, height, width = self.image_shape
        kh, kw = kernel.shape
        self.register_buffer("kernel", kernel)
        if boundary == "circular":
            # Wrap the kernel onto the image torus with its centre at (0, 0); overlapping taps add up.
            rows = (torch.arange(kh) - kh // 2) % height
            cols = (torch.arange(kw) - kw // 2) % width
            wrapped = torch.zeros(height, width)
            wrapped.index_put_((rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel, accumulate=True)
            self.register_buffer("kernel_wrapped", wrapped)
        else:
            # Linear convolution needs kh - 1 - kh//2 extra rows above and kh//2 below (same for columns).
            rb, ra = _extension_matrices(height, kh - 1 - kh // 2, kh // 2, boundary)
            cb, ca = _extension_matrices(width, kw - 1 - kw // 2, kw // 2, boundary)
            self.register_buffer("rows_before", rb)
            self.register_buffer("rows_after", ra)
            self.register_buffer("cols_before", cb)
            self.register_buffer("cols_after", ca)

    def _spectrum(self, size: tuple[int, int]) -> torch.Tensor:
        # Samplers apply the operator thousands of times at one size: keep the kernel's spectrum (a few hundred
        # KB) instead of transforming the kernel again on every call. Keyed by device/dtype so .to() stays valid.
        source = self.kernel_wrapped if self.boundary == "circular" else self.kernel
        key = (size, source.device, source.dtype)
        cache = self.__dict__.setdefault("_spectra", {})
        if key not in cache:
            cache.clear()
            cache[key] = torch.fft.rfft2(source, s=size)
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        _, height, width = self.image_shape
        if self.boundary == "circular":
            spectrum = self._spectrum((height, width))
            return torch.fft.irfft2(torch.fft.rfft2(x) * spectrum, s=(height, width))
        kh, kw = self.kernel.shape
        z = _extend(_extend(x, self.rows_before, self.rows_after, -2), self.cols_before, self.cols_after, -1)
        size = _fast_fft_size(z.shape[-2], z.shape[-1])
        z = torch.fft.irfft2(torch.fft.rfft2(z, s=size) * self._spectrum(size), s=size)
        # With the kernel at index 0 of the padded grid, output n of the linear convolution sits at n + k - 1.
        return z[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        _, height, width = self.image_shape
        if self.boundary == "circular":
            spectrum = self._spectrum((height, width))
            return torch.fft.irfft2(torch.fft.rfft2(y) * spectrum.conj(), s=(height, width))
        kh, kw = self.kernel.shape
        z = F.pad(y, (kw - 1, 0, kh - 1, 0))
        rows, cols = z.shape[-2], z.shape[-1]
        size = _fast_fft_size(rows, cols)
        z = torch.fft.irfft2(torch.fft.rfft2(z, s=size) * self._spectrum(size).conj(), s=size)[..., :rows, :cols]
        z = _extend_adjoint(z, self.cols_before, self.cols_after, -1)
        return _extend_adjoint(z, self.rows_before, self.rows_after, -2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        if self.boundary != "circular":
            return self.cg_pinv(y)
        self._check_output(y)
        _, height, width = self.image_shape
        spectrum = self._spectrum((height, width))
        power = spectrum.abs().square()
        keep = spectrum.abs() > self.rcond * spectrum.abs().max()
        inverse = torch.where(keep, spectrum.conj() / power.clamp_min(torch.finfo(power.dtype).tiny), 0)
        return torch.fft.irfft2(torch.fft.rfft2(y) * inverse, s=(height, width))

    def extra_repr(self) -> str:
        return f"kernel={tuple(self.kernel.shape)}, boundary={self.boundary!r}, {super().extra_repr()}"


class Colorize(LinearOperator):
    """RGB -> luminance ``y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), output ``(N, 1, H, W)``.

    ``A A^T = |w|^2``, so ``pinv(y) = w y / |w|^2`` (a tinted grey: the minimum-norm RGB with that luminance).
    """

    name = "colorize"

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__(image_shape)
        if self.image_shape[0] != 3:
            raise UsageError(f"colorize needs an RGB image (3 channels), got {self.image_shape[0]} channel(s)")
        self.register_buffer("weights", torch.tensor(BT601_WEIGHTS).view(1, 3, 1, 1))
        self.output_shape = (1, self.image_shape[1], self.image_shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return (x * self.weights).sum(dim=1, keepdim=True)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return y * self.weights

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y) / self.weights.square().sum()


class PhaseRetrieval(Operator):
    """Fourier magnitude ``y = |FFT(pad(x01))|`` with ``x01 = (x + 1) / 2`` (a nonnegative object, as in the
    papers' code), the image centred in a zero canvas of ``ceil(oversampling * H) x ceil(oversampling * W)``,
    orthonormal FFT (so ``|y| = |x01|``), spectrum shifted so DC sits in the centre.

    Nonlinear; differentiable everywhere: torch's complex ``abs`` has gradient 0 (not NaN) at 0.
    Note: the DPS / DAPS code pads by ``oversampling / 8 * 256`` pixels per side (1.5x the side at 2.0); here
    ``oversampling`` is the ratio of canvas side to image side.
    """

    name = "phase_retrieval"

    def __init__(self, image_shape: tuple[int, int, int], oversampling: float = 2.0) -> None:
        super().__init__(image_shape)
        self.oversampling = float(oversampling)
        channels, height, width = self.image_shape
        canvas_h, canvas_w = math.ceil(self.oversampling * height), math.ceil(self.oversampling * width)
        top, left = (canvas_h - height) // 2, (canvas_w - width) // 2
        self._padding = (left, canvas_w - width - left, top, canvas_h - height - top)
        self.output_shape = (channels, canvas_h, canvas_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        canvas = F.pad((x + 1) / 2, self._padding)
        spectrum = torch.fft.fftshift(torch.fft.fft2(canvas, norm="ortho"), dim=(-2, -1))
        return spectrum.abs()

    def extra_repr(self) -> str:
        return f"oversampling={self.oversampling}, {super().extra_repr()}"


class HighDynamicRange(Operator):
    """``y = clip(scale * x, -1, 1)``; nonlinear, gradient ``scale`` inside the clip range and 0 outside."""

    name = "hdr"

    def __init__(self, image_shape: tuple[int, int, int], scale: float = 2.0) -> None:
        super().__init__(image_shape)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return (self.scale * x).clamp(-1.0, 1.0)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, {super().extra_repr()}"


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------
def _normalise_kernel(kernel: torch.Tensor, what: str) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------------------------
_PARAMS: dict[str, tuple[str, ...]] = {
    "identity": (),
    "inpaint": ("mask", "box", "fraction"),
    "sr": ("factor", "kernel"),
    "gaussian_blur": ("kernel_size", "sigma", "boundary"),
    "motion_blur": ("kernel_size", "intensity", "boundary"),
    "kernel_blur": ("kernel", "kernel_path", "boundary"),
    "colorize": (),
    "phase_retrieval": ("oversampling",),
    "hdr": ("scale",),
}


def _int_param(op: str, key: str, value: Any, low: int, high: int | None = None, odd: bool = False) -> int:
    # Numbers and numeric strings (as flags arrive) are accepted; 4.0 is 4, 2.5 and True are not integers.
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and number == int(number)
    if ok:
        value = int(number)
        ok = value >= low and (high is None or value <= high) and (not odd or value % 2 == 1)
    if not ok:
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise UsageError(f"{op}: {key} must be an {'odd ' if odd else ''}integer in {span}, got {value!r}")
    return int(value)


def _float_param(op: str, key: str, value: Any, low: float, high: float | None = None, low_open: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    below = number <= low if low_open else number < low
    if isinstance(value, bool) or not math.isfinite(number) or below or (high is not None and number > high):
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise UsageError(f"{op}: {key} must be a number {bound}, got {value!r}")
    return number


def _boundary(op: str, params: dict[str, Any]) -> str:
    boundary = params.get("boundary", "reflect")
    if boundary not in BLUR_BOUNDARIES:
        raise UsageError(f"{op}: boundary must be one of {', '.join(BLUR_BOUNDARIES)}, got {boundary!r}")
    return boundary


def build_operator(
    name: str, image_shape: tuple[int, int, int], *, generator: torch.Generator | None = None, **params: Any
) -> Operator:
    """Build operator ``name`` for images of shape ``image_shape = (C, H, W)``.

    Parameters per operator (defaults are the papers' settings where they have one):

    - ``identity``: none (denoising).
    - ``inpaint``: one of ``mask`` (bool tensor/array ``(H, W)`` or ``(1|N, 1, H, W)``, True = missing),
      ``box = (top, left, height, width)``, ``fraction`` (share of pixels missing at random, drawn from
      ``generator``); none given: a centred box of half the height and width (128 x 128 on 256 x 256).
    - ``sr``: ``factor`` integer 2..16 (papers: 2, 3, 4, 8; default 4), ``kernel`` ``"bicubic"`` (default) or
      ``"box"``. Output ``ceil(H / factor) x ceil(W / factor)``.
    - ``gaussian_blur``: ``kernel_size`` odd (default 61), ``sigma`` in pixels (default 3.0), ``boundary``.
    - ``motion_blur``: ``kernel_size`` odd (default 61), ``intensity`` in [0, 1] (default 0.5), ``boundary``;
      the kernel is drawn once from ``generator`` (None: seed 0).
    - ``kernel_blur``: ``kernel`` (2-D tensor/array) or ``kernel_path`` (``.npy`` or an image), normalised to sum 1;
      ``boundary``.
    - ``colorize``: none; needs 3 channels; output has 1 channel.
    - ``phase_retrieval``: ``oversampling`` >= 1 (default 2.0).
    - ``hdr``: ``scale`` > 0 (default 2.0).

    Blur ``boundary`` is ``"reflect"`` (default), ``"replicate"`` or ``"circular"`` (see the module docstring).
    Bad names or parameters raise ``UsageError`` with a one-line message.
    """
    if name not in OPERATOR_NAMES:
        raise UsageError(f"unknown operator '{name}' (choose one of: {', '.join(OPERATOR_NAMES)})")
    try:
        channels, height, width = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise UsageError(f"image_shape must be (C, H, W), got {image_shape!r}") from None
    if min(channels, height, width) < 1:
        raise UsageError(f"image_shape must be positive (C, H, W), got {tuple(image_shape)}")
    shape = (channels, height, width)
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        accepted = ", ".join(_PARAMS[name]) or "none"
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)} for operator '{name}' (accepted: {accepted})")

    if name == "identity":
        return Identity(shape)
    if name == "inpaint":
        given = [key for key in ("mask", "box", "fraction") if params.get(key) is not None]
        if len(given) > 1:
            raise UsageError(f"inpaint: give only one of mask, box, fraction (got {', '.join(given)})")
        if "mask" in given:
            return Inpaint(shape, torch.as_tensor(params["mask"]))
        if "box" in given:
            box = params["box"]
            if isinstance(box, str):  # "top,left,height,width" as typed on a command line
                box = box.replace(" ", "").split(",")
            try:
                top, left, box_h, box_w = (_int_param(name, "box", v, 0) for v in box)
            except (TypeError, ValueError, UsageError):
                raise UsageError(
                    f"inpaint: box must be four integers (top, left, height, width), got {params['box']!r}"
                ) from None
            return Inpaint(shape, box_mask((height, width), top, left, box_h, box_w))
        if "fraction" in given:
            fraction = _float_param(name, "fraction", params["fraction"], 0.0, 1.0, low_open=False)
            if fraction >= 1.0:
                raise UsageError(f"inpaint: fraction must be below 1 (some pixels must be known), got {fraction}")
            return Inpaint(shape, random_mask((height, width), fraction, generator))
        box_h, box_w = max(1, height // 2), max(1, width // 2)
        return Inpaint(shape, box_mask((height, width), (height - box_h) // 2, (width - box_w) // 2, box_h, box_w))
    if name == "sr":
        factor = _int_param(name, "factor", params.get("factor", 4), 2, 16)
        kernel = params.get("kernel", "bicubic")
        if kernel not in SR_KERNELS:
            raise UsageError(f"sr: kernel must be one of {', '.join(SR_KERNELS)}, got {kernel!r}")
        return SuperResolution(shape, factor, kernel)
    if name == "gaussian_blur":
        size = _int_param(name, "kernel_size", params.get("kernel_size", 61), 1, odd=True)
        sigma = _float_param(name, "sigma", params.get("sigma", 3.0), 0.0)
        operator = BlurOperator(shape, gaussian_kernel(size, sigma), _boundary(name, params))
    elif name == "motion_blur":
        size = _int_param(name, "kernel_size", params.get("kernel_size", 61), 3, odd=True)
        intensity = _float_param(name, "intensity", params.get("intensity", 0.5), 0.0, 1.0, low_open=False)
        operator = BlurOperator(shape, motion_blur_kernel(size, intensity, generator), _boundary(name, params))
    elif name == "kernel_blur":
        has_kernel, has_path = params.get("kernel") is not None, params.get("kernel_path") is not None
        if has_kernel == has_path:
            raise UsageError("kernel_blur: give exactly one of kernel (an array) or kernel_path (a .npy or image file)")
        if has_path:  # file reading (formats, checks, bomb guard) belongs to imageio
            from .imageio import load_kernel

            kernel = load_kernel(params["kernel_path"])
        else:
            kernel = torch.as_tensor(params["kernel"])
        operator = BlurOperator(shape, kernel, _boundary(name, params))
    elif name == "colorize":
        return Colorize(shape)
    elif name == "phase_retrieval":
        oversampling = _float_param(name, "oversampling", params.get("oversampling", 2.0), 1.0, low_open=False)
        return PhaseRetrieval(shape, oversampling)
    else:  # hdr
        return HighDynamicRange(shape, _float_param(name, "scale", params.get("scale", 2.0), 0.0))
    operator.name = name
    return operator


def image_shape_for_measurement(
    name: str, measurement_shape: tuple[int, int, int], **params: Any
) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` to restore when the user's file is the measurement ``y`` of ``name``.

    ``sr`` multiplies the size by ``factor`` (a ``ceil``-sized ``y`` came from exactly ``f`` times its size or a
    little less; we restore the full multiple); ``colorize`` gives 3 channels; ``phase_retrieval`` divides by
    ``oversampling``; every other operator keeps the shape. ``params`` are those of ``build_operator``.
    """
    if name not in OPERATOR_NAMES:
        raise UsageError(f"unknown operator '{name}' (choose one of: {', '.join(OPERATOR_NAMES)})")
    channels, height, width = (int(v) for v in measurement_shape)
    if name == "sr":
        factor = _int_param(name, "factor", params.get("factor", 4), 2, 16)
        return (channels, height * factor, width * factor)
    if name == "colorize":
        if channels != 1:
            raise UsageError(f"colorize needs a 1-channel (grayscale) measurement, got {channels} channels")
        return (3, height, width)
    if name == "phase_retrieval":
        oversampling = _float_param(name, "oversampling", params.get("oversampling", 2.0), 1.0, low_open=False)
        image_h, image_w = math.floor(height / oversampling), math.floor(width / oversampling)
        if math.ceil(oversampling * image_h) != height or math.ceil(oversampling * image_w) != width:
            raise UsageError(
                f"phase_retrieval: a {width}x{height} measurement is not an oversampling-{oversampling:g} canvas"
            )
        return (channels, image_h, image_w)
    return (channels, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Noise models
# ----------------------------------------------------------------------------------------------------------------
def paper_sigma_to_unit(sigma_on_minus1_1: float) -> float:
    """Convert a noise sigma quoted on the papers' [-1, 1] scale to our [0, 1] user scale (0.05 -> 0.025)."""
    return float(sigma_on_minus1_1) / 2


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


class NoiseModel:
    """``y ~ p(y | A x)``. ``kind`` names it; ``std`` is a typical noise std in tensor units (for solvers that need
    one scale); ``sample`` draws only from the passed generator; ``log_likelihood`` returns shape ``(N,)``."""

    kind: str = "none"
    std: float = 0.0

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoNoise(NoiseModel):
    """Noise-free measurements. ``log_likelihood`` is the surrogate ``-||y - A x||^2 / 2`` (unit variance), since
    the exact one is degenerate; solvers for noiseless problems use their own step sizes."""

    kind = "none"
    std = 0.0

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return ax.clone()

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        return -0.5 * _flat_sum((y - ax).square())


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise. ``sigma`` is on the USER [0, 1] intensity scale; ``std = 2 * sigma`` is the
    std in [-1, 1] tensor units (the papers' 0.05 on [-1, 1] is ``GaussianNoise(0.025)``)."""

    kind = "gaussian"

    def __init__(self, sigma: float) -> None:
        sigma = float(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise UsageError(f"gaussian noise sigma must be > 0 on the [0, 1] intensity scale, got {sigma}")
        self.sigma = sigma
        self.std = 2.0 * sigma

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(ax.shape, generator=generator, device=generator.device, dtype=torch.float32)
        return ax + self.std * noise.to(device=ax.device, dtype=ax.dtype)

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """``-||y - A x||^2 / (2 std^2)``, dropping the constant."""
        return -_flat_sum((y - ax).square()) / (2 * self.std**2)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"


class PoissonNoise(NoiseModel):
    """Photon noise on [0, 1] intensity: ``counts ~ Poisson(rate * max(x01, 0))``, ``y01 = counts / rate``,
    returned in tensor units ``2 y01 - 1``. Larger ``rate`` = less noise. ``std`` is the std at mid-grey,
    ``2 * sqrt(0.5 / rate)`` in tensor units."""

    kind = "poisson"
    #: floor on the Poisson mean in ``log_likelihood`` (log 0 would be -inf where the model predicts black)
    min_mean: float = 1e-3

    def __init__(self, rate: float) -> None:
        rate = float(rate)
        if not math.isfinite(rate) or rate <= 0:
            raise UsageError(f"poisson rate must be > 0 (photons per unit intensity), got {rate}")
        self.rate = rate
        self.std = 2.0 * math.sqrt(0.5 / rate)

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = (self.rate * ((ax.detach() + 1) / 2).clamp_min(0)).to(device=generator.device, dtype=torch.float32)
        counts = torch.poisson(mean, generator=generator)
        return (2 * counts / self.rate - 1).to(device=ax.device, dtype=ax.dtype)

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """Exact Poisson log-pmf of the counts ``k = rate * y01`` given mean ``rate * x01`` (floored)."""
        counts = (self.rate * (y + 1) / 2).clamp_min(0)
        mean = (self.rate * (ax + 1) / 2).clamp_min(self.min_mean)
        return _flat_sum(counts * mean.log() - mean - torch.lgamma(counts + 1))

    def __repr__(self) -> str:
        return f"PoissonNoise(rate={self.rate})"


def build_noise(kind: str, *, sigma: float | None = None, rate: float | None = None) -> NoiseModel:
    """``"none"``, ``"gaussian"`` (``sigma`` on [0, 1]) or ``"poisson"`` (``rate``)."""
    if kind == "none":
        return NoNoise()
    if kind == "gaussian":
        if sigma is None:
            raise UsageError("gaussian noise needs sigma (on the [0, 1] intensity scale, e.g. 0.025)")
        return GaussianNoise(sigma)
    if kind == "poisson":
        if rate is None:
            raise UsageError("poisson noise needs rate (photons per unit intensity, e.g. 100)")
        return PoissonNoise(rate)
    raise UsageError(f"unknown noise '{kind}' (choose one of: {', '.join(NOISE_NAMES)})")


@dataclass
class Problem:
    """A restoration problem: ``y = noise(operator(x))``; ``y``'s batch size = number of samples to produce."""

    operator: Operator
    noise: NoiseModel
    y: torch.Tensor


def simulate(operator: Operator, noise: NoiseModel, x: torch.Tensor, generator: torch.Generator) -> Problem:
    """Synthesise a measurement from a clean ``x`` (for ``--simulate`` and benchmarks)."""
    with torch.no_grad():
        y = noise.sample(operator(x), generator)
    return Problem(operator=operator, noise=noise, y=y)
