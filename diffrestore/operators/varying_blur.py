"""Spatially varying blur: a grid of kernels blended across the image (the product-convolution model).

Real camera shake and defocus change across the frame: a rotation of the camera streaks the corners more than the
centre, a tilted scene is sharp in one band only. The product-convolution model (Nagy and O'Leary, SIAM J. Sci.
Comput. 19(4), 1998; Denis et al., IJCV 115, 2015) describes such a blur by K kernels h_k measured or drawn at
the nodes of a regular grid over the image and weights w_k that blend them:

    y = sum_k h_k * (w_k . x),      A^T y = sum_k w_k . (h_k^T * y),

with ``*`` the same convolution as :class:`~.blur.BlurOperator` (true convolution, kernel centre at
``(kh // 2, kw // 2)``, the image extended by reflection / replication or wrapped) and ``.`` the pixelwise
product. The weights are the bilinear "hat" functions of the grid (w_k = 1 at node k, 0 at its neighbours,
linear between, constant past the outer nodes): non-negative and summing to 1 at every pixel, so the point
spread function at pixel p is sum_k w_k(p) h_k, the kernels interpolated. Each scene point's light is spread by
its own kernel: with normalised kernels the model conserves light (on the torus sum(y) = sum(x) and A^T 1 = 1
exactly); it keeps a constant image only where the weights are linear over a kernel's support and the kernels
share their centroid (blending the outputs instead, sum_k w_k . (h_k * x), would keep constants but move light).
A one-kernel grid is the uniform blur bit for bit. The adjoint is the exact transpose (the extension's adjoint
folds the border back, as in ``BlurOperator``).

Cost: each kernel is applied only where its weight is non-zero (overlap-add: the extended image's patch under
w_k, convolved linearly by FFTs of the patch's size, added at its place), so a 4 x 4 grid costs about 16 FFT
pairs of a quarter-image patch each instead of 17 FFTs of the whole image each way. A one-kernel grid takes
``BlurOperator``'s own steps. ``gram_solve`` runs the
base class's conjugate gradients without a preconditioner (no fast exact solve exists: the weights couple every
frequency). The circular solve of the grid's mean kernel was tried as one and dropped: at 64 px, sigma 1/255
and 0.01, residuals after 5-80 steps were no better on a shake field (21-px streaks, 4 x 4) and worse on a defocus
field and on two unlike kernels (the mean of streaks in different directions is nobody's blur).
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from .base import LinearOperator
from .blur import BLUR_BOUNDARIES, BlurOperator, _fast_fft_size, _wrap_kernel
from .extension import extend, extend_adjoint, register_blur_extension
from .kernels import normalise_kernel


def hat_weights(length: int, nodes: int) -> torch.Tensor:
    """(nodes, length) bilinear interpolation weights along one axis: node j sits at the centre of the j-th of
    ``nodes`` equal cells; each pixel's weights are non-negative and sum to 1 (past the first and last node the
    nearest node has weight 1)."""
    if nodes == 1:
        return torch.ones(1, length)
    centres = (torch.arange(nodes, dtype=torch.float64) + 0.5) * length / nodes - 0.5
    position = torch.arange(length, dtype=torch.float64).clamp(float(centres[0]), float(centres[-1]))
    spacing = float(centres[1] - centres[0])
    weights = (1.0 - (position[None, :] - centres[:, None]).abs() / spacing).clamp_min(0.0)
    return (weights / weights.sum(dim=0, keepdim=True)).to(torch.float32)


def _support(weight: torch.Tensor) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the smallest rectangle holding every non-zero of a 2-D weight map."""
    rows = torch.nonzero(weight.abs().sum(dim=1)).flatten()
    cols = torch.nonzero(weight.abs().sum(dim=0)).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


