"""DAPS: Decoupled Annealing Posterior Sampling (Zhang, Chu, Berner, Zheng, Bouman, Yue, Anandkumar;
CVPR 2025; arXiv 2407.01521).

Anneal sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min (EDM polynomial schedule, rho = 7), sigma_N = 0, and
at each annealing step t decouple the chain from the previous state:

    x0_hat  = probability-flow ODE from (x_t, sigma_t) down to 0, K Euler steps of dx/ds = (x - D(x, s)) / s on a
              poly-7 grid sigma_t -> 0.01 -> 0 (K network calls; K = 1 is the plain denoiser D(x_t, sigma_t))
    x0      : M Langevin steps from x0_hat on
              log p(x0 | x_t, y) ~ -||x0 - x0_hat||^2 / (2 r_t^2) - ||y - A(x0)||^2 / (2 tau^2)
              x0 <- x0 - eta_t ((x0 - x0_hat) / r_t^2 + A'(x0)^T (A(x0) - y) / tau^2) + sqrt(2 eta_t) z
    x_{t+1} = x0 + sigma_{t+1} z                                   (re-noise; the last step returns x0 itself)

with r_t = sigma_t in the paper and the official code (our ``r_t="sigma"``), eta_t decaying linearly from lr to
lr_min_ratio * lr over the annealing.
Linear operators use the adjoint for A'^T (exact, no autograd); nonlinear ones (phase retrieval, HDR) autograd.
Langevin steps cost no network call.

Exact inner draws (``inner="exact"``, or ``"auto"``: exact where it applies): with a linear operator and Gaussian
noise the inner target is Gaussian, and solvers/inner.py draws its exact sample by perturb-and-solve (the limit of
infinitely many Langevin steps, at the cost of about two operator applications; CG steps where A A^T has no closed
form). Nonlinear operators and Poisson noise keep Langevin; ``inner="hmc"`` runs the official latent code's momentum
steps.

The inner mean (DEVIATION in the fast preset, ``inner_spread``; the paper preset draws). Where the inner target is
Gaussian the fast preset takes its mean instead of a sample, x0 = argmin ||x0 - x0_hat||^2 / r_t^2 +
||y - A x0||^2 / tau^2, and keeps r_t = sigma_t: the re-noising x_{t+1} = x0 + sigma_{t+1} z is then the only
randomness, and the next denoiser call sees exactly the noise level it is told. A draw adds white noise of std
r_t where the data says nothing, on top of sigma_{t+1}, which the denoiser does not expect and which survives to
the output. Measured (docs/benchmarks.md, the default prior's photo benchmark, one sample): +0.19 to +2.02 dB
over the best draw (r_t blend 0.5) on the five tasks, +0.62 to +2.18 over the paper's Langevin loop, best at
r_t = sigma_t of the blends 0, 0.1, 0.25, 0.5, 0.75; on the digits fixture SR x2 +11.9 dB over bicubic against
+9.9 with Langevin (inpainting +3.5 against +3.9). The price is width: on the exactness benchmark the samples'
std is 0.64-0.74 of the posterior's (1.0-1.1 when drawn), and on photos the 90 % intervals of ``-n N`` cover
far less than 90 %. So the mean is for one sample: a run of several (``num_samples`` > 1, the CLI's ``-n N``)
draws every inner step (``inner_spread`` None resolves to 1: Langevin at r_t = sigma_t), and sample 1 of ``-n 4``
is not ``-n 1``'s (docs/benchmarks.md, "DAPS's inner step for -n N"; ``inner_spread=0`` keeps the mean). With
the mean and r_t = sigma_t the step is DiffPIR's data proximal step (Zhu et al., CVPR 2023) with lambda = 1 and
fresh noise (zeta = 1) on DAPS's annealing. Langevin and HMC (nonlinear operators, Poisson noise) keep the draw:
their mean-seeking variant is unmeasured there.

r_t (an option; the paper and the fast preset keep r_t = sigma_t). The paper's r_t = sigma_t is far wider
than the true spread of p(x0 | x_t) at small sigma: for photos the denoiser's rms error at sigma 0.4 is about 0.2
sigma. With r_t = sigma_t the exact draw loses 0.6-1.3 dB on photos against 50 Langevin steps, which never reach
their target where the data says nothing and so act as a smaller r_t. ``r_t="mmse"`` uses the prior's measured
average posterior std instead (priors/posterior_rms.py: the denoiser's rms error at sigma_t, measured once on
clean training images and stored with the model; moment matching of DAPS's isotropic Gaussian, at no network
call), blended with sigma_t as r_t = sigma_t^(1 - b) mmse(sigma_t)^b, ``r_t_blend`` b. b = 1 over-trusts the
prior where the measurement is noisy (denoising -2.5 dB) because an isotropic Gaussian with the average variance
pins the smooth directions, whose true variance is near sigma_t^2; b = 0.5 was best of 0, 0.25, 0.5, 0.75, 1 on
the default prior's photo benchmark (above the paper's Langevin loop on all five tasks) and puts the exactness
benchmark's std ratios in [1.00, 1.10]. It is a property of the network, not of DAPS: on the digits fixture the
same rule loses to the Langevin loop (inpainting +2.1 against +3.9 dB over biharmonic): the exact draw puts white
noise of std r_t into the pixels the data does not see, which a 16 x 16 digit's flat background shows and a
photo's texture hides. So a model folder recommends it (config.json "recommended": {"daps_r_t_blend": b} beside
its table; the shipped default prior does, b = 0.5, measured for draws), and ``r_t="auto"`` follows that
recommendation (else sigma_t). With the inner mean (the fast preset) no blend beat r_t = sigma_t.
``inner="langevin", r_t="sigma"`` with the paper preset is the paper's algorithm exactly.

The Tweedie covariance (``r_t="tweedie"``; an option, EXTENSION beyond the paper). DAPS's isotropic N(x0_hat,
r_t^2 I) is an approximation of p(x0 | x_t); Tweedie's second-order identity gives its covariance, Cov[x0 | x_t] =
sigma_t^2 J with J = dD/dx, and for a Gaussian prior N(D, sigma_t^2 J) is p(x0 | x_t) exactly. With it the inner
target N(x0_hat, sigma_t^2 J) x N(y; A x0, tau^2 I) is solved by conjugate gradients in measurement space, one
Jacobian-vector product (a finite difference: one network call) per step, preconditioned by the isotropic system
(``inner.tweedie_mean``, ``tweedie_steps`` CG steps after the start); its draw (``inner_spread`` 1) perturbs by
(sigma_t^2 J)^(1/2) z from ``tweedie_root_steps`` Lanczos steps (``inner.tweedie_draw``). The data's correction then
reaches unobserved pixels through J at once, instead of through the next denoiser call only: on the exactness
benchmark the drawn variant is exact (mean error 0.014 / 0.013 / 0.017 against the Monte-Carlo floor 0.011 /
0.012 / 0.017, std ratio 0.996 / 1.005 / 0.997 on inpainting / SR x2 / blur, where the isotropic draw leaves
inpainting 13 % off), at 1 + 1 + tweedie_steps (+ tweedie_root_steps when drawn) calls per annealing step. This is
the covariance TMPD (Boys et al., "Tweedie Moment Projected Diffusions for Inverse Problems", 2023) projects its
guidance with (Pi-GDM keeps r_t^2 I there); here it is DAPS's own decoupled step. On photos it moves one sample
little (random inpainting +0.1 dB at 2x the calls, docs/benchmarks.md), so the presets keep r_t = sigma_t.

Paper settings (``paper`` preset, DAPS-1K): 200 annealing steps, sigma 100 -> 0.1, 5 Euler steps (1000 calls),
100 Langevin steps, lr 1e-4 (super-resolution, gaussian blur, random inpainting), 5e-5 (box inpainting, motion
blur, phase retrieval), 2e-5 (HDR), lr_min_ratio 0.01.

``fast`` preset: 100 annealing steps x 1 denoiser call (100 calls), r_t = sigma_t, the inner target's mean where
it is Gaussian and one sample is asked for (above; else 50 Langevin steps drawing it), sigma_min 0.01. On the
exactness benchmark annealing steps matter more than ODE steps for the same calls (inpainting mean error:
25 x 4 -> 0.19, 50 x 2 -> 0.14, 100 x 1 -> 0.10), and Langevin steps beyond 50 change little; see
docs/benchmarks.md. The last annealing step returns the inner step around x0_hat with r = sigma_min; drawn at the
paper's 0.1 (0.05 on the [0, 1] scale) that isotropic spread is visible noise on top of the restored image
(DAPS's Gaussian approximation of p(x0 | x_t) is far wider than the true one at small sigma), which costs
1.0-1.5 dB of PSNR on photos with the default prior (docs/default_prior.md). The fast preset therefore ends at
sigma 0.01; the paper preset keeps the paper's 0.1.

CT (``OperatorKind.CT``; no paper settings exist). Sparse-view CT is linear with a Gaussian likelihood (photon
noise too, tasks/medical.py), so the fast preset's inner step is the exact mean, a CG Gram solve. Those solves are
the cost: in the middle of the annealing (r_t ~ 0.05-1, r_t^2 ||A||^2 / tau^2 up to ~1e5) they run to the CT
operator's 150-step CG budget, so the fast preset anneals over ``ct_steps`` = 20 steps on CT instead of 100
(``steps_for``; ``--steps`` sets both). Measured on training phantoms (docs/ct.md, "Diffusion methods on CT"):
20 steps 44.01 dB, 40 steps 44.43, TV at its best weight 43.87; on held-out phantoms 2-4 dB above TV.

MRI (``OperatorKind.MRI``). The DAPS paper's CS-MRI runs are InverseBench's (its DAPS code and configs:
algo/daps.py, configs/algorithm/daps.yaml): 200 annealing steps sigma 100 -> 0.1 (poly-7), 5 Euler ODE steps
each (1000 calls), 100 Langevin steps with lr 1e-4 decaying linearly to 1 %, tau 0.01, on noiseless k-space
(sigma_noise 0). Our ``paper`` preset is exactly that on an MRI problem: lr 1e-4 from the table above, tau 0.01
(the noiseless fallback; a noisy measurement gets tau = its noise std and the lr scaled with it, as for every
task), Langevin inner steps (the default ``inner="langevin"``), sigma_max clipped to the
prior's range. How the exact inner step relates: MultiCoilMRI is linear with Gaussian noise, so the inner target
N(x0_hat, r_t^2 I) x N(y; A x0, tau^2 I) is Gaussian and one Gram solve (exact, not iterated, for line masks:
operators/mri.py) gives its mean or a draw. The paper's 100 Langevin steps at lr 1e-4 (the cap
1 / (1 / r_t^2 + 1 / tau^2) is ~1e-4 at tau 0.01) converge along sampled k-space (curvature ~1 / tau^2: each
step goes the whole way) but barely move along unsampled k-space (curvature 1 / r_t^2: 100 steps go
1e-2 / r_t^2 of the way, with noise of std at most sqrt(2 lr 100) = 0.14), so they land near the exact target's
MEAN there, not on its draw (spread r_t). The ``fast`` preset takes that mean in one solve; it is the general
fast preset, measured against variants on training phantoms (docs/benchmarks.md, "Compressed-sensing MRI").

Deviations:
- tau. The official configs use tau = 0.01 for measurement noise 0.05, a tuning choice that over-weights the data;
  the exact likelihood has tau = the noise std in tensor units, our default (``tau=None``; noiseless problems fall
  back to 0.01). The paper's lr was tuned together with tau = 0.01, so the lr is scaled by (tau / 0.01)^2
  (``lr_reference_tau``), which keeps the data term's step lr / tau^2 as in the paper; without it the Langevin
  chain barely moves at tau = 0.05 (x2 super-resolution mean error 0.54 instead of 0.04). tau=0.01 reproduces the
  paper and the legacy official code (loss / (2 tau^2)); the current official main branch differentiates
  ||y - A||^2 / tau^2, i.e. doubles the data term (its 0.01 is our 0.01 / sqrt(2)).
- the Langevin step is capped at 1 / (1 / r_t^2 + L^2 / tau^2), L = max(1, the operator's norm or Jacobian bound)
  (beyond it the chain oscillates or diverges); at the official settings the cap is 0.99e-4 against lr 1e-4.
- the annealing schedule is clipped to the prior's sigma range.
Known limit (measured, docs/benchmarks.md): with r_t = sigma_t isotropic, a Langevin step moves unobserved pixels
only through x0_hat, so on random inpainting of a smooth Gaussian prior the sample mean stays ~6 % shrunk towards
the prior mean (relative error 0.13 with the paper preset, 0.03 on super-resolution and blur).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from . import inner
from .annealing import (
    R_T_RULES,
    Annealing,
    AnnealingConfig,
    decayed_lr,
    ode_x0,
    posterior_rms_of,
    recommended_blend,
    reference_scaled_lr,
)
from .base import Generators, ProgressCallback, Solver, SolverConfig, by_kind, likelihood_std, randn, with_ct_steps
from .rules import Rule, integer, non_negative, one_of

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Prior

#: the official per-task Langevin learning rates (box inpainting: the missing pixels fill one rectangle; random
#: masks, super-resolution, gaussian and file-kernel blur, denoising and colorization get the default)
LR_BY_KIND: dict[OperatorKind, float] = {
    OperatorKind.HDR: 2e-5,
    OperatorKind.PHASE_RETRIEVAL: 5e-5,
    OperatorKind.MOTION_BLUR: 5e-5,
    OperatorKind.INPAINT_BOX: 5e-5,
    OperatorKind.NONLINEAR_BLUR: 1e-5,  # bkse's blur (configs/task/nonlinear_blur.yaml: 200 Langevin steps)
    OperatorKind.MRI: 1e-4,  # InverseBench's configs/algorithm/daps.yaml (its MRI runs; module doc, "MRI")
}
LR_DEFAULT = 1e-4
#: the fast preset's annealing steps on sparse-view CT (``ct_steps``; module doc, "CT"): each costs a CG solve
CT_FAST_STEPS = 20


def default_lr(operator: object) -> float:
    """The official Langevin lr for this operator's task."""
    return by_kind(LR_BY_KIND, operator, LR_DEFAULT)  # type: ignore[arg-type]


