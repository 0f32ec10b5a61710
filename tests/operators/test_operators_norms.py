"""Spectral norms and Lipschitz bounds: every linear operator's ``norm()`` against the largest singular value of
its dense matrix, the documented facts (reflect blur above 1, HDR's gain, phase retrieval's 1/2), determinism.

Solvers cap their step sizes with these numbers, so an estimate that is low by much would make a step unstable.
"""

from __future__ import annotations

import math

import pytest
import torch
from operator_cases import LINEAR_CASES, build_case, case_shape, dense_matrix, needs_rgb, randn

from diffrestore.operators import BT601_WEIGHTS, Colorize, Compose, Inpaint, build_operator, random_mask

NORM_SHAPES = [(3, 9, 11), (1, 12, 10)]
NORM_CASES = [
    pytest.param(*case.values, shape, id=f"{case.id}-{'x'.join(map(str, shape))}")
    for case in LINEAR_CASES
    for shape in dict.fromkeys(case_shape(*case.values, s) for s in NORM_SHAPES)
    if shape[0] == 3 or not needs_rgb(*case.values)
]


@pytest.mark.parametrize(("name", "params", "shape"), NORM_CASES)
def test_norm_is_the_largest_singular_value(name: str, params: dict, shape: tuple[int, int, int]) -> None:
    op = build_case(name, params, (1, *shape))
    norm, estimate = op.norm(), op.estimate_norm()
    exact = float(torch.linalg.matrix_norm(dense_matrix(op, shape), ord=2))
    # Both the closed forms (where an operator has one) and the generic estimate must find it.
    assert abs(norm - exact) <= 1e-3 * exact, (norm, exact)
    assert abs(estimate - exact) <= 1e-3 * exact, (estimate, exact)


def test_norm_is_cached_and_reproducible() -> None:
    op = build_operator("sr", (3, 20, 16), factor=3)
    first = op.norm()
    assert op.norm() == first
    assert build_operator("sr", (3, 20, 16), factor=3).norm() == first


@pytest.mark.parametrize("boundary", ["reflect", "replicate"])
def test_blur_with_an_extended_border_has_norm_above_one(boundary: str) -> None:
    # Documented in operators.blur: border pixels are read more than once. Step caps assuming ||A|| <= 1 are wrong.
    assert build_operator("gaussian_blur", (1, 16, 16), boundary=boundary).norm() > 1.02
    assert build_operator("gaussian_blur", (1, 16, 16), boundary="circular").norm() == pytest.approx(1.0, abs=1e-6)


def test_closed_form_norms() -> None:
    luma = math.sqrt(sum(w * w for w in BT601_WEIGHTS))
    assert Colorize((3, 5, 4)).norm() == pytest.approx(luma, rel=1e-6)
    assert build_operator("identity", (2, 5, 4)).norm() == 1.0
    assert Inpaint((1, 4, 4), torch.ones(4, 4, dtype=torch.bool)).norm() == 0.0  # nothing known: A = 0
    # Box blocks of 3 x 3: each output is a mean of 9 pixels, ||A|| = 1/3; a partial 2 x 3 block raises it.
    assert build_operator("sr", (1, 9, 9), factor=3, kernel="box").norm() == pytest.approx(1 / 3, rel=1e-6)
    assert build_operator("sr", (1, 8, 9), factor=3, kernel="box").norm() == pytest.approx(1 / math.sqrt(6), rel=1e-6)


def test_a_batch_of_masks_inside_a_composite_is_estimated_item_by_item() -> None:
    masks = random_mask((6, 5), 0.5, torch.Generator().manual_seed(0), batch=3)
    op = Compose(Inpaint((1, 6, 5), masks), Colorize((3, 6, 5)))
    assert op.fixed_batch_size == 3
    luma = math.sqrt(sum(w * w for w in BT601_WEIGHTS))
    assert op.estimate_norm() == pytest.approx(luma, rel=1e-4)


def test_linear_lipschitz_is_the_norm() -> None:
    op = build_operator("motion_blur", (3, 12, 12))
    assert op.lipschitz() == op.norm()


@pytest.mark.parametrize("scale", [2.0, 0.5])
def test_hdr_lipschitz_is_its_gain_and_holds(scale: float) -> None:
    op = build_operator("hdr", (3, 8, 8), scale=scale)
    assert op.lipschitz() == scale
    x, x2 = randn((16, 3, 8, 8), 0), randn((16, 3, 8, 8), 1)
    assert bool(((op(x) - op(x2)).flatten(1).norm(dim=1) <= scale * (x - x2).flatten(1).norm(dim=1) + 1e-5).all())
    # Attained between images that do not clip.
    small = 0.1 / scale * x.clamp(-1, 1)
    ratio = (op(small) - op(-small)).norm() / (small - (-small)).norm()
    assert float(ratio) == pytest.approx(scale, rel=1e-5)


def test_phase_retrieval_lipschitz_holds_and_is_attained() -> None:
    op = build_operator("phase_retrieval", (1, 6, 7))
    bound = op.lipschitz()
    assert bound == 0.5
    x, x2 = randn((32, 1, 6, 7), 2), randn((32, 1, 6, 7), 3)
    assert bool(((op(x) - op(x2)).flatten(1).norm(dim=1) <= bound * (x - x2).flatten(1).norm(dim=1) + 1e-5).all())
    # Along the ray x01 -> t x01 the magnitude scales with t, so the bound is reached.
    x01 = (x[:1].clamp(-1, 1) + 1) / 2
    near, far = 2 * x01 - 1, 2 * (1.5 * x01) - 1
    assert float((op(far) - op(near)).norm() / (far - near).norm()) == pytest.approx(bound, rel=1e-5)


def test_composite_lipschitz() -> None:
    luma = math.sqrt(sum(w * w for w in BT601_WEIGHTS))
    hdr_on_grey = Compose(build_operator("hdr", (1, 5, 5), scale=2.0), Colorize((3, 5, 5)))
    assert hdr_on_grey.lipschitz() == pytest.approx(2.0 * luma)
    grey_sr = Compose(build_operator("sr", (1, 12, 12), factor=2), Colorize((3, 12, 12)))
    assert grey_sr.lipschitz() == grey_sr.norm()
    # Orthogonal inner rows: the composite's norm is the product of the parts', found without iterating.
    assert grey_sr.norm() == pytest.approx(grey_sr.outer.norm() * luma, rel=1e-6)
    assert grey_sr.estimate_norm() == pytest.approx(grey_sr.norm(), rel=1e-4)
