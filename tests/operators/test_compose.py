"""Composition ``outer o inner``: shapes, refusal of chains that do not fit, the closed-form pinv against CGLS,
and the grey-image-with-an-RGB-prior use (one measurement, one noise draw)."""

from __future__ import annotations

import pytest
import torch
from operator_cases import randn

from diffrestore.errors import UsageError
from diffrestore.operators import Colorize, Compose, GaussianNoise, LinearOperator, build_operator, simulate


def test_compose_applies_inner_first_and_takes_the_outer_output_shape() -> None:
    inner, outer = Colorize((3, 12, 10)), build_operator("sr", (1, 12, 10), factor=2)
    op = Compose(outer, inner)
    assert op.image_shape == (3, 12, 10) and op.output_shape == (1, 6, 5)
    x, y = randn((2, 3, 12, 10), 0), randn((2, 1, 6, 5), 1)
    assert torch.equal(op(x), outer(inner(x)))
    assert torch.equal(op.adjoint(y), inner.adjoint(outer.adjoint(y)))


def test_compose_refuses_parts_that_do_not_fit_in_one_line() -> None:
    rgb_inpaint = build_operator("inpaint", (3, 8, 8))
    message = r"after 'colorize': 'colorize' outputs images of shape \(1, 8, 8\) but 'inpaint' was built for"
    with pytest.raises(UsageError, match=message) as info:
        Compose(rgb_inpaint, Colorize((3, 8, 8)))
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"\(3, 4, 4\) but 'sr' was built for \(3, 8, 8\)"):
        Compose(build_operator("sr", (3, 8, 8), factor=2), build_operator("sr", (3, 8, 8), factor=2))


def test_linear_only_when_both_parts_are() -> None:
    linear = Compose(build_operator("inpaint", (1, 6, 6)), Colorize((3, 6, 6)))
    nonlinear = Compose(build_operator("hdr", (1, 6, 6)), Colorize((3, 6, 6)))
    assert isinstance(linear, Compose) and isinstance(linear, LinearOperator) and linear.linear
    assert isinstance(nonlinear, Compose) and not isinstance(nonlinear, LinearOperator) and not nonlinear.linear


def test_closed_form_pinv_equals_cgls_for_inpaint_after_colorize() -> None:
    mask_op = build_operator("inpaint", (1, 14, 11), fraction=0.6, generator=torch.Generator().manual_seed(2))
    op = Compose(mask_op, Colorize((3, 14, 11)))
    assert op.inner.rows_orthonormal_up_to_scale
    y = op(randn((2, 3, 14, 11), 3))
    closed_form, cgls = op.pinv(y), op.cg_pinv(y, max_iter=200, tol=1e-8)
    assert torch.allclose(closed_form, cgls, atol=1e-5), float((closed_form - cgls).abs().max())


def test_dtype_move_reaches_both_parts() -> None:
    op = Compose(build_operator("sr", (1, 8, 8), factor=2, kernel="box"), Colorize((3, 8, 8))).to(torch.float64)
    assert op.outer.weights.dtype == torch.float64 and op.inner.weights.dtype == torch.float64
    assert op(torch.zeros(1, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_grey_measurement_of_an_rgb_image_has_one_noise_draw() -> None:
    # A grey photo restored with an RGB prior: y lives in the grey space, so the noise is drawn once, on 1 channel.
    op = Compose(build_operator("sr", (1, 16, 16), factor=2), Colorize((3, 16, 16)))
    x = randn((1, 3, 16, 16), 4).clamp(-1, 1)
    problem = simulate(op, GaussianNoise(0.05), x, torch.Generator().manual_seed(5))
    assert problem.y.shape == (1, 1, 8, 8)
    grey = build_operator("sr", (1, 16, 16), factor=2)(Colorize((3, 16, 16))(x))
    expected_noise = 0.1 * torch.randn(grey.shape, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(problem.y, grey + expected_noise, atol=1e-6)


def test_composites_survive_a_deep_copy() -> None:
    import copy

    op = Compose(build_operator("inpaint", (1, 6, 6)), Colorize((3, 6, 6)))
    clone = copy.deepcopy(op)
    assert type(clone) is type(op) and torch.equal(clone.outer.known, op.outer.known)
