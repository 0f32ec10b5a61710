"""operators/kronecker.py and the operators built on it: bicubic super-resolution and blur by a separable kernel with a
reflect / replicate border are ``A_rows (x) A_cols`` per channel, and solve ``(s A A^T + t I) u = v`` and ``A^+ y``
exactly by Kronecker eigen-solves. References are dense float64 solves of each operator's own matrix, at real-photo
noise (sigma 1/255 on [0, 1]) and at 0.1, with one scale per item; the shift is tau^2, tau = 2 sigma (tensor units).
Blur by a non-separable kernel stays conjugate gradients, to the caller's ``tol``."""

from __future__ import annotations

import math

import pytest
import torch

from diffrestore.operators import Colorize, Compose, build_operator, motion_blur_kernel
from diffrestore.operators.blur import rank_one_factors

SHAPES = [(3, 12, 10), (1, 9, 13)]
SIGMAS = [1 / 255, 0.1]
SCALES = torch.tensor([0.05, 2.0])  # DAPS's r_t^2, one per item
# Non-separable (s_2 / s_1 = 0.3) and asymmetric, but well conditioned (|K(omega)| >= 0.2), so CG reaches 1e-4 at
# sigma 1/255 within its budget; the hard kernels' CG is measured in test_operators_gram_solve.py.
MILD_5X5 = 0.6 * torch.eye(5)[2][:, None] * torch.eye(5)[2][None, :] + 0.4 * torch.tensor(
    [[0.0, 1, 2, 0, 1], [3, 0.5, 0, 1, 0], [0, 2, 4, 0.3, 0], [1, 0, 0.5, 2, 0], [0, 1, 0, 0, 3]]) / 29.3
# an even-sized, asymmetric rank-1 kernel taller than the 9-row image: exercises centring and the far reflection
OUTER_11X4 = torch.linspace(0.1, 1.0, 11)[:, None] * torch.tensor([0.5, 2.0, 1.0, 0.1])[None, :]
EXACT = {
    "sr-x2": ("sr", {"factor": 2}),
    "sr-x3": ("sr", {"factor": 3}),
    "sr-x2-box": ("sr", {"factor": 2, "kernel": "box"}),
    "sr-x3-box": ("sr", {"factor": 3, "kernel": "box"}),
    "gaussian7-reflect": ("gaussian_blur", {"kernel_size": 7, "sigma": 1.5}),
    "gaussian7-replicate": ("gaussian_blur", {"kernel_size": 7, "sigma": 1.5, "boundary": "replicate"}),
    "outer11x4-reflect": ("kernel_blur", {"kernel": OUTER_11X4}),
}
ITERATIVE = {
    "kernel5-reflect": ("kernel_blur", {"kernel": MILD_5X5}),
    "kernel5-replicate": ("kernel_blur", {"kernel": MILD_5X5, "boundary": "replicate"}),
}


def _dense(name: str, params: dict, shape: tuple[int, int, int]) -> torch.Tensor:
    """A fresh operator's float64 matrix (the one under test stays float32)."""
    op = build_operator(name, shape, **params).to(torch.float64)
    return op(torch.eye(math.prod(shape), dtype=torch.float64).view(-1, *shape)).flatten(1).T


def _dense_solves(a: torch.Tensor, v: torch.Tensor, scales: torch.Tensor, shift: float) -> torch.Tensor:
    eye = torch.eye(a.shape[0], dtype=torch.float64)
    return torch.stack([torch.linalg.solve(float(s) * a @ a.T + shift * eye, vi.double().flatten())
                        for s, vi in zip(scales, v, strict=True)])


def _relative_errors(got: torch.Tensor, want: torch.Tensor) -> list[float]:
    got = got.double().flatten(1)
    return [float((g - w).norm() / w.norm()) for g, w in zip(got, want, strict=True)]