def operator_bound(operator: object) -> float:
    """max(1, L) for L a bound on ||A|| (linear) or on the Jacobian of A (nonlinear); 1 where none is known.

    The Langevin step cap below assumed ||A|| <= 1; reflect blur measures 1.01-1.04 and HDR's Jacobian is its
    gain (2 by default), so the cap uses the operator's own bound. Bounds under 1 keep the old cap (a looser
    cap would change results for no stability gain)."""
    bound = getattr(operator, "lipschitz", None)
    value = bound() if callable(bound) else None
    return max(1.0, float(value)) if value is not None else 1.0


#: pixel DAPS's inner samplers ("auto": the exact draw where it applies, ``DAPS.inner_sampler``)
INNER_SAMPLERS = ("auto", "exact", "langevin", "hmc")


@dataclasses.dataclass
class DAPSConfig(AnnealingConfig):
    """The annealing's settings (``annealing.AnnealingConfig``: steps, ode_steps, langevin_steps, lr (None = the
    per-task table), lr_min_ratio, tau, lr_reference_tau (the paper's 0.01), sigma_max / sigma_min, rho,
    ode_sigma_min, ode_grid, momentum, r_t, r_t_blend), plus pixel DAPS's own:
    inner: "exact" (the exact Gaussian draw; linear operators with Gaussian noise only), "langevin" (the paper's),
    "hmc" (the official latent code's momentum steps, ``momentum``), or "auto" (exact where it applies, else
    langevin; Langevin also when r_t resolves to "sigma" with a positive spread). inner_spread: the inner step's
    distance from its target's mean in units of the target's std: 1 draws the target (the paper), 0 takes its
    mean, None (the fast preset): 0 where the target is Gaussian and the run asks for one sample, else 1.
    num_samples: the run's posterior samples per image (``-n``; the CLI and the API set it, so each sample of
    ``-n N`` is drawn: the mean's samples are too alike for their std to mean anything, docs/benchmarks.md,
    "DAPS's inner step for -n N"); only ``inner_spread`` None reads it. r_t: the annealing's rules and
    "tweedie" (the whole covariance sigma_t^2 J instead of a std, module docstring; linear operators with Gaussian
    noise). tweedie_steps / tweedie_root_steps: CG steps of its solve and Lanczos steps of its draw's root (one
    network call each)."""

    inner_spread: float | None = 1.0
    ct_steps: int | None = None
    tweedie_steps: int = 2
    tweedie_root_steps: int = 4
    num_samples: int = 1

    rules: ClassVar[dict[str, Rule]] = {
        **AnnealingConfig.rules, "inner": one_of(*INNER_SAMPLERS),
        "r_t": one_of(*R_T_RULES, "tweedie"), "inner_spread": non_negative(optional=True),
        "tweedie_steps": integer(0), "tweedie_root_steps": integer(1), "num_samples": integer(1),
        "ct_steps": integer(1, optional=True),
    }


