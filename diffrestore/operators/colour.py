"""Colorization: the measurement is the BT.601 luminance of an RGB image.

Also the inner half of grey restoration with an RGB prior: a 1-channel image restored by a 3-channel prior is
``A_grey o Colorize`` (see ``Compose``), so the measurement and its one noise draw live in the grey space.
"""

from __future__ import annotations

import math

import torch

from ..errors import UsageError
from .base import LinearOperator, OperatorKind

#: ITU-R BT.601 luma weights (R, G, B); they sum to 1, so the map commutes with [0,1] <-> [-1,1].
BT601_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


class Colorize(LinearOperator):
    """RGB -> luminance ``y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), output ``(N, 1, H, W)``.

    ``A A^T = |w|^2 I``, so ``pinv(y) = w y / |w|^2`` (a tinted grey: the minimum-norm RGB with that luminance) and
    ``||A|| = |w| ~ 0.669``.
    """

    name = "colorize"
    kind = OperatorKind.COLORIZE
    # Each output pixel reads its own three inputs with the same weights: orthogonal rows of length |w|.
    rows_orthonormal_up_to_scale = True

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

    def gram_diag(self) -> torch.Tensor:
        return torch.tensor(sum(w * w for w in BT601_WEIGHTS))  # A A^T = |w|^2 I

    def _spectral_norm(self) -> float:
        return math.sqrt(sum(w * w for w in BT601_WEIGHTS))