class VaryingBlurOperator(LinearOperator):
    """Blur by a (rows, cols) grid of kernels of one size (``kernels``: (rows, cols, kh, kw), each normalised to
    sum 1), blended by the grid's bilinear weights. ``boundary`` as ``BlurOperator``'s."""

    name = "varying_blur"

    def __init__(self, image_shape: tuple[int, int, int], kernels: torch.Tensor, boundary: str = "reflect") -> None:
        super().__init__(image_shape)
        if boundary not in BLUR_BOUNDARIES:
            raise UsageError(f"unknown blur boundary '{boundary}' (use one of: {', '.join(BLUR_BOUNDARIES)})")
        kernels = torch.as_tensor(kernels)
        if kernels.dim() != 4 or 0 in kernels.shape:
            raise UsageError(f"a kernel grid has shape {tuple(kernels.shape)}; it must be (rows, cols, kh, kw)",
                             hint="stack the kernels as numpy.stack([numpy.stack(row) for row in grid])")
        rows, cols, kh, kw = (int(v) for v in kernels.shape)
        _, height, width = self.image_shape
        if rows > height or cols > width:
            raise UsageError(f"a {rows} x {cols} kernel grid is finer than the {height} x {width} image",
                             hint="use at most one kernel per pixel row and column")
        flat = torch.stack([normalise_kernel(kernels[r, c], f"kernel ({r}, {c}) of the grid")
                            for r in range(rows) for c in range(cols)])
        self.boundary = boundary
        self.grid = (rows, cols)
        self.register_buffer("kernels", flat)  # (K, kh, kw), row-major over the grid
        weights = hat_weights(height, rows)[:, None, :, None] * hat_weights(width, cols)[None, :, None, :]
        self.register_buffer("weights", weights.reshape(rows * cols, 1, height, width))  # (K, 1, H, W)
        # One kernel is the uniform blur itself (weight 1 everywhere): that operator does the work, bit for bit.
        self.uniform = BlurOperator(image_shape, kernels[0, 0], boundary) if rows * cols == 1 else None
        if self.uniform is not None:
            return
        if boundary == "circular":
            self.register_buffer("kernels_wrapped", torch.stack([_wrap_kernel(k, height, width) for k in flat]))
            return
        rb, ra, cb, ca = register_blur_extension(self, height, width, (kh, kw), boundary)
        # Each weight extended as the image is (extension copies pixels, so ext(w x) = ext(w) ext(x)), and the
        # rectangle where it is non-zero: its kernel's FFTs need only that patch (overlap-add).
        extended = extend(extend(self.weights, rb, ra, -2), cb, ca, -1)
        self.register_buffer("weights_extended", extended)  # (K, 1, H + kh - 1, W + kw - 1)
        self.patches = [_support(extended[k, 0]) for k in range(rows * cols)]

    @property
    def kernel_count(self) -> int:
        return int(self.kernels.shape[0])

    def _kernel_spectrum(self, k: int, size: tuple[int, int]) -> torch.Tensor:
        """Kernel k's spectrum on an FFT grid of ``size`` (the wrapped kernel on the image torus for the circular
        border; patches differ in size), cached: samplers apply the operator thousands of times."""
        source = self.kernels_wrapped[k] if self.boundary == "circular" else self.kernels[k]
        key = (k, size, source.device, source.dtype)
        cache = self.__dict__.setdefault("_spectra", {})
        if key not in cache:
            if len(cache) > 8 * self.kernel_count:  # a new device or dtype: drop the old ones
                cache.clear()
            cache[key] = torch.fft.rfft2(source, s=size)
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uniform is not None:
            return self.uniform(x)
        self._check_input(x)
        if self.boundary != "circular":
            return self._forward_patches(x)
        size = tuple(self.image_shape[1:])
        total = sum(torch.fft.rfft2(self.weights[k] * x) * self._kernel_spectrum(k, size)
                    for k in range(self.kernel_count))
        return torch.fft.irfft2(total, s=size)

    def _forward_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Overlap-add: each kernel convolves (linearly) only the patch where its extended weight is non-zero,
        and the patches' full outputs are added at their places; the image's rows are those of the linear
        convolution's output from kh - 1 on (as in ``BlurOperator.forward``)."""
        _, height, width = self.image_shape
        kh, kw = (int(v) for v in self.kernels.shape[-2:])
        # the operator's own precision where it is higher (a float64 copy applied to float32 input, as tests do)
        x = x.to(torch.promote_types(x.dtype, self.weights_extended.dtype))
        z = extend(extend(x, self.rows_before, self.rows_after, -2), self.cols_before, self.cols_after, -1)
        out = z.new_zeros(*z.shape[:-2], z.shape[-2] + kh - 1, z.shape[-1] + kw - 1)
        for k, (r0, r1, c0, c1) in enumerate(self.patches):
            patch = z[..., r0:r1, c0:c1] * self.weights_extended[k, :, r0:r1, c0:c1]
            rows, cols = r1 - r0 + kh - 1, c1 - c0 + kw - 1
            size = _fast_fft_size(rows, cols)
            full = torch.fft.irfft2(torch.fft.rfft2(patch, s=size) * self._kernel_spectrum(k, size), s=size)
            out[..., r0 : r0 + rows, c0 : c0 + cols] += full[..., :rows, :cols]
        return out[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.uniform is not None:
            return self.uniform.adjoint(y)
        self._check_output(y)
        if self.boundary != "circular":
            return self._adjoint_patches(y)
        size = tuple(self.image_shape[1:])
        spectrum = torch.fft.rfft2(y)
        return sum(self.weights[k] * torch.fft.irfft2(spectrum * self._kernel_spectrum(k, size).conj(), s=size)
                   for k in range(self.kernel_count))

    def _adjoint_patches(self, y: torch.Tensor) -> torch.Tensor:
        """The transpose of ``_forward_patches``: y placed in the full output grid, each patch's correlation with
        its kernel (the rows a patch's outputs reach, no wrap-around), times its weight, added at its place, and
        the extension folded back."""
        _, height, width = self.image_shape
        kh, kw = (int(v) for v in self.kernels.shape[-2:])
        extended_rows, extended_cols = height + kh - 1, width + kw - 1
        y = y.to(torch.promote_types(y.dtype, self.weights_extended.dtype))
        full = y.new_zeros(*y.shape[:-2], extended_rows + kh - 1, extended_cols + kw - 1)
        full[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width] = y
        g = y.new_zeros(*y.shape[:-2], extended_rows, extended_cols)
        for k, (r0, r1, c0, c1) in enumerate(self.patches):
            rows, cols = r1 - r0 + kh - 1, c1 - c0 + kw - 1
            size = _fast_fft_size(rows, cols)
            seen = full[..., r0 : r0 + rows, c0 : c0 + cols]
            corr = torch.fft.irfft2(torch.fft.rfft2(seen, s=size) * self._kernel_spectrum(k, size).conj(), s=size)
            g[..., r0:r1, c0:c1] += corr[..., : r1 - r0, : c1 - c0] * self.weights_extended[k, :, r0:r1, c0:c1]
        g = extend_adjoint(g, self.cols_before, self.cols_after, -1)
        return extend_adjoint(g, self.rows_before, self.rows_after, -2)

    def extra_repr(self) -> str:
        rows, cols = self.grid
        kh, kw = self.kernels.shape[-2:]
        return f"grid={rows}x{cols}, kernel=({kh}, {kw}), boundary={self.boundary!r}, {super().extra_repr()}"
