"""MCG on sparse-view CT as the official code runs it (Chung, Sim, Ryu, Ye; NeurIPS 2022; arXiv 2206.00941).

The photo form of MCG (mcg.py) is DDPM ancestral sampling with a gradient and a projection. The paper's CT
experiment runs another loop: score-SDE predictor-corrector sampling of a variance-exploding model, with the MCG
gradient confined to the views that were NOT measured and a SART-like step towards the measured ones. Per step
i = 0 .. N-1 on t_i = linspace(1, t_min, N), sigma_i = sigma_min (sigma_max / sigma_min)^(t_i), sigma_N = 0:

    x'      = x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z     (predictor)
    x''     = x' + eps s(x', sigma_i) + sqrt(2 eps) z',  eps = 2 (snr ||z'|| / ||s(x', sigma_i)||)^2  (corrector)
    x0_hat  = x' + sigma_i^2 s(x', sigma_i) = D(x', sigma_i)                                      (Tweedie)
    g       = w grad_{x'} ||FBP(y - A x0_hat)||_2                                  (through the network)
    g      <- FBP_full(Radon_full(g) (1 - M))                             (only the unmeasured views' part)
    x_next  = x'' + lambda_i A^T (y - A x'') / (A^T A 1) - g,   lambda_i linear from 1.0 to 0.6

with the score s(x, sigma) = (D(x, sigma) - x) / sigma^2 of the prior's denoiser D, snr = 0.16, w = 0.1, a full
grid of 180 views at 1 degree and M its measured views. The first state is sigma_max z. Cost per step: two network
calls (predictor, corrector), one backward pass through the network, and A, A^T, FBP, Radon_full, FBP_full.

Where this follows the official code (run_CT_recon.py, controllable_generation.py) rather than the paper's text:
- the norm is of the FBP of the residual, unsquared, not of the sinogram residual;
- the data step is the SART-like (simultaneous) step normalised by A^T A 1 instead of the paper's projection;
- sampling is predictor-corrector (reverse-diffusion predictor, one Langevin corrector step at snr 0.16), and the
  corrector and Tweedie's estimate are evaluated at the predictor's output with the step's sigma_i (as the code
  does: the corrector reuses the step's time t_i);
- the last step still adds the predictor's sigma_min noise and a Langevin step (the code returns x, not x_mean).

Deviations, and why:
- A^T is the exact adjoint (operators/radon.py), not the official scaled, unfiltered FBP back-projection (an
  interpolation-approximate transpose). The data step is invariant to the scale of A^T (it appears over and
  under the fraction), and with the exact transpose the normalisation by A^T A 1 (the row sums of A^T A,
  computed with the same adjoint) bounds the preconditioned Gram operator's norm by 1 (Schur's test), so a step
  with lambda <= 1 never increases the residual ||y - A x||: the guarantee SART rests on.
- The Langevin step size uses each image's own score and noise norms; the code takes the batch means, which
  made one image's result depend on its batch-mates.
- lambda_i = start + (end - start) i / (N - 1), so the schedule ends at 0.6 at any step count; the code's
  i / N ends at 0.6002 for N = 2000 (and at 0.7 for N = 4).
- Measured angles need not lie on the 1-degree grid: the full set is then the grid's angles further than half
  a degree from every measured one, plus the measured angles (``full_view_geometry``).
- No clamp of x0_hat (the code has none); the output is the state, clamped later like every task's output.

The unmeasured-view step is the code's FBP_full(Radon_full(g) (1 - M)). It zeroes the measured columns of g's
full sinogram exactly, but FBP is not a projector: the result still re-projects onto the measured views a little
(tests/solvers/test_mcg_ct.py measures how much), which the data step then corrects.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from ..operators.radon import ParallelBeamCT, view_angles
from .base import Generators, ProgressCallback, randn

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Prior

#: the official code's full scan: 180 views at 1 degree (radon_all)
FULL_VIEWS = 180
#: the official VE-SDE sampler's last time (sampling_eps)
T_MIN = 1e-5


@dataclasses.dataclass(frozen=True)
class CTLoop:
    """The settings of one run of the loop: ``steps`` predictor-corrector pairs, the corrector's ``snr``, the
    MCG ``weight``, the data step's ``lambda_start`` -> ``lambda_end``, ``full_views`` of the full scan."""

    steps: int
    snr: float = 0.16
    weight: float = 0.1
    lambda_start: float = 1.0
    lambda_end: float = 0.6
    full_views: int = FULL_VIEWS
    t_min: float = T_MIN


def ve_sigmas(steps: int, sigma_min: float, sigma_max: float, t_min: float = T_MIN) -> list[float]:
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t on t = linspace(1, t_min, steps), then 0 (the VE-SDE's
    geometric schedule, sampled as the official PC sampler does)."""
    if steps < 1:
        raise UsageError(f"steps must be at least 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise UsageError(f"the prior's noise range must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, "
                         f"{sigma_max}")
    times = [1.0] if steps == 1 else [1.0 + (t_min - 1.0) * i / (steps - 1) for i in range(steps)]
    ratio = math.log(sigma_max / sigma_min)
    return [sigma_min * math.exp(ratio * t) for t in times] + [0.0]


def lambda_schedule(steps: int, start: float, end: float) -> list[float]:
    """The data step's weights: linear from ``start`` (first step) to ``end`` (last step)."""
    if steps == 1:
        return [float(start)]
    return [start + (end - start) * i / (steps - 1) for i in range(steps)]


