"""DAPS's inner step: a sample of p(x0 | x_t, y) ~ N(x0; x0_hat, r^2 I) p(y | A x0), three ways.

``exact_draw``: with a linear operator and Gaussian noise the target is Gaussian, with precision
I / r^2 + A^T A / tau^2. Its exact sample by perturb-and-solve (Matheron's rule):

    x_prior = x0_hat + r z1,   y_sim = A x_prior + tau z2,   x0 = x_prior + r^2 A^T (r^2 A A^T + tau^2 I)^-1 (y - y_sim)

(x_prior ~ the prior part, y_sim its simulated measurement; conditioning the joint Gaussian of (x0, y) on y moves
x_prior by the Kalman gain). The measurement-space solve is ``operator.gram_solve``: elementwise where A A^T is
diagonal (inpainting, box super-resolution, colorization, identity), by FFT for circular blur, by Kronecker
eigen-solves for bicubic super-resolution and separable blur, by preconditioned conjugate gradients otherwise
(blur by a non-separable kernel with a reflect border), to the accuracy the sampler needs (``solve_tolerance``).
This is the limit of infinitely many Langevin steps, at the cost of about two operator applications (plus the CG
steps).

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

from ..operators.linalg import EnergyTolerance, conjugate_gradient, lanczos, per_item
from .base import Generators, data_gradient, randn

if TYPE_CHECKING:
    from ..operators import Problem


#: c of ``solve_accuracy``, set by measurement. The noise argument alone would allow 0.1 (1 % more variance), but
#: a solve's error is not white: it sits in the few directions CG resolves last, and at photo noise levels those
#: carry detail the later, narrower steps cannot put back. DAPS fast, 20 steps, reflect blur of a photo (61-px
#: motion and random 15-px kernels, 128 and 256 px, noise 1/255, 0.01, 0.05): at 0.05, 19-32 CG steps per
#: annealing step against 27-45 for the former fixed budget (50 steps to a relative residual of 1e-4), PSNR within
#: 0.01 dB of it or above (+0.14 dB at 128 px, motion, 1/255, where solves 100x tighter reach +0.38); at 0.1 it
#: fell up to 0.29 dB below it. But on real inputs (a held-out 256 px crop blurred by the 61-px motion kernel and
#: saved as 8-bit, noise estimated from the file, 0.0039) 0.05 lost 0.42 and 0.54 dB (astronaut, coffee) against
#: that fixed budget; 0.02 came within 0.03 dB of it, 0.01 above it (+0.09, +0.16) at about 3/4 of its CG steps
#: (with the zero-padded preconditioner, operators/blur.py). tests/solvers/test_inner.py checks the value against
#: tight solves.
SOLVE_ACCURACY = 0.01


def solve_accuracy(r: torch.Tensor | float, sigma_next: float,
                   fraction: float = SOLVE_ACCURACY) -> torch.Tensor | float:
    """The rms error per pixel an annealing step's inner solve may leave in x0: ``fraction`` c times min(r_t,
    sigma_{t+1}), per item where r is. The draw is followed by x_{t+1} = x0 + sigma_{t+1} z, and its own spread in
    the poorly measured directions is r_t: an error well below both is lost in them (early, where sigma_{t+1}
    dwarfs the image, the solve stops at once). The last step (sigma_{t+1} = 0) returns x0 itself: there r_t
    alone sets the scale."""
    if sigma_next <= 0.0:
        return fraction * r
    if isinstance(r, torch.Tensor):
        return fraction * r.clamp_max(float(sigma_next))
    return fraction * min(float(r), float(sigma_next))


def solve_tolerance(r: torch.Tensor | float, accuracy: torch.Tensor | float, pixels: int) -> EnergyTolerance:
    """``gram_solve``'s tolerance for an x0 within ``accuracy`` (rms over its ``pixels`` values, a number or one per
    item) of the exact solve's.

    With M = r^2 A A^T + tau^2 I and a solve u with error e = u - M^-1 v, x0 moves by delta = r^2 A^T e, and

        ||e||_M^2 = e^T M e = r^2 ||A^T e||^2 + tau^2 ||e||^2 >= ||delta||^2 / r^2,

    so ||e||_M <= accuracy sqrt(pixels) / r bounds the rms of delta by ``accuracy``, whatever ||A|| and tau. CG
    minimises that M-norm and estimates it on the way (``linalg.EnergyTolerance``): a bound where the
    preconditioner P <= M (no preconditioner: P = tau^2 I), an estimate otherwise, which reads low where P exceeds
    M in directions CG resolves slowly (the circular blur's solve at a reflect border): on the 128-px photo's
    solves it read 0.4-1.3 times the true error, on a 24-px image with a 9-px kernel at r = 3 up to 5x low, hence
    c set end to end (``SOLVE_ACCURACY``). A bound from the residual rho alone, ||delta|| <= r ||rho|| / (2 tau)
    (the gain r^2 s / (r^2 s^2 + tau^2) of a singular value s of A is at most r / (2 tau)), holds for the worst
    direction of rho only: on the 128-px motion blur at noise 1/255 (c = 0.1) it took 578 CG steps per annealing
    step, 13x the former fixed budget, against 16 with the M-norm estimate. Each item gets its own bound (r may
    be one per item)."""
    return EnergyTolerance(accuracy * pixels**0.5 / r)


def exact_draw(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float, tau: float,
               generator: Generators, spread: float = 1.0,
               accuracy: torch.Tensor | float | None = None) -> torch.Tensor:
    """One exact sample of N(x0_hat, r^2 I) x N(y; A x0, tau^2 I) per item (linear A, Gaussian likelihood),
    ``spread`` times as far from the target's mean (both perturbations scaled: the draw is linear in them);
    spread 0 returns the mean itself. ``accuracy``: the rms error per pixel in x0 that an iterative Gram solve may
    leave (``solve_accuracy``; a number or one per item), turned into its tolerance by ``solve_tolerance``;
    None: the operator's default relative tolerance (``gram_cg_tol``)."""
    op = problem.operator
    r2 = r * r  # a number, or one value per item
    x_prior = x0_hat + spread * per_item(r, x0_hat) * randn(x0_hat.shape, generator, x0_hat.device)
    y_sim = op(x_prior) + spread * tau * randn(y.shape, generator, y.device)
    v = y - y_sim
    # ``tol`` only when asked for: an operator from outside this package may predate it
    options = {} if accuracy is None else {"tol": solve_tolerance(r, accuracy, x0_hat[0].numel())}
    return x_prior + per_item(r2, x0_hat) * op.adjoint(op.gram_solve(v, r2, tau**2, **options))


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
                 tau: float, steps: int, root_steps: int, generator: Generators, spread: float = 1.0,
                 accuracy: torch.Tensor | float | None = None) -> torch.Tensor:
    """A draw of N(x0_hat, C) x N(y; A x0, tau^2 I) by perturb-and-solve, as ``exact_draw`` but with the
    anisotropic C: x_prior = x0_hat + C^(1/2) z1 (``root_steps`` Lanczos steps, one product each), then
    ``tweedie_mean`` around x_prior for the perturbed measurement y - tau z2. ``spread`` scales both
    perturbations (0: the mean, no product spent on the root); ``accuracy``: as ``tweedie_mean``'s."""
    if spread == 0.0:
        return tweedie_mean(problem, y, x0_hat, cov, sigma, tau, steps, accuracy)
    z1 = randn(x0_hat.shape, generator, x0_hat.device)
    x_prior = x0_hat + spread * lanczos_sqrt(cov, z1, root_steps)
    y_sim = y - spread * tau * randn(y.shape, generator, y.device)
    return tweedie_mean(problem, y_sim, x_prior, cov, sigma, tau, steps, accuracy)