@pytest.mark.parametrize("sigma", SIGMAS, ids=["sigma1/255", "sigma0.1"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", [*EXACT, *ITERATIVE])
def test_gram_solve_matches_the_dense_solve(case: str, shape: tuple[int, int, int], sigma: float) -> None:
    name, params = {**EXACT, **ITERATIVE}[case]
    op = build_operator(name, shape, **params)
    v = torch.randn(2, *op.output_shape, generator=torch.Generator().manual_seed(1))
    shift = (2 * sigma) ** 2
    with torch.no_grad():
        got = op.gram_solve(v, SCALES, shift, tol=1e-6)  # tol: for the CG cases; the exact ones ignore it
    errors = _relative_errors(got, _dense_solves(_dense(name, params, shape), v, SCALES, shift))
    assert max(errors) < 1e-4, errors


def test_separable_kernels_are_found_by_their_singular_values() -> None:
    for size, sigma in ((5, 1.0), (7, 1.5), (61, 3.0)):
        assert build_operator("gaussian_blur", (1, 9, 13), kernel_size=size, sigma=sigma).separable()
    assert build_operator("kernel_blur", (1, 9, 13), kernel=OUTER_11X4).separable()
    for kernel in (MILD_5X5, motion_blur_kernel(61), torch.rand(15, 15, generator=torch.Generator().manual_seed(0))):
        assert not build_operator("kernel_blur", (1, 9, 13), kernel=kernel).separable()
    k_rows, k_cols, ratio = rank_one_factors(OUTER_11X4)
    assert ratio < 1e-7 and torch.allclose(k_rows[:, None] * k_cols[None, :], OUTER_11X4.double(), atol=1e-7)


@pytest.mark.parametrize("case", EXACT)
def test_the_axis_matrices_are_the_operators_own_matrix(case: str) -> None:
    """Per channel A = A_rows (x) A_cols (torch.kron flattens row-major, as the images are): exactly for
    super-resolution, and to the float32 rounding of the kernel (rank 1 up to 1e-8) for blur."""
    name, params = EXACT[case]
    shape = (1, 9, 13)
    a_rows, a_cols = build_operator(name, shape, **params).axis_matrices()
    a = _dense(name, params, shape)
    tolerance = 1e-12 if name == "sr" else 1e-7
    assert torch.allclose(torch.kron(a_rows, a_cols), a, rtol=0, atol=tolerance * float(a.abs().max()))


@pytest.mark.parametrize("case", ["sr-x2", "sr-x3", "gaussian7-reflect", "gaussian7-replicate"])
def test_pinv_is_the_thresholded_dense_pseudo_inverse(case: str) -> None:
    """A^+ y = A^T (A A^T)^+ y with the eigenvalues of A A^T below gram_rcond times the largest dropped."""
    name, params = EXACT[case]
    shape = (3, 12, 10)
    op = build_operator(name, shape, **params)
    y = torch.randn(2, *op.output_shape, generator=torch.Generator().manual_seed(2))
    a = _dense(name, params, shape)
    values, vectors = torch.linalg.eigh(a @ a.T)
    ratios = values / values.max()
    assert float(((ratios - op.gram_rcond).abs() / op.gram_rcond).min()) > 0.05  # no eigenvalue near the cut
    inverse = torch.where(ratios > op.gram_rcond, 1.0 / values, torch.zeros_like(values))
    want = (a.T @ vectors @ torch.diag(inverse) @ vectors.T @ y.double().flatten(1).T).T
    with torch.no_grad():
        errors = _relative_errors(op.pinv(y), want)
    assert max(errors) < 1e-4, errors


def _products(op, run) -> int:
    """How many forward products ``run()`` makes on ``op`` (one per CG step)."""
    calls, forward = [0], op.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return forward(x)

    op.forward = counted
    try:
        run()
    finally:
        del op.forward
    return calls[0]


def test_exact_solves_make_no_operator_product() -> None:
    for name, params in EXACT.values():
        op = build_operator(name, (3, 12, 10), **params)
        v = torch.randn(2, *op.output_shape)
        assert _products(op, lambda: op.gram_solve(v, SCALES, 1e-4)) == 0, name  # noqa: B023 - run at once


def test_the_caller_sets_the_tolerance_and_each_item_stops_on_its_own() -> None:
    op = build_operator("motion_blur", (1, 24, 24), kernel_size=9)
    v = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(3))
    scales, shift = torch.tensor([0.01, 0.25]), 0.05**2  # both converge within the 50-step budget
    with torch.no_grad():
        for tol in (1e-2, 1e-4):
            u = op.gram_solve(v, scales, shift, tol=tol)
            residual = v - (scales.view(-1, 1, 1, 1) * op(op.adjoint(u)) + shift * u)
            assert (residual.flatten(1).norm(dim=1) <= 1.01 * tol * v.flatten(1).norm(dim=1)).all(), tol
        loose = _products(op, lambda: op.gram_solve(v, scales, shift, tol=1e-2))
        default = _products(op, lambda: op.gram_solve(v, scales, shift))
        assert loose < default
        # the easy item (small scale) stops where it stops alone, whatever its batch-mate still needs
        alone = op.gram_solve(v[:1], scales[:1], shift)
        assert torch.allclose(op.gram_solve(v, scales, shift)[:1], alone, rtol=0, atol=1e-6 * float(alone.abs().max()))


def test_near_separable_kernels_precondition_with_their_separable_part() -> None:
    """A random positive kernel (s_2 / s_1 = 0.35) converges in fewer CG steps with the Kronecker solve of its best
    rank-1 part (exact at the border) than with the circular blur's solve; a motion kernel (0.70) keeps the latter."""
    kernel = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    op = build_operator("kernel_blur", (1, 24, 24), kernel=kernel)
    v = torch.randn(1, 1, 24, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        kronecker = _products(op, lambda: op.gram_solve(v, 1.0, 0.1**2))
        op.kronecker_precondition_rtol = 0.0  # force the circulant preconditioner
        circulant = _products(op, lambda: op.gram_solve(v, 1.0, 0.1**2))
    assert kronecker < circulant
    assert build_operator("motion_blur", (1, 24, 24), kernel_size=9).axis_matrices() is None


DEVICES = [pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                            reason="no CUDA device")])]


