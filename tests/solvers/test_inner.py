"""DAPS's inner step against the closed form: the target N(x0_hat, r^2 I) x N(y; A x0, tau^2 I) is Gaussian with
covariance C = (I / r^2 + A^T A / tau^2)^-1 and mean C (x0_hat / r^2 + A^T y / tau^2). The exact draw must hit
both (closed-form Gram solves, FFT, and preconditioned CG), and long Langevin chains must converge to the same."""

from __future__ import annotations

import pytest
import torch

from diffrestore.operators import Compose, GaussianNoise, Problem, build_operator
from diffrestore.priors.analytic import operator_matrix
from diffrestore.solvers import inner

R, TAU = 0.3, 0.1
CASES = {
    "inpaint": ("inpaint", {"fraction": 0.5}, (1, 6, 6)),
    "sr-bicubic (CG)": ("sr", {"factor": 2}, (1, 6, 6)),
    "blur-reflect (PCG)": ("gaussian_blur", {"kernel_size": 3, "sigma": 0.8}, (1, 6, 6)),
    "blur-circular (FFT)": ("gaussian_blur", {"kernel_size": 3, "sigma": 0.8, "boundary": "circular"}, (1, 6, 6)),
}


def _operator(case: str):
    name, params, shape = CASES[case]
    return build_operator(name, shape, generator=torch.Generator().manual_seed(1), **params), shape


def _target(op, shape, x0_hat, y, r=R, tau=TAU):
    a = operator_matrix(op, shape)
    d = a.shape[1]
    precision = torch.eye(d, dtype=torch.float64) / r**2 + a.T @ a / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (x0_hat.double().flatten() / r**2 + a.T @ y.double().flatten() / tau**2)
    return mean, cov


def _check(samples, mean, cov, n):
    s = samples.double().flatten(1)
    std = cov.diagonal().sqrt()
    assert float(((s.mean(0) - mean).abs() / std).max()) < 5.0 / n**0.5 * 1.2  # within ~5 MC standard errors
    assert float((torch.cov(s.T) - cov).abs().max()) < 0.08 * float(cov.diagonal().max())


@pytest.mark.parametrize("case", list(CASES))
def test_exact_draw_has_the_target_mean_and_covariance(case: str) -> None:
    op, shape = _operator(case)
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(1, *shape, generator=g) * 0.5
    y = op(torch.randn(1, *shape, generator=g) * 0.5)
    n = 8000
    problem = Problem(op, GaussianNoise(TAU / 2), y.expand(n, *y.shape[1:]))
    samples = inner.exact_draw(problem, problem.y, x0_hat.expand(n, *shape), R, TAU, torch.Generator().manual_seed(1))
    mean, cov = _target(op, shape, x0_hat, y)
    _check(samples, mean, cov, n)


