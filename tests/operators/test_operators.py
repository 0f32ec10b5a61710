"""Measurement operators as a package: one list of cases (``operator_cases``) drives every invariant (adjoint,
pinv, shapes, dtype and device moves). Each operator's own behaviour against an independent reference is in
its module's test file (test_blur.py, test_resample.py, test_inpaint.py, test_colour.py, test_nonlinear.py).

References are independent of the code under test: dense matrices and ``torch.linalg.pinv`` in float64.
"""

from __future__ import annotations

import pytest
import torch
from operator_cases import (
    CASES,
    LINEAR_CASES,
    MILD_KERNEL,
    SHAPES,
    VARIANTS,
    build_case,
    case_id,
    case_shape,
    dense_matrix,
    expected_output_shape,
    is_linear,
    pinv_is_exact,
    randn,
)

from diffrestore.operators import OPERATOR_NAMES, LinearOperator


def test_every_operator_name_has_test_cases() -> None:
    names_with_cases = {case.values[0] for case in CASES}
    missing = [name for name in OPERATOR_NAMES if name not in names_with_cases]
    assert not missing, f"add test VARIANTS for: {missing}"
    assert set(VARIANTS) <= set(OPERATOR_NAMES), "VARIANTS names an operator that build_operator does not know"


@pytest.mark.parametrize(("name", "params"), CASES)
def test_linearity_flag_matches_the_case_list(name: str, params: dict) -> None:
    op = build_case(name, params, case_shape(name, params, SHAPES[0]))
    assert op.linear == is_linear(name, params)
    assert isinstance(op, LinearOperator) == op.linear


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), CASES)
def test_output_shape(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    shape = case_shape(name, params, shape)
    op = build_case(name, params, shape)
    y = op(randn(shape, 1))
    assert tuple(y.shape) == expected_output_shape(name, params, shape)
    assert y.dtype == torch.float32
    assert tuple(op.output_shape) == tuple(y.shape[1:])
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), LINEAR_CASES)
def test_adjointness(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    shape = case_shape(name, params, shape)
    op = build_case(name, params, shape)
    x = randn(shape, 2)
    y = randn((shape[0], *op.output_shape), 3)
    lhs = (op(x).double() * y.double()).sum()
    rhs = (x.double() * op.adjoint(y).double()).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-4


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), LINEAR_CASES)
def test_pinv_is_a_right_inverse_on_the_range(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    shape = case_shape(name, params, shape)
    op = build_case(name, params, shape)
    y = op(randn(shape, 4))
    x_hat = op.pinv(y)
    assert x_hat.shape == shape
    error = float((op(x_hat) - y).norm() / y.norm())
    exact = pinv_is_exact(name, params)
    # Exact pinvs must be exact; iterative / spectrum-thresholded ones must still explain 99 % of y.
    assert error < (1e-5 if exact else 1e-2)
    # Moore-Penrose: A^+ A A^+ = A^+ (the pinv adds nothing from the null space).
    if exact:
        assert torch.allclose(op.pinv(op(x_hat)), x_hat, atol=1e-5)


DENSE_PINV_CASES = [
    ("identity", {}),
    ("inpaint", {"fraction": 0.5}),
    ("colorize", {}),
    ("sr", {"factor": 2}),
    ("sr", {"factor": 3, "kernel": "box"}),
    ("kernel_blur", {"kernel": MILD_KERNEL}),
    ("kernel_blur", {"kernel": MILD_KERNEL, "boundary": "circular"}),
    ("kernel_blur", {"kernel": MILD_KERNEL, "boundary": "replicate"}),
    ("compose", {"outer": ("inpaint", {"fraction": 0.5}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("sr", {"factor": 3, "kernel": "box"}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("kernel_blur", {"kernel": MILD_KERNEL}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("colorize", {}), "inner": ("kernel_blur", {"kernel": MILD_KERNEL})}),
]


@pytest.mark.parametrize(
    ("name", "params"), [pytest.param(name, params, id=case_id(name, params)) for name, params in DENSE_PINV_CASES]
)
def test_pinv_matches_the_dense_moore_penrose_inverse(name: str, params: dict) -> None:
    shape = (3, 7, 5)
    op = build_case(name, params, (1, *shape))
    matrix = dense_matrix(op, shape)
    op = op.to(torch.float32)
    y = op(randn((2, *shape), 5))
    expected = (torch.linalg.pinv(matrix) @ y.double().flatten(1).T).T.reshape(2, *shape)
    assert torch.allclose(op.pinv(y).double(), expected, atol=2e-4), float((op.pinv(y).double() - expected).abs().max())


@pytest.mark.parametrize(("name", "params"), CASES)
def test_float64_move_keeps_results(name: str, params: dict) -> None:
    shape = case_shape(name, params, SHAPES[1])
    op = build_case(name, params, shape)
    x = randn(shape, 6)
    y32 = op(x)
    op64 = op.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in op64.buffers() if b.is_floating_point())
    y64 = op64(x.double())
    assert y64.dtype == torch.float64
    assert torch.allclose(y64, y32.double(), atol=1e-4)
    if op.linear:
        assert op64.adjoint(y64).dtype == torch.float64


DEVICES = [
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()), reason="no MPS device"
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "params"), CASES)
def test_device_move_gives_the_cpu_result(name: str, params: dict, device: str) -> None:
    shape = case_shape(name, params, SHAPES[1])
    op = build_case(name, params, shape)
    x = randn(shape, 7)
    expected = op(x)
    cpu_norm = op.estimate_norm() if op.linear else None
    moved = op.to(device)
    assert all(b.device.type == device for b in moved.buffers())
    got = moved(x.to(device))
    assert torch.allclose(got.cpu(), expected, atol=1e-4)
    if moved.linear:
        # The norm estimate runs where the operator lives and finds the same number.
        assert abs(moved.estimate_norm() - cpu_norm) <= 1e-4 * cpu_norm
        assert torch.allclose(moved.adjoint(got).cpu(), op.to("cpu").adjoint(expected), atol=1e-4)
