"""Blur: convolution of every channel with one kernel, computed with FFTs so big kernels stay cheap.

Boundary handling (what happens at the image border): ``boundary="reflect"`` (default, like the papers' code)
extends the image by mirror reflection (edge pixel not repeated) before a linear convolution, so ``y`` has the size
of ``x``; ``"replicate"`` repeats the edge pixel; ``"circular"`` wraps around (periodic) and has a closed-form pinv
and norm. Kernels larger than the image are fine (the extension keeps reflecting / wrapping). With reflect /
replicate a separable kernel (the Gaussian) makes the operator a Kronecker product of two 1-D blurs, with exact
solves (``kronecker``); other kernels solve iteratively.

A normalised non-negative kernel keeps constants (so ``||A|| >= 1``), but with ``"reflect"`` or ``"replicate"``
the pixels near the border are read more than once, so ``A^T`` is no average and ``||A||`` exceeds 1: measured for
the papers' 61-tap Gaussian (sigma 3) with reflection, 1.008 on 64 x 64, 1.028 on 16 x 16 (replicate: 1.115);
the smaller the image, the larger the border's share. Only ``"circular"`` has ``||A|| = max |K| = 1`` exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .base import LinearOperator, OperatorKind, per_item
from .extension import extend, extend_adjoint, register_blur_extension
from .kernels import normalise_kernel
from .kronecker import SeparableGram

BLUR_BOUNDARIES: tuple[str, ...] = ("reflect", "replicate", "circular")


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


def _wrap_kernel(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The kernel wrapped onto the image torus with its centre at (0, 0); overlapping taps add up."""
    kh, kw = kernel.shape
    rows = (torch.arange(kh, device=kernel.device) - kh // 2) % height
    cols = (torch.arange(kw, device=kernel.device) - kw // 2) % width
    wrapped = torch.zeros(height, width, dtype=kernel.dtype, device=kernel.device)
    wrapped.index_put_((rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel, accumulate=True)
    return wrapped


def rank_one_factors(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The best rank-1 approximation ``k_rows k_cols^T`` of a kernel (its top singular pair, split evenly and signed
    to sum >= 0) and the ratio ``s_2 / s_1`` of its two largest singular values (0: exactly separable). Float64,
    CPU: set-up work."""
    u, s, vh = torch.linalg.svd(kernel.detach().to("cpu", torch.float64))
    sign = 1.0 if float(u[:, 0].sum()) >= 0 else -1.0
    root = math.sqrt(float(s[0]))
    ratio = float(s[1] / s[0]) if s.numel() > 1 and float(s[0]) > 0 else 0.0
    return sign * root * u[:, 0], sign * root * vh[0], ratio


def convolution_matrix(taps: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor) -> torch.Tensor:
    """One axis of the reflect / replicate blur as a dense (n, n) float64 matrix: ``forward``'s steps on the
    identity (extend by the operator's extension matrices, convolve with ``taps`` (centre ``k // 2``), keep the n
    outputs that line up with the image)."""
    n = e_before.shape[1]
    extended = extend(torch.eye(n, dtype=torch.float64), e_before.to("cpu", torch.float64),
                      e_after.to("cpu", torch.float64), -2)  # (n + k - 1, n): column j is pixel j extended
    # True convolution, valid part: out[i] = sum_t taps[t] extended[i + k - 1 - t] (conv1d correlates: flip).
    flipped = taps.to("cpu", torch.float64).flip(0).view(1, 1, -1)
    return F.conv1d(extended.T[:, None, :], flipped)[:, 0, :].T


class BlurOperator(SeparableGram, LinearOperator):
    """Convolution of every channel with one normalised kernel (true convolution, kernel centre at
    ``(kh // 2, kw // 2)``); ``y`` has the shape of ``x``. Computed with FFTs, so big kernels stay cheap.

    ``boundary``: ``"reflect"`` (mirror, edge not repeated; the papers' choice) or ``"replicate"`` extend the image
    by ``kernel_size - 1`` pixels, convolve linearly and crop; ``"circular"`` convolves periodically (pinv in closed
    form: ``conj(K) / |K|^2`` where ``|K| > rcond * max |K|``, 0 elsewhere; ``||A|| = max |K|``).
    ``kind`` says which blur this is (Gaussian, motion, a user's kernel).

    With reflect / replicate and a separable kernel (rank 1 up to ``separable_rtol``: the Gaussian) the operator
    is ``A_rows (x) A_cols`` per channel, and ``gram_solve`` and ``pinv`` are exact Kronecker eigen-solves
    (``kronecker.SeparableGram``; the pinv drops the eigenvalues of ``A A^T`` below ``gram_rcond`` times the
    largest). Other kernels (motion, a user's file) have the CGLS pinv, and ``gram_solve`` runs preconditioned CG:
    with the Kronecker solve of the kernel's best rank-1 approximation (exact at the border) where the kernel is
    close to separable (``kronecker_precondition_rtol``), else with the circular blur's solve on a zero-padded
    torus (exact in the interior, ``_padded_gram_inverse``).
    """

    name = "blur"
    #: relative threshold on the kernel spectrum below which the circular pinv treats a frequency as lost
    rcond: float = 1e-3
    #: a kernel counts as separable when its second singular value is below this fraction of its first; the
    #: Gaussian built in float32 sits at 1e-8 (rounding), a motion kernel at 0.7, a random 15 x 15 one at 0.26
    separable_rtol: float = 1e-6
    #: below this ratio s_2 / s_1 the rank-1 Kronecker preconditioner beats the circulant one. Measured at 128 px
    #: (CG steps to 1e-4 at sigma 1/255, 0.01, 0.05): disk, random and rotated-Gaussian kernels with s_2 / s_1 of
    #: 0.05-0.36 need 1.2-23x fewer steps with it; motion kernels (0.66-0.79), a diagonal streak (1.0) and an
    #: elongated rotated Gaussian (0.58) up to 2.3x more at sigma <= 0.01 (at 0.05 it is a draw). No separable
    #: preconditioner suits a slanted streak: its |K(omega)|^2 is no product of a row and a column function.
    #: (Those counts are against the image-sized torus; the zero-padded one now used narrows the gap, but at 128 px,
    #: r = 0.3, sigma 1/255 Kronecker still wins: 12 against 36 steps to 1e-2 on a random kernel, 26 against 28 on
    #: a disk.)
    kronecker_precondition_rtol: float = 0.5

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        kernel: torch.Tensor,
        boundary: str = "reflect",
        kind: OperatorKind = OperatorKind.KERNEL_BLUR,
    ) -> None:
        super().__init__(image_shape)
        # The kernel alone does not say whether it is the papers' Gaussian, a drawn camera shake or the user's
        # file; whoever builds the operator knows, and solvers tune per kind.
        self.kind = kind
        if boundary not in BLUR_BOUNDARIES:
            raise UsageError(f"unknown blur boundary '{boundary}' (use one of: {', '.join(BLUR_BOUNDARIES)})")
        kernel = normalise_kernel(torch.as_tensor(kernel), "blur kernel")
        self.boundary = boundary
        _, height, width = self.image_shape
        kh, kw = kernel.shape
        self.register_buffer("kernel", kernel)
        if boundary == "circular":
            self.register_buffer("kernel_wrapped", _wrap_kernel(kernel, height, width))
        else:
            register_blur_extension(self, height, width, (kh, kw), boundary)

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
        z = extend(extend(x, self.rows_before, self.rows_after, -2), self.cols_before, self.cols_after, -1)
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
        z = extend_adjoint(z, self.cols_before, self.cols_after, -1)
        return extend_adjoint(z, self.rows_before, self.rows_after, -2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        if self.boundary != "circular":
            if not self.separable():
                return self.cg_pinv(y)
            # A^+ = A^T (A A^T)^+, the eigenvalues of A A^T below gram_rcond times the largest dropped
            self._check_output(y)
            return self.adjoint(self.kronecker_gram(y).pseudo_solve(y, self.gram_rcond))
        self._check_output(y)
        _, height, width = self.image_shape
        spectrum = self._spectrum((height, width))
        power = spectrum.abs().square()
        keep = spectrum.abs() > self.rcond * spectrum.abs().max()
        inverse = torch.where(keep, spectrum.conj() / power.clamp_min(torch.finfo(power.dtype).tiny), 0)
        return torch.fft.irfft2(torch.fft.rfft2(y) * inverse, s=(height, width))

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                   tol: float | None = None) -> torch.Tensor:
        """Exact for circular blur (FFT) and a separable kernel (Kronecker); otherwise CG to ``tol``."""
        if self.boundary == "circular":
            # A A^T of a circular convolution is diagonal in Fourier: |K(omega)|^2, so the solve is exact.
            return self._circulant_gram_inverse(scale, shift)(v)
        if self.separable():
            return self.kronecker_gram(v).solve(v, scale, shift)
        return self._cg_gram_solve(v, per_item(scale, v), shift, tol=tol)

    def _rank_one(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``rank_one_factors`` of the kernel, computed once (set-up: float64 on the CPU)."""
        cache = self.__dict__.setdefault("_rank_one_cache", {})
        if "factors" not in cache:
            cache["factors"] = rank_one_factors(self.kernel)
        return cache["factors"]

    def separable(self) -> bool:
        """Whether the kernel is rank 1 up to ``separable_rtol``: then a reflect / replicate blur is the Kronecker
        product of two 1-D blurs."""
        return self._rank_one()[2] < self.separable_rtol

    def axis_matrices(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``A_rows (x) A_cols`` for the reflect / replicate border: the operator itself when the kernel is
        separable, else the blur by the kernel's best rank-1 approximation (a preconditioner) when that is close
        (``kronecker_precondition_rtol``); None otherwise and for the circular border."""
        k_rows, k_cols, ratio = self._rank_one()
        if self.boundary == "circular" or ratio >= self.kronecker_precondition_rtol:
            return None
        return (convolution_matrix(k_rows, self.rows_before, self.rows_after),
                convolution_matrix(k_cols, self.cols_before, self.cols_after))

    def gram_preconditioner(self, scale: torch.Tensor | float, shift: float):
        """For the reflect / replicate CG: the exact solve of the nearest separable blur, which gets the border
        right, where the kernel is close to separable; else the blur's solve on a zero-padded torus
        (``_padded_gram_inverse``), which gets the interior right and does not couple opposite borders."""
        if self.boundary == "circular":
            return self._circulant_gram_inverse(scale, shift)
        if self._rank_one()[2] < self.kronecker_precondition_rtol:
            return lambda r: self.kronecker_gram(r).solve(r, scale, shift)
        return self._padded_gram_inverse(scale, shift)

    def _padded_gram_inverse(self, scale: torch.Tensor | float, shift: float):
        """v -> S (scale C C^T + shift I)^-1 S^T v: v zero-padded onto a torus at least ``kernel_size - 1`` larger
        than the image in each axis, the circular blur's exact solve there (C: the kernel on that torus), cropped
        back. Symmetric positive definite (a compression of one), so CG can use it. The image-sized torus's solve
        lets C C^T wrap the top border onto the bottom one, which the reflect border never does: measured at 64
        and 128 px (15-px random, disk and rotated-Gaussian kernels, 61-px motion; sigma 1/255), CG steps to a
        1e-2 relative error in the system's norm fell 1.3-2.2x with the padding (S C C^T S^T is the Gram of the
        valid convolution from the reflect-extended image, A A^T but for the folded border)."""
        _, height, width = self.image_shape
        kh, kw = self.kernel.shape
        size = _fast_fft_size(height + kh - 1, width + kw - 1)
        power = self._padded_power(size)

        def solve(v: torch.Tensor) -> torch.Tensor:
            z = torch.fft.irfft2(torch.fft.rfft2(v, s=size) / (per_item(scale, v) * power + shift), s=size)
            return z[..., :height, :width]

        return solve

    def _padded_power(self, size: tuple[int, int]) -> torch.Tensor:
        """|K|^2 of the kernel wrapped onto a torus of ``size`` (cached like the spectra)."""
        cache = self.__dict__.setdefault("_padded", {})
        key = (size, self.kernel.device, self.kernel.dtype)
        if key not in cache:
            cache.clear()
            cache[key] = torch.fft.rfft2(_wrap_kernel(self.kernel, *size)).abs().square()
        return cache[key]

    def _circulant_gram_inverse(self, scale: torch.Tensor | float, shift: float):
        _, height, width = self.image_shape
        power = self._wrapped_spectrum().abs().square()

        def solve(v: torch.Tensor) -> torch.Tensor:
            return torch.fft.irfft2(torch.fft.rfft2(v) / (per_item(scale, v) * power + shift), s=(height, width))

        return solve

    def _wrapped_spectrum(self) -> torch.Tensor:
        """The spectrum of the kernel wrapped onto the image torus (the circular blur's), for any boundary."""
        _, height, width = self.image_shape
        if self.boundary == "circular":
            return self._spectrum((height, width))
        cache = self.__dict__.setdefault("_wrapped", {})
        key = (self.kernel.device, self.kernel.dtype)
        if key not in cache:
            cache.clear()
            cache[key] = torch.fft.rfft2(_wrap_kernel(self.kernel, height, width))
        return cache[key]

    def _spectral_norm(self) -> float:
        if self.boundary == "circular":
            # A circulant matrix is diagonalised by the unitary DFT: its singular values are |K(omega)|.
            _, height, width = self.image_shape
            return float(self._spectrum((height, width)).abs().max())
        return self.estimate_norm()

    def extra_repr(self) -> str:
        return f"kernel={tuple(self.kernel.shape)}, boundary={self.boundary!r}, {super().extra_repr()}"
