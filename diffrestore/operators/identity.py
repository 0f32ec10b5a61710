"""The identity ``A x = x``: the measurement model of denoising."""

from __future__ import annotations

import torch

from .base import LinearOperator, OperatorKind


class Identity(LinearOperator):
    """``A x = x`` (denoising). Its own adjoint and pseudo-inverse; ``||A|| = 1``."""

    name = "identity"
    kind = OperatorKind.DENOISE
    rows_orthonormal_up_to_scale = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return x.clone()

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return y.clone()

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)

    def _spectral_norm(self) -> float:
        return 1.0

    def gram_diag(self) -> torch.Tensor:
        return torch.ones(())