@pytest.mark.parametrize("case", ["sr-x3", "gaussian7-reflect"])
def test_moves_keep_the_solve(case: str) -> None:
    """The factors are kept in float64 on the CPU and copied to the device and dtype of the measurements: a float64
    operator solves to float64 accuracy (blur: up to its float32 kernel's distance from rank 1), and moving back
    gives float32 again."""
    name, params = EXACT[case]
    shape = (1, 9, 13)
    op = build_operator(name, shape, **params)
    v = torch.randn(2, *op.output_shape, generator=torch.Generator().manual_seed(5))
    want = _dense_solves(_dense(name, params, shape), v, SCALES, (2 / 255) ** 2)
    with torch.no_grad():
        first = op.gram_solve(v, SCALES, (2 / 255) ** 2)
        in_float64 = op.to(torch.float64).gram_solve(v.double(), SCALES.double(), (2 / 255) ** 2)
        again = op.to(torch.float32).gram_solve(v, SCALES, (2 / 255) ** 2)
    assert in_float64.dtype == torch.float64
    assert max(_relative_errors(in_float64, want)) < (1e-10 if name == "sr" else 1e-6)
    assert again.dtype == torch.float32 and torch.equal(again, first)


@pytest.mark.parametrize("device", DEVICES)
def test_device_move_keeps_the_solve(device: str) -> None:
    op = build_operator("gaussian_blur", (3, 12, 10), kernel_size=7, sigma=1.5)
    v = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = op.gram_solve(v, SCALES, 1e-4)
        got = op.to(device).gram_solve(v.to(device), SCALES.to(device), 1e-4)
    assert got.device.type == device and torch.allclose(got.cpu(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("outer", ["sr-x2", "gaussian7-reflect"])
def test_grey_tasks_on_rgb_stay_exact(outer: str) -> None:
    """Compose(outer, Colorize): the inner rows are orthonormal up to scale, so the solve is the outer one's
    Kronecker solve (no CG product) and the pinv is Colorize^+ outer^+."""
    name, params = EXACT[outer]
    grey = build_operator(name, (1, 12, 10), **params)
    op = Compose(grey, Colorize((3, 12, 10)))
    v = torch.randn(2, *op.output_shape, generator=torch.Generator().manual_seed(7))
    basis = torch.eye(360, dtype=torch.float64).view(-1, 3, 12, 10)
    dense_op = Compose(build_operator(name, (1, 12, 10), **params), Colorize((3, 12, 10))).to(torch.float64)
    a = dense_op(basis).flatten(1).T
    with torch.no_grad():
        assert _products(grey, lambda: op.gram_solve(v, SCALES, (2 / 255) ** 2)) == 0
        errors = _relative_errors(op.gram_solve(v, SCALES, (2 / 255) ** 2), _dense_solves(a, v, SCALES, (2 / 255) ** 2))
        assert max(errors) < 1e-4, errors
        y = op(torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(8)))
        assert float((op(op.pinv(y)) - y).norm() / y.norm()) < 1e-2  # blur's pinv drops eigenvalues below 1e-5
