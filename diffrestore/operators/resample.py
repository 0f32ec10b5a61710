"""Super-resolution: downsampling by an integer factor (antialiased bicubic or box), with an exact adjoint.

Output size is ``ceil(H / f) x ceil(W / f)``. The bicubic kernel reads past the border through mirror reflection;
sizes not divisible by ``f`` are extended at the bottom / right by the same rule. Box averages each ``f x f`` block;
a partial block at the bottom / right averages the pixels that exist (``avg_pool2d(..., ceil_mode=True)``).
Nothing is cropped and the adjoint stays exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import LinearOperator, OperatorKind
from .extension import extend, extend_adjoint, extension_matrices
from .kronecker import SeparableGram

SR_KERNELS: tuple[str, ...] = ("bicubic", "box")


def _resample_axis(n: int, taps: int, stride: int, before: int, mode: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Geometry of one axis of ``out[i] = sum_t w[t] * ext(x)[stride * i + t]``: the output length
    ``ceil(n / stride)`` and the extension matrices that make the last window fit."""
    out = -(-n // stride)
    after = max(0, stride * (out - 1) + taps - before - n)
    e_before, e_after = extension_matrices(n, before, after, mode)
    return out, e_before, e_after


def _downsample(z: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor, weights: torch.Tensor, factor: int,
                axis: int) -> torch.Tensor:
    """One axis of the resampling on ``z`` (B, 1, H, W): extend along ``axis`` (-2 rows, -1 columns), then
    ``out[i] = sum_t w[t] ext(z)[factor * i + t]``."""
    z = extend(z, e_before, e_after, axis)
    if axis == -2:
        return F.conv2d(z, weights.view(1, 1, -1, 1), stride=(factor, 1))
    return F.conv2d(z, weights.view(1, 1, 1, -1), stride=(1, factor))


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


class SuperResolution(SeparableGram, LinearOperator):
    """Downsampling by an integer ``factor``: antialiased ``"bicubic"`` (the resize kernel of PIL / torch
    ``antialias=True``, a = -0.5) or ``"box"`` (average pooling over ``f x f`` blocks).

    Output ``(N, C, ceil(H / f), ceil(W / f))``. Bicubic reads past the border by mirror reflection (also to fill
    the last window when the size is not divisible by ``f``). Box: a partial last block averages the pixels that
    exist. Box has a closed-form pinv and norm (``A A^T`` is diagonal). Both are separable, ``A = A_rows (x) A_cols``
    per channel, so bicubic's ``gram_solve`` and pinv are exact Kronecker eigen-solves (``kronecker.SeparableGram``);
    its norm is the Lanczos estimate.
    """

    name = "sr"
    kind = OperatorKind.SUPERRES

    def __init__(self, image_shape: tuple[int, int, int], factor: int = 4, kernel: str = "bicubic") -> None:
        super().__init__(image_shape)
        self.factor, self.kernel = int(factor), kernel
        channels, height, width = self.image_shape
        if kernel == "bicubic":
            weights, before = _bicubic_taps(self.factor)
            mode = "reflect"
        else:
            # Zero-extend, then rescale the partial last block so it is a mean over the pixels it has.
            weights, before, mode = torch.full((self.factor,), 1.0 / self.factor), 0, "zero"
        row_scale, col_scale = self._axis_scale(height), self._axis_scale(width)
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
            # Whole blocks only: every row then holds f^2 entries 1 / f^2, so A A^T = I / f^2.
            self.rows_orthonormal_up_to_scale = height % self.factor == 0 and width % self.factor == 0

    def _axis_scale(self, n: int) -> torch.Tensor:
        """Per-output factor of one axis (1 for bicubic; box: a partial last block is a mean over what exists)."""
        return _partial_block_scale(n, self.factor) if self.kernel == "box" else torch.ones(-(-n // self.factor))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        z = x.reshape(n * c, 1, h, w)
        z = _downsample(z, self.rows_before, self.rows_after, self.weights, self.factor, -2)
        z = _downsample(z, self.cols_before, self.cols_after, self.weights, self.factor, -1) * self.scale
        return z.reshape(n, c, z.shape[-2], z.shape[-1])

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        n, c, h, w = y.shape
        z = y.reshape(n * c, 1, h, w) * self.scale
        z = F.conv_transpose2d(z, self.weights.view(1, 1, 1, -1), stride=(1, self.factor))
        z = extend_adjoint(z, self.cols_before, self.cols_after, -1)
        z = F.conv_transpose2d(z, self.weights.view(1, 1, -1, 1), stride=(self.factor, 1))
        z = extend_adjoint(z, self.rows_before, self.rows_after, -2)
        return z.reshape(n, c, z.shape[-2], z.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return self._adjoint(y)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        if self.kernel == "box":
            return self._adjoint(y / self.gram_diagonal)
        # A^+ = A^T (A A^T)^+, exact: bicubic's singular values stay above 1 % of the top (x2: 14 %), far above the
        # gram_rcond cut
        return self._adjoint(self.kronecker_gram(y).pseudo_solve(y, self.gram_rcond))

    def gram_diag(self) -> torch.Tensor | None:
        return self.gram_diagonal if self.kernel == "box" else None

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                   tol: float | None = None) -> torch.Tensor:
        """Box: elementwise (``A A^T`` is diagonal); bicubic: the exact Kronecker eigen-solve. ``tol`` is unused."""
        if self.kernel == "box":
            return super().gram_solve(v, scale, shift, tol=tol)
        return self.kronecker_gram(v).solve(v, scale, shift)

    def axis_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel ``A = A_rows (x) A_cols``: ``_forward``'s own 1-D passes applied to the identity, times the
        per-output scale, in float64 on the CPU."""
        _, height, width = self.image_shape
        weights = self.weights.detach().to("cpu", torch.float64)
        axes = ((height, self.rows_before, self.rows_after), (width, self.cols_before, self.cols_after))
        matrices = []
        for n, before, after in axes:
            eye = torch.eye(n, dtype=torch.float64)[None, None]  # column j: pixel j alone, resampled along rows
            before, after = (e.detach().to("cpu", torch.float64) for e in (before, after))
            rows = _downsample(eye, before, after, weights, self.factor, -2)[0, 0]
            matrices.append(rows * self._axis_scale(n).to(torch.float64)[:, None])
        return matrices[0], matrices[1]

    def _spectral_norm(self) -> float:
        if self.kernel == "box":
            # ||A||^2 is the largest eigenvalue of A A^T, here its largest diagonal entry (the smallest block).
            return math.sqrt(float(self.gram_diagonal.max()))
        return self.estimate_norm()

    def extra_repr(self) -> str:
        return f"factor={self.factor}, kernel={self.kernel!r}, {super().extra_repr()}"
