"""Composition ``(outer o inner)(x) = outer(inner(x))`` of two operators, as one operator.

The use it exists for: a grey (1-channel) image restored with an RGB prior is ``A_grey o Colorize`` on the
3-channel ``x``, so the measurement, its noise model and its single noise draw stay those of the grey problem.
The composite reports the outer operator's ``kind`` and ``name``: it is that task, seen from a larger image space.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UsageError
from .base import LinearOperator, Operator, OperatorKind


class Compose(Operator):
    """``outer(inner(x))``; ``image_shape`` is the inner one's, ``output_shape`` the outer one's.

    ``Compose(outer, inner)`` is a ``LinearOperator`` (with ``adjoint``, ``pinv``, ``norm``) exactly when both parts
    are linear. Both parts are submodules, so ``.to()`` moves their buffers.
    """

    def __new__(cls, outer: Operator | None = None, inner: Operator | None = None) -> Any:
        # One constructor for both cases keeps `isinstance(op, LinearOperator) == op.linear` true for composites.
        # The defaults let copy/pickle call __new__ without arguments.
        if cls is Compose and outer is not None and inner is not None and outer.linear and inner.linear:
            cls = LinearCompose
        return super().__new__(cls)

    def __init__(self, outer: Operator, inner: Operator) -> None:
        if tuple(inner.output_shape) != tuple(outer.image_shape):
            raise UsageError(
                f"cannot apply '{outer.name}' after '{inner.name}': '{inner.name}' outputs images of shape "
                f"{tuple(inner.output_shape)} but '{outer.name}' was built for {tuple(outer.image_shape)}"
            )
        super().__init__(inner.image_shape)
        self.outer = outer
        self.inner = inner
        self.output_shape = tuple(outer.output_shape)  # type: ignore[assignment]

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.outer.name

    @property
    def kind(self) -> OperatorKind | None:  # type: ignore[override]
        return self.outer.kind

    @property
    def fixed_batch_size(self) -> int | None:
        return self.inner.fixed_batch_size or self.outer.fixed_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(x))

    def lipschitz(self) -> float | None:
        """The product of the parts' constants (Lipschitz constants multiply under composition), or None if
        either part has none. An upper bound, not always the best constant."""
        outer, inner = self.outer.lipschitz(), self.inner.lipschitz()
        return None if outer is None or inner is None else outer * inner


class LinearCompose(Compose, LinearOperator):
    """The linear case of ``Compose`` (both parts linear); build it through ``Compose(outer, inner)``."""

    outer: LinearOperator
    inner: LinearOperator

    # A linear map's best Lipschitz constant is its norm, tighter than the product of the parts' norms.
    lipschitz = LinearOperator.lipschitz

    @property
    def rows_orthonormal_up_to_scale(self) -> bool:  # type: ignore[override]
        # (B A)(B A)^T = B (c I) B^T = c c' I when both parts have the property.
        return self.outer.rows_orthonormal_up_to_scale and self.inner.rows_orthonormal_up_to_scale

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``inner^+ (outer^+ y)`` when the inner rows are orthogonal with one length (``inner inner^T = c I``):
        then ``inner = sqrt(c) Q`` with ``Q Q^T = I`` and ``(outer inner)^+ = inner^+ outer^+`` holds exactly
        (as exact as ``outer.pinv``). Otherwise that product need not be the pseudo-inverse: CGLS."""
        if self.inner.rows_orthonormal_up_to_scale:
            return self.inner.pinv(self.outer.pinv(y))
        return self.cg_pinv(y)

    def gram_diag(self) -> torch.Tensor | None:
        if not self.inner.rows_orthonormal_up_to_scale:
            return None
        outer = self.outer.gram_diag()
        return None if outer is None else outer * self.inner.norm() ** 2

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                   tol: float | None = None) -> torch.Tensor:
        if self.inner.rows_orthonormal_up_to_scale:
            # (B A)(B A)^T = c B B^T with c = ||A||^2: the outer operator's own solve (closed form if it has one:
            # elementwise, FFT or Kronecker). ``tol`` only when given: an outer operator from outside this package
            # may predate it.
            options = {} if tol is None else {"tol": tol}
            return self.outer.gram_solve(v, scale * self.inner.norm() ** 2, shift, **options)
        return super().gram_solve(v, scale, shift, tol=tol)

    def _spectral_norm(self) -> float:
        if self.inner.rows_orthonormal_up_to_scale:
            # inner = sqrt(c) Q maps the unit ball onto sqrt(c) times the unit ball, so ||outer inner|| is
            # ||outer|| sqrt(c), and sqrt(c) = ||inner||.
            return self.outer.norm() * self.inner.norm()
        return self.estimate_norm()
