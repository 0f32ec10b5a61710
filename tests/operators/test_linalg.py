"""operators/linalg.py, the one conjugate-gradient solver and the one Lanczos iteration behind ``gram_solve``,
``cg_pinv``, ``estimate_norm`` and DAPS's Tweedie step, against dense linear algebra; and no float64 on their
run-time paths (some accelerators have none)."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.operators.linalg import EnergyTolerance, conjugate_gradient, lanczos
from diffrestore.solvers import inner
from diffrestore.solvers.dwgf import kde_score

D = 12


def _spd(seed: int, condition: float) -> torch.Tensor:
    """A symmetric positive definite D x D matrix with eigenvalues from 1 to ``condition``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    return q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(condition)), D)) @ q.T


def _batched(matrices: list[torch.Tensor]):
    stack = torch.stack(matrices)
    return lambda v: torch.einsum("nij,nj->ni", stack, v)


def test_cg_solves_each_item_and_an_items_result_does_not_depend_on_its_batch() -> None:
    easy, hard = _spd(0, 3.0), _spd(1, 300.0)
    b = torch.randn(2, D, generator=torch.Generator().manual_seed(2))
    both = conjugate_gradient(_batched([easy, hard]), b, max_iter=50, tol=1e-5)
    for i, m in enumerate((easy, hard)):
        assert torch.allclose(both[i], torch.linalg.solve(m, b[i]), rtol=1e-3, atol=1e-4)
    alone = conjugate_gradient(_batched([easy]), b[:1], max_iter=50, tol=1e-5)
    assert torch.equal(both[0], alone[0])  # the easy item stopped where it stops alone


