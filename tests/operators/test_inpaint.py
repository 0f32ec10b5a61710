"""diffrestore.operators.inpaint: the masking operator, its default box, batched masks and random masks."""

from __future__ import annotations

import pytest
import torch
from operator_cases import randn

from diffrestore.errors import SizeMismatchError
from diffrestore.operators import box_mask, build_operator, random_mask


def test_inpaint_zeroes_missing_pixels_only() -> None:
    mask = box_mask((6, 5), top=1, left=2, height=3, width=2)
    assert mask.shape == (1, 1, 6, 5) and int(mask.sum()) == 6
    op = build_operator("inpaint", (3, 6, 5), mask=mask)
    x = randn((2, 3, 6, 5), 12)
    y = op(x)
    assert (y[:, :, 1:4, 2:4] == 0).all()
    keep = ~mask.expand_as(x)
    assert torch.equal(y[keep], x[keep])


def test_inpaint_default_is_a_centred_half_box() -> None:
    op = build_operator("inpaint", (3, 256, 256))
    missing = op.missing[0, 0]
    rows, cols = missing.any(1).nonzero().flatten(), missing.any(0).nonzero().flatten()
    assert (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])) == (64, 191, 64, 191)
    assert int(missing.sum()) == 128 * 128


def test_inpaint_batched_masks_apply_per_item() -> None:
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, 0] = True
    masks[1, 0, 3, 3] = True
    op = build_operator("inpaint", (1, 4, 4), mask=masks)
    y = op(torch.ones(2, 1, 4, 4))
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 3, 3] == 1 and y[1, 0, 3, 3] == 0 and y[1, 0, 0, 0] == 1
    with pytest.raises(SizeMismatchError, match="mask batch 2 does not match image batch 3"):
        op(torch.ones(3, 1, 4, 4))


def test_random_mask_has_the_exact_fraction_and_follows_the_seed() -> None:
    a = random_mask((20, 30), 0.7, torch.Generator().manual_seed(1))
    b = random_mask((20, 30), 0.7, torch.Generator().manual_seed(1))
    c = random_mask((20, 30), 0.7, torch.Generator().manual_seed(2))
    assert int(a.sum()) == 420
    assert torch.equal(a, b) and not torch.equal(a, c)
