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

``hmc``: the official latent code's momentum variant (LATENT_DISCRETE.md 1.1), v <- m v + sqrt(eta) s +
sqrt(2 (1 - m)) z, x <- x + sqrt(eta) v with the score s = -drift and v ~ N(0, I) at the start of every call.

``r`` is a number or one value per batch item (shape (N,)). ``spread`` s scales every sampler's noise, so each
targets the same mean with covariance s^2 times the target's (the temperature s^2): 1 draws the target itself,
0 its mean (the exact draw) or a descent towards it (Langevin, HMC). DAPS's ``inner_spread``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..operators.base import per_item
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
