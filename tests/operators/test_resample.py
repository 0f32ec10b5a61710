"""diffrestore.operators.resample: super-resolution against torch's antialiased bicubic resize and
``avg_pool2d``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from operator_cases import randn

from diffrestore.operators import build_operator


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bicubic_sr_matches_torch_antialiased_resize_inside_the_image(factor: int) -> None:
    x = randn((1, 3, 48, 72), 9).clamp(-1, 1)
    y = build_operator("sr", (3, 48, 72), factor=factor, kernel="bicubic")(x)
    reference = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True)
    assert y.shape == reference.shape
    # torch renormalises truncated taps at the border where we reflect: compare two pixels in from the edge.
    assert torch.allclose(y[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("size", [(16, 24), (17, 23), (31, 20)])
@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_box_sr_is_average_pooling_with_partial_last_blocks(factor: int, size: tuple[int, int]) -> None:
    x = randn((2, 3, *size), 10)
    y = build_operator("sr", (3, *size), factor=factor, kernel="box")(x)
    assert torch.allclose(y, F.avg_pool2d(x, factor, ceil_mode=True), atol=1e-6)


def test_box_sr_pinv_is_nearest_upsampling_when_divisible() -> None:
    op = build_operator("sr", (1, 8, 12), factor=4, kernel="box")
    y = randn((1, 1, 2, 3), 11)
    assert torch.allclose(op.pinv(y), y.repeat_interleave(4, -2).repeat_interleave(4, -1), atol=1e-6)
