"""Exact measurement-space solves for separable operators: per channel ``A = A_rows (x) A_cols`` (Kronecker).

Such an operator maps a channel ``X`` (H x W) to ``A_rows X A_cols^T`` (H_out x W_out); super-resolution and blur
with a separable kernel (the Gaussian) and a reflect / replicate border are of this kind. Then
``A A^T = G_rows (x) G_cols`` with ``G = A_1d A_1d^T``, and with the eigendecompositions
``G_rows = U_r diag(l_r) U_r^T``, ``G_cols = U_c diag(l_c) U_c^T`` the Kronecker product has the eigenvectors
``U_r (x) U_c`` and the eigenvalues ``l_r[i] l_c[j]``, so for measurements ``V``

    (s A A^T + t I)^-1 V = U_r [ (U_r^T V U_c) / (s l_r l_c^T + t) ] U_c^T        (elementwise division)

exactly, at any noise level: two small matmuls on each side, where conjugate gradients needed dozens of operator
products at low noise. The eigendecompositions are set-up work, done once per operator in float64 on the CPU
(``KroneckerGram.factorise``); the run-time solves use float32 copies on the measurements' device (MPS has no
float64). Eigenvalues need float64: a float32 ``eigh`` is off by ``eps ||G||`` in absolute terms, which ``1 / t``
amplifies (Gaussian blur at sigma 1/255, scale 2: 3e-4 relative error, against 2e-7 from the float64 one); rounded
to float32 afterwards, each keeps its own relative precision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from .linalg import per_item


@dataclasses.dataclass(frozen=True)
class KroneckerGram:
    """``A A^T = G_rows (x) G_cols`` diagonalised: ``rows`` = U_r (H_out, H_out), ``cols`` = U_c (W_out, W_out) and
    ``eigenvalues`` (H_out, W_out), entry (i, j) = l_r[i] l_c[j] (>= 0)."""

    rows: torch.Tensor
    cols: torch.Tensor
    eigenvalues: torch.Tensor

    @classmethod
    def factorise(cls, a_rows: torch.Tensor, a_cols: torch.Tensor) -> KroneckerGram:
        """From the 1-D matrices ``A_rows`` (H_out, H) and ``A_cols`` (W_out, W): set-up work, in float64 on the CPU.
        Eigenvalues below 0 are rounding (G is positive semi-definite) and are set to 0."""
        factors = []
        for a in (a_rows, a_cols):
            a = a.detach().to("cpu", torch.float64)
            values, vectors = torch.linalg.eigh(a @ a.T)
            factors.append((values.clamp_min(0.0), vectors))
        (l_rows, u_rows), (l_cols, u_cols) = factors
        return cls(u_rows, u_cols, l_rows[:, None] * l_cols[None, :])

    def to(self, device: torch.device, dtype: torch.dtype) -> KroneckerGram:
        return KroneckerGram(*(t.to(device=device, dtype=dtype) for t in (self.rows, self.cols, self.eigenvalues)))

    def _diagonal_solve(self, v: torch.Tensor,
                        divide: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``U [ divide(U^T v) ] U^T``: ``v`` to the eigenbasis, ``divide`` there, and back."""
        w = self.rows.mT @ v @ self.cols
        return self.rows @ divide(w) @ self.cols.mT

    def solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float) -> torch.Tensor:
        """``(scale A A^T + shift I)^-1 v`` for measurements ``v`` (N, C, H_out, W_out); ``scale`` a number or one
        per item (N,)."""
        scale = per_item(scale, v)
        return self._diagonal_solve(v, lambda w: w / (scale * self.eigenvalues + shift))

    def pseudo_solve(self, v: torch.Tensor, rcond: float) -> torch.Tensor:
        """``(A A^T)^+ v`` with the eigenvalues at most ``rcond`` times the largest treated as 0 (the singular values
        of A below ``sqrt(rcond)`` times the largest), so that ``A^T (A A^T)^+`` is a thresholded ``A^+``."""
        keep = self.eigenvalues > rcond * self.eigenvalues.max()
        inverse = torch.where(keep, 1.0 / self.eigenvalues.where(keep, torch.ones_like(self.eigenvalues)), 0.0)
        return self._diagonal_solve(v, lambda w: w * inverse)


class SeparableGram:
    """Mixin for a ``LinearOperator`` that may be ``A_rows (x) A_cols`` per channel: ``axis_matrices()`` gives the
    two 1-D matrices (float64, CPU) or None, and ``kronecker_gram(like)`` their factorisation, computed on first use
    (set-up, float64 on the CPU) and kept, with one float32 copy for the device and dtype of ``like`` (keyed like
    the blur spectra, so ``.to()`` keeps working)."""

    #: eigenvalues of A A^T at most ``gram_rcond`` times the largest count as lost in the Kronecker pseudo-inverse
    #: (singular values below 0.3 % of the largest: noise gain at most 316). Measured on the reflect Gaussian blurs
    #: (9 x 9 of benchmarks/posterior_exactness.py at sigma_y 0.05; 61 x 61 of the operator tests): 1e-5 keeps 99.6 %
    #: of a y in the range (tests/operators/test_operators.py asks 99 %; 1e-3 keeps 97 %) with a pinv error of 5.0
    #: against 5.9 for the 100 CGLS steps it replaces (1e-6, the circular blur's rcond on singular values: 31).
    gram_rcond: float = 1e-5

    def axis_matrices(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(A_rows, A_cols)`` in float64 on the CPU when the operator is separable, else None."""
        return None

    def kronecker_gram(self, like: torch.Tensor) -> KroneckerGram | None:
        cache = self.__dict__.setdefault("_kronecker", {})
        if "float64" not in cache:
            matrices = self.axis_matrices()
            cache["float64"] = None if matrices is None else KroneckerGram.factorise(*matrices)
        exact = cache["float64"]
        if exact is None:
            return None
        key = (like.device, like.dtype)
        if cache.get("key") != key:
            cache["key"], cache["moved"] = key, exact.to(like.device, like.dtype)
        return cache["moved"]