def test_exact_draw_for_a_gray_measurement_of_an_rgb_image_and_per_item_r() -> None:
    op = Compose(build_operator("inpaint", (1, 4, 4), fraction=0.4, generator=torch.Generator().manual_seed(2)),
                 build_operator("colorize", (3, 4, 4)))
    shape = (3, 4, 4)
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(1, *shape, generator=g) * 0.5
    y = op(torch.randn(1, *shape, generator=g) * 0.5)
    n = 20000
    r = torch.tensor([0.2, 0.5]).repeat_interleave(n // 2)  # two halves of the batch with their own r
    problem = Problem(op, GaussianNoise(TAU / 2), y.expand(n, *y.shape[1:]))
    samples = inner.exact_draw(problem, problem.y, x0_hat.expand(n, *shape), r, TAU, torch.Generator().manual_seed(3))
    for half, r_value in ((slice(0, n // 2), 0.2), (slice(n // 2, n), 0.5)):
        mean, cov = _target(op, shape, x0_hat, y, r=r_value)
        _check(samples[half], mean, cov, n // 2)


def test_long_langevin_chains_converge_to_the_exact_draw() -> None:
    """The exact draw is the limit of infinitely many Langevin steps (the paper's inner loop)."""
    op, shape = _operator("sr-bicubic (CG)")
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(1, *shape, generator=g) * 0.5
    y = op(torch.randn(1, *shape, generator=g) * 0.5)
    n = 1000
    problem = Problem(op, GaussianNoise(TAU / 2), y.expand(n, *y.shape[1:]))
    lr = 0.5 * inner.step_cap(R, TAU, op.norm())
    chains = inner.langevin(problem, problem.y, x0_hat.expand(n, *shape), R, TAU, lr, 600,
                            torch.Generator().manual_seed(4))
    mean, cov = _target(op, shape, x0_hat, y)
    s = chains.double().flatten(1)
    # Unadjusted Langevin is biased by O(lr): looser than the exact draw's bound, but the same target.
    std = cov.diagonal().sqrt()
    assert float(((s.mean(0) - mean).abs() / std).max()) < 5.0 / n**0.5 + 0.05
    assert float((s.std(0) / std - 1).abs().max()) < 0.12


@pytest.mark.parametrize("case", ["inpaint", "sr-bicubic (CG)", "blur-circular (FFT)"])
def test_exact_draw_at_spread_zero_is_the_target_mean(case: str) -> None:
    """DAPS's inner_spread 0 (the fast preset's MAP inner step) is the inner target's mean, not a draw."""
    op, shape = _operator(case)
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(1, *shape, generator=g) * 0.5
    y = op(torch.randn(1, *shape, generator=g) * 0.5)
    problem = Problem(op, GaussianNoise(TAU / 2), y)
    mean, cov = _target(op, shape, x0_hat, y)
    x = inner.exact_draw(problem, y, x0_hat, R, TAU, torch.Generator().manual_seed(1), spread=0.0)
    tolerance = 1e-3 if "CG" in case else 1e-5  # a few CG steps solve to ~1e-4 of the data term
    assert float((x.double().flatten() - mean).abs().max()) < tolerance * float(cov.diagonal().max()) ** 0.5 * 10


def test_spread_scales_the_exact_draw_and_langevin_spread_alike() -> None:
    """spread s: the same mean, covariance s^2 times the target's, for the exact draw and for Langevin chains."""
    op, shape = _operator("inpaint")
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(1, *shape, generator=g) * 0.5
    y = op(torch.randn(1, *shape, generator=g) * 0.5)
    mean, cov = _target(op, shape, x0_hat, y)
    spread = 0.5
    n = 8000
    problem = Problem(op, GaussianNoise(TAU / 2), y.expand(n, *y.shape[1:]))
    draws = inner.exact_draw(problem, problem.y, x0_hat.expand(n, *shape), R, TAU, torch.Generator().manual_seed(5),
                             spread=spread)
    _check(draws, mean, spread**2 * cov, n)
    # a small step: unadjusted Langevin's stationary std is too wide by about lr * curvature / 4
    lr = 0.1 * inner.step_cap(R, TAU, op.norm())
    m = n // 8
    chains = inner.langevin(problem, problem.y[:m], x0_hat.expand(m, *shape), R, TAU, lr, 2000,
                            torch.Generator().manual_seed(6), spread=spread)
    s = chains.double().flatten(1)
    std = cov.diagonal().sqrt()
    assert float(((s.mean(0) - mean).abs() / std).max()) < 5.0 / m**0.5 * spread + 0.02
    assert float((s.std(0) / (spread * std) - 1).abs().max()) < 0.1


def _dense_covariance(shape, seed=3):
    """A dense SPD prior covariance C (eigenvalues in [0.02, 0.3]) and v -> C v for image-shaped batches."""
    d = int(torch.tensor(shape).prod())
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    c = q @ torch.diag(torch.linspace(0.02, 0.3, d, dtype=torch.float64)) @ q.T
    return c, lambda v: (v.double().flatten(1) @ c).reshape(v.shape).to(v.dtype)


@pytest.mark.parametrize("case", list(CASES))
def test_tweedie_mean_is_the_gaussian_conditional_mean_under_a_dense_covariance(case: str) -> None:
    """tweedie_mean: the mean of N(x0_hat, C) x N(y; A x0, tau^2 I) for an anisotropic C, x0_hat + C A^T (A C A^T
    + tau^2 I)^-1 (y - A x0_hat). Enough CG steps reach it; its start (no step) is the isotropic sigma^2 gain
    mapped through C, which is not it."""
    op, shape = _operator(case)
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(2, *shape, generator=g) * 0.5
    y = op(torch.randn(2, *shape, generator=g) * 0.5)
    c, cov = _dense_covariance(shape)
    a = operator_matrix(op, shape)
    gain = c @ a.T @ torch.linalg.inv(a @ c @ a.T + TAU**2 * torch.eye(a.shape[0], dtype=torch.float64))
    expected = x0_hat.double().flatten(1) + (y.double().flatten(1) - x0_hat.double().flatten(1) @ a.T) @ gain.T
    problem = Problem(op, GaussianNoise(TAU / 2), y)
    solved = inner.tweedie_mean(problem, y, x0_hat, cov, R, TAU, steps=int(a.shape[0]) + 4)
    error = float((solved.double().flatten(1) - expected).abs().max())
    assert error < 1e-4, error
    start = inner.tweedie_mean(problem, y, x0_hat, cov, R, TAU, steps=0)
    assert float((start.double().flatten(1) - expected).abs().max()) > 1e-2  # the CG steps do the work


def test_tweedie_mean_with_the_isotropic_covariance_is_the_exact_inner_mean() -> None:
    """C = r^2 I: the preconditioner is the exact inverse, so no CG step is needed and the step equals
    exact_draw's spread-0 mean."""
    op, shape = _operator("inpaint")
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(3, *shape, generator=g) * 0.5
    y = op(torch.randn(3, *shape, generator=g) * 0.5)
    problem = Problem(op, GaussianNoise(TAU / 2), y)
    mean = inner.exact_draw(problem, y, x0_hat, R, TAU, torch.Generator().manual_seed(1), spread=0.0)
    for steps in (0, 3):
        step = inner.tweedie_mean(problem, y, x0_hat, lambda v: R * R * v, R, TAU, steps)
        assert torch.allclose(step, mean, atol=1e-5)


def test_lanczos_root_converges_to_the_matrix_square_root() -> None:
    """lanczos_sqrt(C, b) -> C^(1/2) b (the symmetric root), per batch item; 8 steps on a 36 x 36 C with
    condition number 15: measured relative error 2e-4 (1 step 0.34, 4 steps 6e-3)."""
    shape = (1, 6, 6)
    c, cov = _dense_covariance(shape)
    values, vectors = torch.linalg.eigh(c)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    b = torch.randn(3, *shape, generator=torch.Generator().manual_seed(5))
    expected = b.double().flatten(1) @ root

    def error(steps: int) -> float:
        got = inner.lanczos_sqrt(cov, b, steps).double().flatten(1)
        return float((got - expected).norm() / expected.norm())

    assert error(8) < 2e-3 and error(36) < 1e-5
    assert error(1) > 0.1  # one step is only a rescaled b: the test can tell


def _motion_problem(shape, noise_sigma, seed=0):
    """Reflect-border blur by a 9-px motion kernel (no closed form: preconditioned CG) and its measurement."""
    op = build_operator("motion_blur", shape, kernel_size=9)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed)) * 0.5
    noise = GaussianNoise(noise_sigma)
    return op, noise, noise.sample(op(x), torch.Generator().manual_seed(seed + 1))


def test_the_solve_tolerance_keeps_x0_within_the_accuracy_asked_for(monkeypatch) -> None:
    """exact_draw with ``accuracy`` a: x0 within a (rms per pixel) of the exact target mean, per item (r one per
    item, from the data-dominated to the prior-dominated regime). Without the blur's preconditioner CG runs with
    P = tau^2 I <= M, where its estimate of the error's M-norm is a bound, so the accuracy is guaranteed (up to the
    Hestenes-Stiefel estimate, which must not end it early here); and a loose accuracy costs fewer products. The
    budget is lifted: unpreconditioned, the prior-dominated item (r = 3) needs more than the operator's 50 steps."""
    shape = (1, 24, 24)
    op, noise, y = _motion_problem(shape, 0.05)
    monkeypatch.setattr(op, "gram_preconditioner", lambda scale, shift: None)
    monkeypatch.setattr(op, "gram_cg_max_iter", 2000)
    tau = noise.std
    r = torch.tensor([0.05, 0.3, 3.0])
    x0_hat = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2)) * 0.5
    ys = y.expand(3, *y.shape[1:])
    problem = Problem(op, noise, ys)
    products = [0]
    forward = op.forward

    def counted(v: torch.Tensor) -> torch.Tensor:
        products[0] += 1
        return forward(v)

    monkeypatch.setattr(op, "forward", counted)
    spent = []
    for fraction in (0.1, 0.01):
        accuracy = fraction * r
        products[0] = 0
        x0 = inner.exact_draw(problem, ys, x0_hat, r, tau, torch.Generator().manual_seed(3), 0.0, accuracy)
        spent.append(products[0])
        for i in range(3):
            mean, _ = _target(op, shape, x0_hat[i : i + 1], y, r=float(r[i]), tau=tau)
            rms = float((x0[i].double().flatten() - mean).pow(2).mean().sqrt())
            assert rms <= float(accuracy[i]), (fraction, i, rms)
    assert spent[0] < spent[1]


def test_tweedie_mean_with_an_accuracy_keeps_its_preconditioner_within_it(monkeypatch) -> None:
    """tweedie_mean's isotropic preconditioner solves to ``accuracy`` too: with C = r^2 I (the preconditioner is
    the system) the step is the exact inner mean to that accuracy, CG steps or not (the outer residual is then
    below the bound: no step); P = tau^2 I (the blur's preconditioner off) makes the bound hold."""
    shape = (1, 24, 24)
    op, noise, y = _motion_problem(shape, 0.05)
    monkeypatch.setattr(op, "gram_preconditioner", lambda scale, shift: None)
    monkeypatch.setattr(op, "gram_cg_max_iter", 2000)  # unpreconditioned, r = 3 needs more than the budget of 50
    x0_hat = torch.randn(1, *shape, generator=torch.Generator().manual_seed(2)) * 0.5
    problem = Problem(op, noise, y)
    for r in (0.05, 3.0):
        mean, _ = _target(op, shape, x0_hat, y, r=r, tau=noise.std)
        for steps in (0, 2):
            step = inner.tweedie_mean(problem, y, x0_hat, lambda v, r=r: r * r * v, r, noise.std, steps,
                                      0.01 * r)
            assert float((step.double().flatten() - mean).pow(2).mean().sqrt()) <= 0.01 * r


@pytest.mark.parametrize(("noise_sigma", "agreement"), [(1 / 255, 0.95), (0.05, 0.05)])
def test_daps_with_the_solve_accuracy_agrees_with_tight_solves(noise_sigma: float, agreement: float,
                                                               monkeypatch) -> None:
    """DAPS (fast preset, 10 steps) on a reflect motion blur of a 3 x 24 x 24 Gaussian-prior image: solves to
    ``inner.SOLVE_ACCURACY`` min(r_t, sigma_{t+1}) within the operator's budget of 50 CG steps give the result of
    solves 100x tighter without a budget to a fraction of the noise std (measured 0.91 at noise 1/255, 0.005 at
    0.05), and at 1/255 about as close as the budget's 50 steps to a relative residual of 1e-4 that they replace
    (0.89: the early steps, r_t >= 1, reach the budget either way; with c = 0.05 and a budget of 500, 0.46, at up
    to 2.5x the CG steps on photos for no PSNR there: operators/base.py)."""
    from diffrestore.priors.analytic import GaussianPrior
    from diffrestore.solvers import get_solver

    shape = (3, 24, 24)
    prior = GaussianPrior.stationary(shape, length_scale=2.0, std=0.5, jitter=0.01)
    op, noise, _ = _motion_problem(shape, noise_sigma)
    y = noise.sample(op(prior.sample(1, torch.Generator().manual_seed(0))), torch.Generator().manual_seed(1))
    solver = get_solver("daps", "fast", steps=10)

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).pow(2).mean().sqrt()) / noise.std

    def run() -> torch.Tensor:
        return solver.run(prior, Problem(op, noise, y), generator=torch.Generator().manual_seed(2))

    adaptive = run()
    real = inner.solve_accuracy
    monkeypatch.setattr(inner, "solve_accuracy", lambda r, s: real(r, s, inner.SOLVE_ACCURACY / 100))
    monkeypatch.setattr(op, "gram_cg_max_iter", 2000)
    tight = run()
    assert distance(adaptive, tight) < agreement
    if noise_sigma < 0.01:
        monkeypatch.setattr(inner, "solve_accuracy", lambda r, s: None)  # the operator's default tolerance, 1e-4
        monkeypatch.setattr(op, "gram_cg_max_iter", 50)
        assert distance(adaptive, tight) < 1.05 * distance(run(), tight)