def full_view_geometry(op: ParallelBeamCT, full_views: int = FULL_VIEWS) -> tuple[ParallelBeamCT, torch.Tensor]:
    """The full scan around ``op``'s views and the mask of its measured ones: ``(full operator, mask)``, mask
    ``(V_full,)`` float32, 1 at measured views. On the uniform grid of ``full_views`` when every measured angle
    lies on it (MCG's 30 of 180); else the grid's angles further than half a grid step from every measured
    angle, then the measured angles."""
    grid = view_angles(full_views)
    step = 180.0 / full_views

    def gap(a: float, b: float) -> float:  # angular distance of two view angles (a view repeats every 180 degrees)
        d = (a - b) % 180.0
        return min(d, 180.0 - d)

    measured = [float(a) for a in op.angles_deg]
    on_grid = [any(gap(a, g) < 1e-6 for a in measured) for g in grid]
    if sum(on_grid) == len(set(round(a % 180.0, 6) for a in measured)):
        angles, mask = grid, [float(m) for m in on_grid]
    else:
        free = [g for g in grid if all(gap(a, g) > step / 2 for a in measured)]
        angles, mask = (*free, *measured), [0.0] * len(free) + [1.0] * len(measured)
    full = ParallelBeamCT(op.image_shape, tuple(angles), detectors=op.detectors).to(op.cos.device)
    return full, torch.tensor(mask, dtype=torch.float32, device=op.cos.device)


class UnmeasuredViews:
    """g -> FBP_full(Radon_full(g) (1 - M)): the part of an image update that the measured views do not see,
    as the official code forms it (``sinogram`` gives the masked full sinogram before the FBP)."""

    def __init__(self, op: ParallelBeamCT, full_views: int = FULL_VIEWS) -> None:
        self.full, mask = full_view_geometry(op, full_views)
        self.keep = 1.0 - mask

    def sinogram(self, g: torch.Tensor) -> torch.Tensor:
        return self.full(g) * self.keep

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        return self.full.fbp(self.sinogram(g))


def check_ct_operator(problem: Problem) -> ParallelBeamCT:
    """The problem's operator, or a UsageError unless it is the parallel-beam CT operator."""
    op = problem.operator
    if getattr(op, "kind", None) != OperatorKind.CT or not isinstance(op, ParallelBeamCT):
        raise UsageError("MCG's CT loop needs the parallel-beam CT operator (the ct task)")
    return op


def score(prior: Prior, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(x, sigma), D(x, sigma)) with s = (D - x) / sigma^2, the denoiser's score (EDM / VE convention)."""
    x0 = prior.denoise(x, sigma).to(torch.float32)
    return (x0 - x) / sigma**2, x0


def per_image_norm(t: torch.Tensor) -> torch.Tensor:
    """||t_n|| for every item n, shaped to broadcast over (N, C, H, W)."""
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def sample(prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
           generator: Generators, progress: ProgressCallback, loop: CTLoop, name: str = "mcg") -> torch.Tensor:
    """The loop of the module doc; runs under no_grad (``Solver.run``), ``y`` on the prior's device."""
    op = check_ct_operator(problem)
    device = torch.device(prior.device)
    sigmas = ve_sigmas(loop.steps, float(prior.sigma_min), float(prior.sigma_max), loop.t_min)
    lambdas = lambda_schedule(loop.steps, loop.lambda_start, loop.lambda_end)
    unmeasured = UnmeasuredViews(op, loop.full_views)
    gram_ones = op.adjoint(op(torch.ones(1, *op.image_shape, device=device)))
    # pixels no ray reads would divide by 0; the data step leaves them alone
    inv_gram_ones = torch.where(gram_ones > 1e-6 * float(gram_ones.max()), 1.0 / gram_ones.clamp_min(1e-12),
                                torch.zeros_like(gram_ones))
    x = sigmas[0] * randn(shape, generator, device)
    for i in range(loop.steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        step_var = s**2 - s_next**2
        x = x + step_var * score(prior, x, s)[0] + math.sqrt(step_var) * randn(shape, generator, device)
        noise = randn(shape, generator, device)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            grad_log_p, x0_hat = score(prior, xg, s)
            norms = per_image_norm(op.fbp(y - op(x0_hat)))
            (g,) = torch.autograd.grad(norms.sum(), xg)
        grad_log_p = grad_log_p.detach()
        eps = 2.0 * (loop.snr * per_image_norm(noise) / per_image_norm(grad_log_p).clamp_min(1e-12)) ** 2
        x = x + eps * grad_log_p + (2.0 * eps).sqrt() * noise
        g = unmeasured(loop.weight * g)
        x = x + lambdas[i] * inv_gram_ones * op.adjoint(y - op(x)) - g
        progress(i + 1, loop.steps, name)
    return x
