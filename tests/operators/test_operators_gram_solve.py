"""``gram_solve``: (s A A^T + t I)^-1 v for every linear operator, against the dense matrix; closed forms where
A A^T is diagonal (or diagonal in Fourier, or a Kronecker product), conjugate gradients elsewhere. Exact Gaussian
posterior draws in DAPS rest on it."""

from __future__ import annotations

import pytest
import torch
from operator_cases import LINEAR_CASES, build_case, case_shape, dense_matrix, needs_rgb

SHAPE = (3, 9, 11)
CASES = [pytest.param(*case.values, id=case.id) for case in LINEAR_CASES]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_gram_solve_matches_the_dense_solve(name: str, params: dict) -> None:
    shape = case_shape(name, params, SHAPE if needs_rgb(name, params) else (1, 9, 11))
    op = build_case(name, params, (1, *shape))
    a = dense_matrix(op, shape)
    v = torch.randn(2, *op.output_shape, generator=torch.Generator().manual_seed(3))
    scale = torch.tensor([0.02, 0.3])  # one per item, as DAPS passes r_t^2 per image
    shift = 0.05**2
    with torch.no_grad():
        got = op.gram_solve(v, scale, shift).double().flatten(1)
    for i in range(2):
        system = scale[i].double() * a @ a.T + shift * torch.eye(a.shape[0], dtype=torch.float64)
        want = torch.linalg.solve(system, v[i].double().flatten())
        # CG stops at a relative residual of 1e-4; the closed forms are exact up to float32 rounding
        assert torch.allclose(got[i], want, rtol=0, atol=2e-3 * float(want.abs().max())), (name, i)


def test_diagonal_gram_operators_need_no_iterations() -> None:
    from diffrestore.operators import build_operator

    for name, params in (("identity", {}), ("inpaint", {"fraction": 0.5}), ("colorize", {}),
                         ("sr", {"factor": 3, "kernel": "box"})):
        assert build_operator(name, SHAPE, **params).gram_diag() is not None, name
    assert build_operator("sr", SHAPE, factor=2).gram_diag() is None  # bicubic: banded, solved by Kronecker


@pytest.mark.parametrize(("name", "params", "scales"), [
    # s_2 / s_1 = 0.35: CG preconditioned by the Kronecker solve of the kernel's best separable approximation
    ("kernel_blur", {"kernel": torch.rand(7, 7, generator=torch.Generator().manual_seed(0))}, (0.01, 0.25, 1.0)),
    # s_2 / s_1 = 0.70: CG preconditioned by the circular blur's solve; at scale 1 the 50-step budget leaves 6e-3
    ("motion_blur", {"kernel_size": 9}, (0.01, 0.25)),
], ids=["kernel_blur-random", "motion_blur"])
def test_non_separable_reflect_blur_converges_with_its_preconditioner(name: str, params: dict,
                                                                       scales: tuple[float, ...]) -> None:
    """Reflect blur by a non-separable kernel has no closed form (a separable one has: test_kronecker.py); CG solves
    it. Late in an annealing (scale r^2 <= 1 against shift tau^2 = 0.05^2: condition number up to 400) the draw's
    data correction s A^T u is exact to 1e-3; early (r = 10) the budget bounds the work and the result stays finite
    (the prior spread of 10 dwarfs it)."""
    from diffrestore.operators import build_operator
    from diffrestore.priors.analytic import operator_matrix

    op = build_operator(name, (1, 24, 24), **params)
    assert not op.separable()
    a = operator_matrix(op, (1, 24, 24))
    v = torch.randn(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    shift = 0.05**2
    with torch.no_grad():
        for scale in scales:
            u = op.gram_solve(v, scale, shift).double().flatten()
            system = scale * a @ a.T + shift * torch.eye(576, dtype=torch.float64)
            exact = torch.linalg.solve(system, v.double().flatten())
            correction, want = scale * a.T @ u, scale * a.T @ exact
            assert float((correction - want).norm() / want.norm()) < 1e-3, scale
        assert torch.isfinite(op.gram_solve(v, 100.0, shift)).all()