def lanczos_sqrt(matvec: CovarianceProduct, b: torch.Tensor, steps: int) -> torch.Tensor:
    """C^(1/2) b for a symmetric positive semi-definite C given by products (one per step), per batch item:
    ``steps`` Lanczos steps from b (fully re-orthogonalised: they are few) give C ~ Q T Q^T on the Krylov space,
    and C^(1/2) b ~ ||b|| Q T^(1/2) e_1 (``linalg.Tridiagonal.root_times_start``). Exact once ``steps`` reaches
    the number of distinct eigenvalues."""
    return lanczos(matvec, b, steps, reorthogonalise=True).root_times_start()


def tweedie_mean(problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, cov: CovarianceProduct, sigma: float,
                 tau: float, steps: int, accuracy: torch.Tensor | float | None = None) -> torch.Tensor:
    """The mean of N(x0_hat, C) x N(y; A x0, tau^2 I) for C = ``cov`` (the anisotropic Tweedie covariance):

        x0 = x0_hat + C A^T u,   (A C A^T + tau^2 I) u = y - A x0_hat,

    by conjugate gradients in measurement space, preconditioned by the isotropic system (sigma^2 A A^T +
    tau^2 I)^-1 (``gram_solve``, exact where C = sigma^2 I). The start u_0 is that isotropic solution, so with
    ``steps`` 0 the step is the isotropic Kalman correction mapped through C (one product); each CG step costs
    one more. C A^T u is carried along the iterations (no product at the end). A direction with p^T M p <= 0 (a
    learned denoiser's Jacobian need not be positive definite) stops that item's iteration.
    ``accuracy`` (rms per pixel, as ``exact_draw``'s): where the isotropic solve iterates, it stops at
    ``solve_tolerance(sigma, accuracy)``: for C <= sigma^2 I (a denoiser's Jacobian has eigenvalues in [0, 1] where
    it is exact) ||C A^T e|| <= sigma ||e||_M as there; a residual of the outer iteration already that small
    then gives no step, and the item stops. None: the operator's default tolerance."""
    op = problem.operator
    sigma2, tau2 = sigma * sigma, tau * tau
    options = {} if accuracy is None else {"tol": solve_tolerance(sigma, accuracy, x0_hat[0].numel())}

    def system(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_at_u = cov(op.adjoint(u))
        return op(c_at_u) + tau2 * u, c_at_u

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return op.gram_solve(v, sigma2, tau2, **options)

    b = y - op(x0_hat)
    c_at_u = conjugate_gradient(system, b, max_iter=int(steps), start=precondition(b), precondition=precondition)
    return x0_hat + c_at_u
