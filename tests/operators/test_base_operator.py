"""diffrestore.operators.base: an operator refuses inputs of another shape, and the CG pseudo-inverse of
a linear operator copes with an all-zero item."""

from __future__ import annotations

import pytest
import torch
from operator_cases import randn

from diffrestore.errors import SizeMismatchError
from diffrestore.operators import build_operator


def test_wrong_input_shape_is_a_clear_error() -> None:
    op = build_operator("sr", (3, 16, 16), factor=2)
    with pytest.raises(SizeMismatchError, match=r"built for images of shape \(N, 3, 16, 16\) but got \(1, 3, 16, 17\)"):
        op(torch.zeros(1, 3, 16, 17))
    with pytest.raises(SizeMismatchError, match=r"expects measurements of shape \(N, 3, 8, 8\)"):
        op.adjoint(torch.zeros(1, 3, 16, 16))


def test_cg_pinv_handles_a_zero_item_in_the_batch() -> None:
    op = build_operator("sr", (1, 12, 12), factor=3)
    y = torch.stack([torch.zeros(1, 4, 4), randn((1, 4, 4), 18)])
    x = op.pinv(y)
    assert torch.isfinite(x).all() and (x[0] == 0).all()
    assert float((op(x[1:]) - y[1:]).norm() / y[1:].norm()) < 1e-4