def _counted(matvec):
    calls = [0]

    def counted(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return matvec(v)

    return counted, calls


def test_cg_takes_a_tolerance_per_item_and_each_item_stops_where_it_stops_alone() -> None:
    m = _spd(8, 300.0)
    b = torch.randn(2, D, generator=torch.Generator().manual_seed(9))
    tols = torch.tensor([1e-1, 1e-5])
    both = conjugate_gradient(_batched([m, m]), b, max_iter=50, tol=tols)
    residuals = (b - both @ m.T).norm(dim=1)
    assert (residuals <= tols * b.norm(dim=1) * 1.01).all()
    loose, loose_calls = _counted(_batched([m]))
    alone = conjugate_gradient(loose, b[:1], max_iter=50, tol=1e-1)
    assert torch.equal(both[0], alone[0])
    tight, tight_calls = _counted(_batched([m]))
    conjugate_gradient(tight, b[1:], max_iter=50, tol=1e-5)
    assert loose_calls[0] < tight_calls[0]


@pytest.mark.parametrize("delay", [10, 0])
def test_cg_energy_tolerance_bounds_the_error_in_the_systems_norm(delay: int) -> None:
    """EnergyTolerance: ||u - M^-1 b||_M at most the bound, per item. With P = lambda_min I (P <= M) the estimate
    sqrt(r^T P^-1 r) bounds the error from above; the Hestenes-Stiefel sum (delay 10) stops no later and, on a
    system CG does not stall on, within the bound too."""
    d = 60
    g = torch.Generator().manual_seed(10)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    m = q @ torch.diag(torch.logspace(-2, 1, d)) @ q.T
    b = torch.randn(3, d, generator=g)
    exact = torch.linalg.solve(m, b.T).T
    initial = torch.einsum("ni,ij,nj->n", exact, m, exact).sqrt()  # ||M^-1 b||_M: the error of u = 0
    bounds = initial * torch.tensor([0.3, 0.03, 0.003])
    def product(v: torch.Tensor) -> torch.Tensor:  # row by row: an item's product does not depend on the batch
        return torch.stack([m @ row for row in v])

    counted, calls = _counted(product)
    u = conjugate_gradient(counted, b, max_iter=500, tol=EnergyTolerance(bounds, delay),
                           precondition=lambda r: r / 1e-2)
    error = u - exact
    assert (torch.einsum("ni,ij,nj->n", error, m, error).sqrt() <= bounds).all()
    for i in range(3):  # each item alone, with its own bound: the same result
        alone = conjugate_gradient(product, b[i : i + 1], max_iter=500,
                                   tol=EnergyTolerance(bounds[i : i + 1], delay), precondition=lambda r: r / 1e-2)
        assert torch.equal(alone[0], u[i])
    assert calls[0] < 500


def test_cg_carries_a_linear_image_of_the_solution_and_starts_anywhere() -> None:
    """matvec giving (M p, L p): the result is L u without another product (the Tweedie step's C A^T u)."""
    m, lift = _spd(3, 20.0), torch.randn(5, D, generator=torch.Generator().manual_seed(4))
    b = torch.randn(1, D, generator=torch.Generator().manual_seed(5))
    calls = []

    def with_image(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return p @ m.T, p @ lift.T

    got = conjugate_gradient(with_image, b, max_iter=D + 4, start=torch.ones(1, D))
    assert torch.allclose(got[0], lift @ torch.linalg.solve(m, b[0]), rtol=1e-3, atol=1e-4)
    assert len(calls) <= D + 5  # the start's product and one per step


def test_cg_stops_an_item_at_a_direction_of_negative_curvature() -> None:
    indefinite = torch.diag(torch.tensor([1.0, -1.0] * (D // 2)))
    out = conjugate_gradient(_batched([indefinite]), torch.ones(1, D), max_iter=10)
    assert torch.isfinite(out).all()


def test_lanczos_finds_the_top_eigenvalue_and_the_square_root() -> None:
    m = _spd(6, 50.0)
    b = torch.randn(2, D, generator=torch.Generator().manual_seed(7))
    projection = lanczos(_batched([m, m]), b, D, reorthogonalise=True)
    assert torch.allclose(projection.top_eigenvalue(), torch.full((2,), 50.0), rtol=1e-4)
    values, vectors = torch.linalg.eigh(m)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    assert torch.allclose(projection.root_times_start(), b @ root, rtol=1e-3, atol=1e-4)
    short = lanczos(_batched([m]), b[:1], 3)
    assert short.alphas.shape == (1, 3) and short.basis is None


class NoFloat64(TorchFunctionMode):
    """Fails on any torch call that makes a float64 tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, tuple | list) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64:
                raise AssertionError(f"{getattr(func, '__name__', func)} made a float64 tensor")
        return out


RUN_TIME_CASES = {
    "gaussian_blur": {"kernel_size": 5, "sigma": 1.0},  # separable: Kronecker eigen-solves
    "sr": {"factor": 2},  # bicubic: Kronecker eigen-solves
    "motion_blur": {"kernel_size": 5},  # CG, circulant preconditioner
    "kernel_blur": {"kernel": torch.rand(4, 5, generator=torch.Generator().manual_seed(1))},  # CG, rank-1 Kronecker
}


@pytest.mark.parametrize("name", sorted(RUN_TIME_CASES))
def test_the_run_time_linear_algebra_stays_in_float32(name: str) -> None:
    """CG (gram_solve, cg_pinv, the Tweedie mean), Lanczos (the norm, the Tweedie root), the Kronecker solves and
    DWGF's kernel score make no float64 tensor: MPS has none. The first solve is set-up: it factorises the Kronecker
    factors once per operator in float64 on the CPU; after it nothing does."""
    op = build_operator(name, (1, 8, 8), **RUN_TIME_CASES[name])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g)
    y = op(x)
    problem = Problem(op, GaussianNoise(0.025), y)
    scale = torch.tensor([0.1, 1.0])
    with torch.no_grad():
        op.gram_solve(y, scale, 0.05**2)  # set-up
        op.pinv(y)
    with NoFloat64(), torch.no_grad():
        op.gram_solve(y, scale, 0.05**2)
        op.gram_solve(y, scale, 0.05**2, tol=1e-2)
        op.gram_solve(y, scale, 0.05**2, tol=torch.tensor([1e-2, 1e-3]))
        inner.exact_draw(problem, y, x, scale.sqrt(), 0.05, g, 0.0, inner.solve_accuracy(scale.sqrt(), 0.1))
        op.pinv(y)
        op.cg_pinv(y)
        op.estimate_norm()
        inner.tweedie_draw(problem, y, x, lambda v: 0.25 * v, 0.5, 0.05, 2, 3, g)
        inner.tweedie_draw(problem, y, x, lambda v: 0.25 * v, 0.5, 0.05, 2, 3, g, accuracy=0.01)
        kde_score(torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 2, 2, 2, generator=g), 0.9, 0.01)