class DAPS(Annealing):
    name: ClassVar[str] = "daps"
    config_class: ClassVar[type[SolverConfig]] = DAPSConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 200, "ode_steps": 5, "langevin_steps": 100},
        "fast": {"steps": 100, "ode_steps": 1, "langevin_steps": 50, "sigma_min": 0.01, "inner": "auto",
                 "r_t": "sigma", "inner_spread": None, "ct_steps": CT_FAST_STEPS},
    }

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        """As every solver's; ``--steps`` also sets ``ct_steps`` (``base.with_ct_steps``)."""
        return super().from_preset(preset, **with_ct_steps(overrides))

    def steps_for(self, operator: object) -> int:
        """Annealing steps on this operator: ``ct_steps`` on sparse-view CT where set (module doc, "CT"), else
        ``steps``."""
        if self.config.ct_steps is not None and getattr(operator, "kind", None) == OperatorKind.CT:
            return int(self.config.ct_steps)
        return int(self.config.steps)

    def extra_calls_per_step(self) -> int:
        """The "jacobian" probe, or the Tweedie step's products: 1 for the start, tweedie_steps for CG, and
        tweedie_root_steps for the draw's root when it draws."""
        if str(self.config.r_t) != "tweedie":
            return super().extra_calls_per_step()
        drawn = self.spread_for(gaussian=True) > 0.0  # r_t="tweedie" takes Gaussian targets only
        return 1 + int(self.config.tweedie_steps) + (int(self.config.tweedie_root_steps) if drawn else 0)

    @staticmethod
    def exact_fits(problem: Problem) -> bool:
        """Whether the inner target is Gaussian: a linear operator with Gaussian (or no) noise."""
        gaussian = getattr(problem.noise, "kind", "gaussian") in ("gaussian", "none")
        return bool(getattr(problem.operator, "linear", False)) and gaussian

    def inner_spread(self, problem: Problem) -> float:
        """The inner step's spread s for this problem (``spread_for``)."""
        return self.spread_for(self.exact_fits(problem))

    def spread_for(self, gaussian: bool) -> float:
        """The inner step's spread s (``inner_spread``; None: 0, the target's mean, where the inner target is
        ``gaussian`` and the run asks for one sample (``num_samples``), else 1: several samples are drawn, so
        that their spread is the posterior's, and Langevin/HMC keep the paper's draw, unmeasured with less
        noise)."""
        spread = self.config.inner_spread
        if spread is None:
            return 0.0 if gaussian and int(self.config.num_samples) == 1 else 1.0
        return float(spread)

    def inner_sampler(self, problem: Problem, r_rule: str | None = None) -> str:
        """The inner sampler this problem gets: "auto" is the exact draw (or mean) for a linear operator with
        Gaussian (or no) noise, Langevin otherwise (nonlinear operators, Poisson's weighted likelihood). Under
        the paper's r_t = sigma_t (``r_rule`` "sigma") with a positive spread it is Langevin too: that r_t is
        too wide at small sigma, and 50 Langevin steps, which never reach their target where the data says
        nothing, beat its exact draw on photos by 0.6-1.3 dB (docs/benchmarks.md); its mean (spread 0) has no
        such excess and is the fast preset's step."""
        wanted = str(self.config.inner)
        exact_fits = self.exact_fits(problem)
        if wanted == "exact" and not exact_fits:
            raise UsageError("daps: the exact inner draw needs a linear operator and Gaussian noise",
                             hint="use inner='auto', 'langevin' or 'hmc'")
        if wanted == "auto":
            rule = r_rule if r_rule is not None else str(self.config.r_t)
            drawn_at_sigma = rule == "sigma" and self.inner_spread(problem) > 0.0
            return "exact" if exact_fits and not drawn_at_sigma else "langevin"
        return wanted

    def initial_lr(self, problem: Problem, tau: float) -> float:
        """The inner step's lr at the first annealing step, before its cap (``_inner``): ``lr`` or the per-task
        table's, scaled to ``tau`` (``lr_reference_tau``)."""
        lr = float(self.config.lr) if self.config.lr is not None else default_lr(problem.operator)
        return reference_scaled_lr(lr, tau, self.config.lr_reference_tau)

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """The annealing range and r_t rule (and blend) for this prior; with the problem, the likelihood's tau, the
        inner sampler ("tweedie" for r_t="tweedie") and spread, and for Langevin/HMC the first lr before its
        stability cap (the cap needs the operator's norm, not worth estimating here) and where it came from."""
        out = self.resolved_annealing(prior)
        if problem is None:
            return out
        tau = likelihood_std(problem, self.config.tau)
        if self.steps_for(problem.operator) != int(self.config.steps):
            out["steps"] = self.steps_for(problem.operator)
        sampler = "tweedie" if out["r_t"] == "tweedie" else self.inner_sampler(problem, out["r_t"])
        out.update(tau=tau, inner=sampler, inner_spread=self.inner_spread(problem))
        if sampler in ("langevin", "hmc"):
            out.update(lr=self.initial_lr(problem, tau), lr_source="config" if self.config.lr is not None else "task")
        return out

    def check_tweedie(self, problem: Problem) -> None:
        """r_t="tweedie" solves the Gaussian inner target in closed form (CG): a UsageError for a non-Gaussian one."""
        if not self.exact_fits(problem):
            raise UsageError("daps: r_t='tweedie' needs a linear operator and Gaussian noise",
                             hint="use r_t='sigma', 'mmse' or 'jacobian' here")

    @staticmethod
    def _tweedie_covariance(prior: Prior, x: torch.Tensor, sigma: float,
                            denoised: torch.Tensor) -> inner.CovarianceProduct:
        """v -> sigma^2 J v, J = dD/dx at (x_t, sigma_t): Tweedie's second-order identity Cov[x0 | x_t] = sigma^2 J,
        the whole covariance (``r_t="jacobian"`` keeps only its trace). One network call per product, by a forward
        finite difference along v scaled to rms 0.01 sigma (the step the "jacobian" probe takes)."""

        def product(v: torch.Tensor) -> torch.Tensor:
            size = v.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12).reshape(-1, *([1] * (v.dim() - 1)))
            h = 0.01 * sigma
            jv = (prior.denoise(x + (h / size) * v, sigma) - denoised) * (size / h)
            return sigma * sigma * jv

        return product

    def _inner(self, sampler: str, problem: Problem, y: torch.Tensor, x0_hat: torch.Tensor, r: torch.Tensor | float,
               tau: float, lr: float, generator: Generators,
               accuracy: torch.Tensor | float | None = None) -> torch.Tensor:
        """A sample of p(x0 | x_t, y) (solvers/inner.py). The exact draw's Gram solve, where it iterates, stops at
        ``accuracy`` (``inner.solve_accuracy``: a fraction of min(r_t, sigma_{t+1}), rms per pixel; None: the
        operator's default tolerance). Langevin/HMC steps are capped for stability: the drift's curvature is at
        most 1/r^2 + ||A||^2/tau^2, and a step above 1/curvature makes the chain oscillate or diverge (e.g. tau = a
        tiny noise std); at the paper's tau = 0.01 and ||A|| = 1 the cap is 0.99e-4 against lr 1e-4."""
        spread = self.inner_spread(problem)
        if sampler == "exact":
            return inner.exact_draw(problem, y, x0_hat, r, tau, generator, spread, accuracy)
        lr = min(lr, inner.step_cap(r, tau, operator_bound(problem.operator)))
        steps = int(self.config.langevin_steps)
        if sampler == "hmc":
            return inner.hmc(problem, y, x0_hat, r, tau, lr, steps, float(self.config.momentum), generator,
                             spread=spread)
        return inner.langevin(problem, y, x0_hat, r, tau, lr, steps, generator, spread=spread)

    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        cfg = self.config
        sigmas = self.annealing_sigmas(prior, self.steps_for(problem.operator))
        tau = likelihood_std(problem, cfg.tau)
        lr0 = self.initial_lr(problem, tau)
        device = torch.device(prior.device)
        rule = self.r_rule(prior)
        tweedie = rule == "tweedie"
        if tweedie:
            self.check_tweedie(problem)
        else:
            sampler = self.inner_sampler(problem, rule)
        total = len(sigmas) - 1
        x = sigmas[0] * randn(shape, generator, device)
        for i in range(total):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0_hat, denoised = self._ode_x0(prior, x, s)
            if tweedie:
                x0 = inner.tweedie_draw(problem, y, x0_hat, self._tweedie_covariance(prior, x, s, denoised), s, tau,
                                        int(cfg.tweedie_steps), int(cfg.tweedie_root_steps), generator,
                                        self.inner_spread(problem), accuracy=inner.solve_accuracy(s, s_next))
            else:
                r = self._r(prior, x, s, denoised, generator)
                lr = decayed_lr(lr0, i, total, cfg.lr_min_ratio)
                x0 = self._inner(sampler, problem, y, x0_hat, r, tau, lr, generator, inner.solve_accuracy(r, s_next))
            x = x0 + s_next * randn(shape, generator, device) if s_next > 0.0 else x0
            progress(i + 1, total, self.name)
        return x


__all__ = [
    "DAPS",
    "INNER_SAMPLERS",
    "LR_BY_KIND",
    "LR_DEFAULT",
    "DAPSConfig",
    "decayed_lr",
    "default_lr",
    "ode_x0",
    "operator_bound",
    "posterior_rms_of",
    "recommended_blend",
    "reference_scaled_lr",
]
