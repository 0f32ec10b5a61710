"""Nonlinear operators: Fourier phase retrieval and high dynamic range (a scaled clip).

They have no adjoint or pseudo-inverse; solvers differentiate through ``forward`` with autograd. Each states a
Lipschitz bound, for step-size caps that would otherwise assume ``||A|| <= 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Operator, OperatorKind


class PhaseRetrieval(Operator):
    """Fourier magnitude ``y = |FFT(pad(x01))|`` with ``x01 = (x + 1) / 2`` (a nonnegative object, as in the
    papers' code), the image centred in a zero canvas of ``ceil(oversampling * H) x ceil(oversampling * W)``,
    orthonormal FFT (so ``|y| = |x01|``), spectrum shifted so DC sits in the centre.

    Nonlinear; differentiable everywhere: torch's complex ``abs`` has gradient 0 (not NaN) at 0.
    Note: the DPS / DAPS code pads by ``oversampling / 8 * 256`` pixels per side (1.5x the side at 2.0); here
    ``oversampling`` is the ratio of canvas side to image side.
    """

    name = "phase_retrieval"
    kind = OperatorKind.PHASE_RETRIEVAL

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

    def lipschitz(self) -> float:
        """0.5, and no smaller constant holds.

        Each step of ``forward`` is at most as long as its input: ``x -> (x + 1) / 2`` halves differences, zero
        padding and the orthonormal FFT keep norms (Parseval), ``fftshift`` permutes, and the complex modulus is
        1-Lipschitz entry by entry (``||a| - |b|| <= |a - b|``). So ``||A(x) - A(x')|| <= ||x - x'|| / 2``.
        Equality holds along the ray ``x01 -> t x01`` (the modulus scales with ``t``), so the bound is tight.
        """
        return 0.5

    def extra_repr(self) -> str:
        return f"oversampling={self.oversampling}, {super().extra_repr()}"


class HighDynamicRange(Operator):
    """``y = clip(scale * x, -1, 1)``; nonlinear, gradient ``scale`` inside the clip range and 0 outside."""

    name = "hdr"
    kind = OperatorKind.HDR

    def __init__(self, image_shape: tuple[int, int, int], scale: float = 2.0) -> None:
        super().__init__(image_shape)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return (self.scale * x).clamp(-1.0, 1.0)

    def lipschitz(self) -> float:
        """``scale``: the Jacobian is ``scale`` times the identity where ``|scale * x| < 1`` and 0 where it clips,
        and clipping is 1-Lipschitz, so ``||A(x) - A(x')|| <= scale ||x - x'||``, with equality between images
        that do not clip (the default ``scale = 2`` exceeds the ``||A|| <= 1`` that step caps assume)."""
        return self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}, {super().extra_repr()}"
