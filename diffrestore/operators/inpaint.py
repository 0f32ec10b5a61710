"""Inpainting ``A x = x * known`` and the masks it is built from (a box, or a random share of pixels).

Masks follow the mask-file convention (docs/architecture.md): True (white) = missing, the pixels to fill.
"""

from __future__ import annotations

import torch

from ..errors import SizeMismatchError, UsageError
from .base import DEFAULT_SEED, LinearOperator, OperatorKind


def _span(present: torch.Tensor) -> torch.Tensor:
    """Along the last axis, True from the first True to the last True (all False if there is none)."""
    seen_before = present.cumsum(-1) > 0
    seen_after = present.flip(-1).cumsum(-1).flip(-1) > 0
    return seen_before & seen_after


class Inpaint(LinearOperator):
    """``A x = x * known``: missing pixels read as 0. The output keeps the input's shape.

    ``mask`` is a bool tensor ``(H, W)`` or ``(1 | N, 1, H, W)`` with True = MISSING (the file convention: white =
    missing). A batched mask applies mask ``i`` to image ``i``. ``A`` is an orthogonal projection, so
    ``adjoint = pinv = A`` and ``||A|| = 1`` (0 when no pixel is known).
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

    @property
    def is_box(self) -> bool:
        """True when, in every mask of the batch, the missing pixels fill exactly one axis-aligned rectangle.

        Box inpainting (a large hole with no known pixel inside) wants other solver settings than scattered
        holes, where every missing pixel has known neighbours. A mask with nothing missing is not a box.
        """
        missing = self.missing[:, 0]
        rows_hit, cols_hit = missing.any(dim=-1), missing.any(dim=-2)
        if not bool(rows_hit.any(dim=-1).all()):
            return False
        # The bounding box of the missing pixels is the outer product of their row span and column span;
        # the mask is a box exactly when it fills its bounding box.
        bounding_box = _span(rows_hit)[:, :, None] & _span(cols_hit)[:, None, :]
        return torch.equal(bounding_box, missing)

    @property
    def kind(self) -> OperatorKind:  # type: ignore[override]
        return OperatorKind.INPAINT_BOX if self.is_box else OperatorKind.INPAINT

    @property
    def fixed_batch_size(self) -> int | None:
        return self.known.shape[0] if self.known.shape[0] > 1 else None

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

    def gram_diag(self) -> torch.Tensor:
        return self.known  # A A^T = diag(known): known pixels measured once, missing ones not at all

    def _spectral_norm(self) -> float:
        # A projection: singular values are 1 on the known pixels, 0 on the missing ones.
        return 1.0 if bool(self.known.any()) else 0.0


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
