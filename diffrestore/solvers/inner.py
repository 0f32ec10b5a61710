"""DAPS's inner step: a sample of p(x0 | x_t, y) ~ N(x0; x0_hat, r^2 I) p(y | A x0), three ways.

``exact_draw``: with a linear operator and Gaussian noise the target is Gaussian, with precision
I / r^2 + A^T A / tau^2. Its exact sample by perturb-and-solve (Matheron's rule):

    x_prior = x0_hat + r z1,   y_sim = A x_prior + tau z2,   x0 = x_prior + r^2 A^T (r^2 A A^T + tau^2 I)^-1 (y - y_sim)

(x_prior ~ the prior part, y_sim its simulated measurement; conditioning the joint Gaussian of (x0, y) on y moves
x_prior by the Kalman gain). The measurement-space solve is ``operator.gram_solve``: elementwise where A A^T is
diagonal (inpainting, box super-resolution, colorization, identity), by FFT for circular blur, by a few
preconditioned conjugate-gradient steps otherwise. This is the limit of infinitely many Langevin steps, at the
cost of about two operator applications (plus the CG steps).

``langevin``: the paper's M steps x <- x - eta ((x - x0_hat) / r^2 + grad ||y - A x||^2 / (2 tau^2)) + sqrt(2 eta) z,
for nonlinear operators and Poisson noise (weighted residuals), step capped for stability.

``hmc``: the momentum variant of the official LatentDAPS code, v <- m v + sqrt(eta) s +
sqrt(2 (1 - m)) z, x <- x + sqrt(eta) v with the score s = -drift and v ~ N(0, I) at the start of every call.

``tweedie_mean`` / ``tweedie_draw``: the same target with an anisotropic prior part N(x0_hat, C), C given by its
products (DAPS's ``r_t="tweedie"``: C = sigma^2 J, the denoiser's Jacobian): the mean by preconditioned CG in
measurement space, the draw by perturb-and-solve with C^(1/2) z from a few Lanczos steps (``lanczos_sqrt``).

``r`` is a number or one value per batch item (shape (N,)). ``spread`` s scales every sampler's noise, so each
targets the same mean with covariance s^2 times the target's (the temperature s^2): 1 draws the target itself,
0 its mean (the exact draw) or a descent towards it (Langevin, HMC). DAPS's ``inner_spread``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..operators.linalg import conjugate_gradient, lanczos, per_item
from .base import Generators, data_gradient, randn

if TYPE_CHECKING:
    from ..operators import Problem


def exact_draw(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float, tau: float,
               generator: Generators, spread: float = 1.0) -> torch.Tensor:
    """One exact sample of N(x0_hat, r^2 I) x N(y; A x0, tau^2 I) per item (linear A, Gaussian likelihood),
    ``spread`` times as far from the target's mean (both perturbations scaled: the draw is linear in them);
    spread 0 returns the mean itself."""
    op = problem.operator
    r2 = r * r  # a number, or one value per item
    x_prior = x0_hat + spread * per_item(r, x0_hat) * randn(x0_hat.shape, generator, x0_hat.device)
    y_sim = op(x_prior) + spread * tau * randn(y.shape, generator, y.device)
    return x_prior + per_item(r2, x0_hat) * op.adjoint(op.gram_solve(y - y_sim, r2, tau**2))


#: x -> the data term's gradient at x (e.g. LatentDAPS's, through the decoder); None: ``data_gradient``
DataTerm = Callable[[torch.Tensor], torch.Tensor]


def _drift(problem: Problem, y: torch.Tensor, x: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float,
           tau: float, data_term: DataTerm | None) -> torch.Tensor:
    """Minus the score of the inner target: (x - x0_hat) / r^2 + A'(x)^T (A(x) - y) / tau^2 (weighted for Poisson),
    or (x - x0_hat) / r^2 + data_term(x)."""
    data = data_gradient(problem, y, x, tau) if data_term is None else data_term(x)
    return (x - x0_hat) / per_item(r, x) ** 2 + data


def step_cap(r: torch.Tensor | float, tau: float, operator_bound: float) -> float:
    """The largest stable Langevin step: 1 / curvature, curvature <= 1 / r^2 + L^2 / tau^2 (L bounds A's slope)."""
    r_min = float(r.min()) if isinstance(r, torch.Tensor) else float(r)
    return 1.0 / (1.0 / r_min**2 + operator_bound**2 / tau**2)


def langevin(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float, tau: float,
             lr: float, steps: int, generator: Generators, data_term: DataTerm | None = None,
             spread: float = 1.0) -> torch.Tensor:
    """``steps`` unadjusted Langevin steps from x0_hat with step ``lr`` (already capped by the caller)."""
    x = x0_hat
    noise_scale = spread * math.sqrt(2.0 * lr)
    for _ in range(int(steps)):
        drift = _drift(problem, y, x, x0_hat, r, tau, data_term)
        x = x - lr * drift + noise_scale * randn(x.shape, generator, x.device)
    return x


def hmc(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float, tau: float, lr: float,
        steps: int, momentum: float, generator: Generators, data_term: DataTerm | None = None,
        spread: float = 1.0) -> torch.Tensor:
    """``steps`` momentum (underdamped Langevin) steps as the official LatentDAPS code runs them."""
    x = x0_hat
    v = spread * randn(x.shape, generator, x.device)
    root_lr, kick = math.sqrt(lr), spread * math.sqrt(2.0 * (1.0 - momentum))
    for _ in range(int(steps)):
        score = -_drift(problem, y, x, x0_hat, r, tau, data_term)
        v = momentum * v + root_lr * score + kick * randn(x.shape, generator, x.device)
        x = x + root_lr * v
    return x


#: v -> Cov[x0 | x_t] v, the prior's own posterior covariance applied to an image-shaped v (Tweedie: sigma^2 J v)
CovarianceProduct = Callable[[torch.Tensor], torch.Tensor]


def tweedie_draw(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, cov: CovarianceProduct, sigma: float,
                 tau: float, steps: int, root_steps: int, generator: Generators, spread: float = 1.0) -> torch.Tensor:
    """A draw of N(x0_hat, C) x N(y; A x0, tau^2 I) by perturb-and-solve, as ``exact_draw`` but with the
    anisotropic C: x_prior = x0_hat + C^(1/2) z1 (``root_steps`` Lanczos steps, one product each), then
    ``tweedie_mean`` around x_prior for the perturbed measurement y - tau z2. ``spread`` scales both
    perturbations (0: the mean, no product spent on the root)."""
    if spread == 0.0:
        return tweedie_mean(problem, y, x0_hat, cov, sigma, tau, steps)
    z1 = randn(x0_hat.shape, generator, x0_hat.device)
    x_prior = x0_hat + spread * lanczos_sqrt(cov, z1, root_steps)
    y_sim = y - spread * tau * randn(y.shape, generator, y.device)
    return tweedie_mean(problem, y_sim, x_prior, cov, sigma, tau, steps)


def lanczos_sqrt(matvec: CovarianceProduct, b: torch.Tensor, steps: int) -> torch.Tensor:
    """C^(1/2) b for a symmetric positive semi-definite C given by products (one per step), per batch item:
    ``steps`` Lanczos steps from b (fully re-orthogonalised: they are few) give C ~ Q T Q^T on the Krylov space,
    and C^(1/2) b ~ ||b|| Q T^(1/2) e_1 (``linalg.Tridiagonal.root_times_start``). Exact once ``steps`` reaches
    the number of distinct eigenvalues."""
    return lanczos(matvec, b, steps, reorthogonalise=True).root_times_start()


def tweedie_mean(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, cov: CovarianceProduct, sigma: float,
                 tau: float, steps: int) -> torch.Tensor:
    """The mean of N(x0_hat, C) x N(y; A x0, tau^2 I) for C = ``cov`` (the anisotropic Tweedie covariance):

        x0 = x0_hat + C A^T u,   (A C A^T + tau^2 I) u = y - A x0_hat,

    by conjugate gradients in measurement space, preconditioned by the isotropic system (sigma^2 A A^T +
    tau^2 I)^-1 (``gram_solve``, exact where C = sigma^2 I). The start u_0 is that isotropic solution, so with
    ``steps`` 0 the step is the isotropic Kalman correction mapped through C (one product); each CG step costs
    one more. C A^T u is carried along the iterations (no product at the end). A direction with p^T M p <= 0 (a
    learned denoiser's Jacobian need not be positive definite) stops that item's iteration."""
    op = problem.operator
    sigma2, tau2 = sigma * sigma, tau * tau

    def system(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_at_u = cov(op.adjoint(u))
        return op(c_at_u) + tau2 * u, c_at_u

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return op.gram_solve(v, sigma2, tau2)

    b = y - op(x0_hat)
    c_at_u = conjugate_gradient(system, b, max_iter=int(steps), start=precondition(b), precondition=precondition)
    return x0_hat + c_at_u
