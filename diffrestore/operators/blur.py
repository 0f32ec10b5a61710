"""Blur: convolution of every channel with one kernel, computed with FFTs so big kernels stay cheap.

Boundary handling (what happens at the image border): ``boundary="reflect"`` (default, like the papers' code)
extends the image by mirror reflection (edge pixel not repeated) before a linear convolution, so ``y`` has the size
of ``x``; ``"replicate"`` repeats the edge pixel; ``"circular"`` wraps around (periodic) and has a closed-form pinv
and norm. Kernels larger than the image are fine (the extension keeps reflecting / wrapping).

A normalised non-negative kernel keeps constants (so ``||A|| >= 1``), but with ``"reflect"`` or ``"replicate"``
the pixels near the border are read more than once, so ``A^T`` is no average and ``||A||`` exceeds 1: measured for
the papers' 61-tap Gaussian (sigma 3) with reflection, 1.008 on 64 x 64, 1.028 on 16 x 16 (replicate: 1.115);
the smaller the image, the larger the border's share. Only ``"circular"`` has ``||A|| = max |K| = 1`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .base import LinearOperator, OperatorKind, per_item
from .extension import extend, extend_adjoint, extension_matrices
from .kernels import normalise_kernel

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


class BlurOperator(LinearOperator):
    """Convolution of every channel with one normalised kernel (true convolution, kernel centre at
    ``(kh // 2, kw // 2)``); ``y`` has the shape of ``x``. Computed with FFTs, so big kernels stay cheap.

    ``boundary``: ``"reflect"`` (mirror, edge not repeated; the papers' choice) or ``"replicate"`` extend the image
    by ``kernel_size - 1`` pixels, convolve linearly and crop (pinv by CGLS); ``"circular"`` convolves periodically
    (pinv in closed form: ``conj(K) / |K|^2`` where ``|K| > rcond * max |K|``, 0 elsewhere; ``||A|| = max |K|``).
    ``kind`` says which blur this is (Gaussian, motion, a user's kernel).
    """

    name = "blur"
    #: relative threshold on the kernel spectrum below which the circular pinv treats a frequency as lost
    rcond: float = 1e-3

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
            # Linear convolution needs kh - 1 - kh//2 extra rows above and kh//2 below (same for columns).
            rb, ra = extension_matrices(height, kh - 1 - kh // 2, kh // 2, boundary)
            cb, ca = extension_matrices(width, kw - 1 - kw // 2, kw // 2, boundary)
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
            return self.cg_pinv(y)
        self._check_output(y)
        _, height, width = self.image_shape
        spectrum = self._spectrum((height, width))
        power = spectrum.abs().square()
        keep = spectrum.abs() > self.rcond * spectrum.abs().max()
        inverse = torch.where(keep, spectrum.conj() / power.clamp_min(torch.finfo(power.dtype).tiny), 0)
        return torch.fft.irfft2(torch.fft.rfft2(y) * inverse, s=(height, width))

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float) -> torch.Tensor:
        if self.boundary != "circular":
            return super().gram_solve(v, scale, shift)
        # A A^T of a circular convolution is diagonal in Fourier: |K(omega)|^2, so the solve is exact.
        return self._circulant_gram_inverse(scale, shift)(v)

    def gram_preconditioner(self, scale: torch.Tensor | float, shift: float):
        # Reflect / replicate blur differs from the circular one only near the border: the circular solve is
        # an excellent preconditioner (a few CG steps instead of hundreds when scale ||A||^2 >> shift).
        return self._circulant_gram_inverse(scale, shift)

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
