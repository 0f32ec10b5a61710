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
std is 0.64-0.74 of the posterior's (1.0-1.1 when drawn), so ``-n N`` spreads are narrower (set inner_spread=1
for the paper's draw). With the mean and r_t = sigma_t the step is DiffPIR's data proximal step (Zhu et al., CVPR
2023) with lambda = 1 and fresh noise (zeta = 1) on DAPS's annealing. Langevin and HMC (nonlinear operators,
Poisson noise) keep the draw: their mean-seeking variant is unmeasured there.

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
it is Gaussian (above; else 50 Langevin steps drawing it), sigma_min 0.01. On the
exactness benchmark annealing steps matter more than ODE steps for the same calls (inpainting mean error:
25 x 4 -> 0.19, 50 x 2 -> 0.14, 100 x 1 -> 0.10), and Langevin steps beyond 50 change little; see
docs/benchmarks.md. The last annealing step returns the inner step around x0_hat with r = sigma_min; drawn at the
paper's 0.1 (0.05 on the [0, 1] scale) that isotropic spread is visible noise on top of the restored image
(DAPS's Gaussian approximation of p(x0 | x_t) is far wider than the true one at small sigma), which costs
1.0-1.5 dB of PSNR on photos with the default prior (docs/default_prior.md). The fast preset therefore ends at
sigma 0.01; the paper preset keeps the paper's 0.1.

Deviations:
- tau. The official configs use tau = 0.01 for measurement noise 0.05, a tuning choice that over-weights the data;
  the exact likelihood has tau = the noise std in tensor units, our default (``tau=None``; noiseless problems fall
  back to 0.01). The paper's lr was tuned together with tau = 0.01, so the lr is scaled by (tau / 0.01)^2
  (``lr_reference_tau``), which keeps the data term's step lr / tau^2 as in the paper; without it the Langevin
  chain barely moves at tau = 0.05 (x2 super-resolution mean error 0.54 instead of 0.04). tau=0.01 reproduces the
  paper and the legacy official code (loss / (2 tau^2)); the current official main branch differentiates
  ||y - A||^2 / tau^2, i.e. doubles the data term (its 0.01 is our 0.01 / sqrt(2), LATENT_DISCRETE.md 1.4).
- the Langevin step is capped at 1 / (1 / r_t^2 + L^2 / tau^2), L = max(1, the operator's norm or Jacobian bound)
  (beyond it the chain oscillates or diverges); at the official settings the cap is 0.99e-4 against lr 1e-4.
- the annealing schedule is clipped to the prior's sigma range.
Known limit (measured, docs/benchmarks.md): with r_t = sigma_t isotropic, a Langevin step moves unobserved pixels
only through x0_hat, so on random inpainting of a smooth Gaussian prior the sample mean stays ~6 % shrunk towards
the prior mean (relative error 0.13 with the paper preset, 0.03 on super-resolution and blur).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from . import inner
from .base import Generators, ProgressCallback, Solver, SolverConfig, by_kind, likelihood_std, poly_sigmas, randn

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
}
LR_DEFAULT = 1e-4


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


@dataclasses.dataclass
class DAPSConfig(SolverConfig):
    """steps: annealing steps. ode_steps: Euler steps per x0_hat (network calls per annealing step).
    langevin_steps: Langevin iterations per annealing step. lr: Langevin step size (None = per-task table);
    lr_min_ratio: final lr / lr. tau: likelihood std in tensor units (None = the problem's noise std).
    lr_reference_tau: the tau the lr was tuned for (the paper's 0.01); the lr used is lr * (tau / lr_reference_tau)^2,
    which keeps the data term's step lr / tau^2 the paper's; None uses lr as given.
    sigma_max / sigma_min: annealing range; ode_sigma_min: where the ODE grid ends (``ode_x0``); ode_grid: "denoise"
    (the grid ends with the denoiser) or "euler" (the official latent code's all-Euler grid).
    inner: "exact" (the exact Gaussian draw; linear operators with Gaussian noise only), "langevin" (the paper's),
    "hmc" (the official latent code's momentum steps, ``momentum``), or "auto" (exact where it applies, else
    langevin; Langevin also when r_t resolves to "sigma" with a positive spread). inner_spread: the inner step's
    distance from its target's mean in units of the target's std: 1 draws the target (the paper), 0 takes its
    mean, None: 0 where the target is Gaussian, else 1 (the fast preset). r_t: the prior std of x0 given x_t:
    "sigma" (the paper's r_t = sigma_t), "jacobian" (Tweedie's second-order identity, one extra network call per
    annealing step), "mmse" (the prior's measured posterior rms, blended with sigma_t by ``r_t_blend``: r_t =
    sigma_t^(1 - b) mmse^b; ``r_t_blend`` None: the model's recommended b, else 1), "tweedie" (the whole
    covariance sigma_t^2 J instead of a std, module docstring; linear operators with Gaussian noise) or "auto"
    ("mmse" where the model folder recommends a blend, else "sigma"). tweedie_steps / tweedie_root_steps: CG steps
    of its solve and Lanczos steps of its draw's root (one network call each). rho: the annealing schedule's
    EDM exponent (7: steps packed towards small sigma; 4 and 12 measured level with 7 on photos)."""

    steps: int = 200
    ode_steps: int = 5
    langevin_steps: int = 100
    lr: float | None = None
    lr_min_ratio: float = 0.01
    tau: float | None = None
    lr_reference_tau: float | None = 0.01
    sigma_max: float = 100.0
    sigma_min: float = 0.1
    ode_sigma_min: float = 0.01
    inner: str = "langevin"
    momentum: float = 0.9
    r_t: str = "sigma"
    r_t_blend: float | None = None
    ode_grid: str = "denoise"
    inner_spread: float | None = 1.0
    rho: float = 7.0
    tweedie_steps: int = 2
    tweedie_root_steps: int = 4


INNER_SAMPLERS = ("auto", "exact", "langevin", "hmc")
ODE_GRIDS = ("denoise", "euler")
R_T_RULES = ("sigma", "jacobian", "mmse", "tweedie", "auto")


def posterior_rms_of(prior: Any) -> Any:
    """The prior's measured posterior rms by sigma (priors/posterior_rms.py), for r_t = "mmse"."""
    table = getattr(prior, "posterior_rms", None)
    if table is None:
        raise UsageError(
            f"daps: r_t='mmse' needs the prior's measured posterior spread, and {type(prior).__name__} has none",
            hint="measure it (benchmarks/default_prior.py posterior-rms MODEL_DIR), or use r_t='sigma' or 'jacobian'",
        )
    return table


def recommended_blend(prior: Any) -> float | None:
    """The r_t blend a prior's model folder recommends (``recommended.daps_r_t_blend``, measured for that network
    and only valid beside its posterior_rms table), or None."""
    if getattr(prior, "posterior_rms", None) is None:
        return None
    value = (getattr(prior, "recommended", None) or {}).get("daps_r_t_blend")
    return None if value is None else float(value)


def reference_scaled_lr(lr: float, tau: float, reference_tau: float | None) -> float:
    """The lr tuned at ``reference_tau``, scaled by (tau / reference_tau)^2 so the data term's step lr / tau^2 stays
    the tuned one (``lr_reference_tau``; None or 0: the lr as given)."""
    return lr * (tau / float(reference_tau)) ** 2 if reference_tau else lr


def decayed_lr(lr0: float, step: int, total: int, min_ratio: float) -> float:
    """The lr of annealing step ``step`` of ``total``: linear from lr0 towards min_ratio * lr0."""
    return lr0 * (1.0 + (step / total) * (float(min_ratio) - 1.0))


def ode_x0(prior: Any, x: torch.Tensor, sigma: float, steps: int, floor: float, grid: str,
           *cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Euler steps of the probability-flow ODE dx/ds = (x - D(x, s)) / s from ``sigma`` towards 0, one
    network call each (``cond``: the conditioning a latent prior takes). Returns (x0_hat, D(x, sigma)).

    grid "denoise" (our pixel DAPS): the poly-7 grid of ``steps`` points sigma -> floor, then 0, so the last step
    is the denoiser itself; "euler" (the official LatentDAPS code): the poly-7 grid of steps + 1 points
    sigma -> floor, Euler all the way, ending at ``floor``. With 2 steps "denoise" spends its second call at the
    floor, where the denoiser is nearly the identity; "euler" puts the middle point where it still matters.
    """
    if grid not in ODE_GRIDS:
        raise UsageError(f"daps: ode_grid must be one of {', '.join(ODE_GRIDS)}, got {grid!r}")
    if grid == "denoise" or floor >= sigma:  # nothing to integrate down to the floor: the denoiser is x0_hat
        points = [*poly_sigmas(steps, sigma, floor).tolist(), 0.0]
    else:
        points = poly_sigmas(steps + 1, sigma, floor).tolist()
    first = None
    for s, s_next in itertools.pairwise(points):
        d = prior.denoise(x, s, *cond)
        first = d if first is None else first
        x = d if s_next == 0.0 else x + (s_next - s) / s * (x - d)
    assert first is not None
    return x, first


class DAPS(Solver):
    name: ClassVar[str] = "daps"
    config_class: ClassVar[type[SolverConfig]] = DAPSConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 200, "ode_steps": 5, "langevin_steps": 100},
        "fast": {"steps": 100, "ode_steps": 1, "langevin_steps": 50, "sigma_min": 0.01, "inner": "auto",
                 "r_t": "sigma", "inner_spread": None},
    }

    def network_calls(self) -> int:
        tweedie = 1 + int(self.config.tweedie_steps) + (int(self.config.tweedie_root_steps)
                                                        if self.config.inner_spread not in (None, 0, 0.0) else 0)
        extra = {"jacobian": 1, "tweedie": tweedie}.get(str(self.config.r_t), 0)
        per_step = int(self.config.ode_steps) + extra
        return int(self.config.steps) * per_step

    def r_rule(self, prior: Any) -> str:
        """The r_t rule this prior gets: "auto" is "mmse" where the prior's model folder recommends it (a
        measured ``recommended.daps_r_t_blend`` beside its "posterior_rms" table), else the paper's "sigma"."""
        rule = str(self.config.r_t)
        if rule not in R_T_RULES:
            raise UsageError(f"daps: r_t must be one of {', '.join(R_T_RULES)}, got {rule!r}")
        if rule == "auto":
            return "mmse" if recommended_blend(prior) is not None else "sigma"
        return rule

    def r_blend(self, prior: Any) -> float:
        """b of r_t = sigma_t^(1 - b) mmse^b: ``r_t_blend``, else the prior's recommendation, else 1."""
        if self.config.r_t_blend is not None:
            blend = float(self.config.r_t_blend)
        else:
            recommended = recommended_blend(prior)
            blend = 1.0 if recommended is None else recommended
        if not 0.0 <= blend <= 1.0:
            raise UsageError(f"daps: r_t_blend must be in [0, 1], got {blend}")
        return blend

    def check_config(self) -> None:
        """The choices and ranges of DAPS's settings (solvers check them again where they are used)."""
        super().check_config()
        cfg = self.config
        for key, allowed in (("inner", INNER_SAMPLERS), ("r_t", R_T_RULES), ("ode_grid", ODE_GRIDS)):
            if str(getattr(cfg, key)) not in allowed:
                raise UsageError(f"daps: {key} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
        positive = {"ode_steps": cfg.ode_steps, "langevin_steps": cfg.langevin_steps, "lr": cfg.lr, "tau": cfg.tau,
                    "sigma_max": cfg.sigma_max, "sigma_min": cfg.sigma_min, "ode_sigma_min": cfg.ode_sigma_min,
                    "rho": cfg.rho}
        for key, value in positive.items():
            if value is not None and not float(value) > 0.0:
                raise UsageError(f"daps: {key} must be > 0, got {value}")
        if str(cfg.r_t) == "tweedie" and self.name != "daps":
            raise UsageError(f"{self.name}: r_t='tweedie' is pixel DAPS's",
                             hint="use r_t='sigma', 'mmse' or 'jacobian'")
        if int(cfg.tweedie_steps) < 0 or int(cfg.tweedie_root_steps) < 1:
            raise UsageError(f"daps: tweedie_steps must be >= 0 and tweedie_root_steps >= 1, got "
                             f"{cfg.tweedie_steps} and {cfg.tweedie_root_steps}")
        if not float(cfg.sigma_max) > float(cfg.sigma_min):
            raise UsageError(f"daps: sigma_max ({cfg.sigma_max}) must be above sigma_min ({cfg.sigma_min})")
        ranges = {"inner_spread": (cfg.inner_spread, 0.0, float("inf")), "r_t_blend": (cfg.r_t_blend, 0.0, 1.0),
                  "lr_min_ratio": (cfg.lr_min_ratio, 0.0, 1.0), "momentum": (cfg.momentum, 0.0, 1.0)}
        for key, (value, low, high) in ranges.items():
            if value is not None and not low <= float(value) <= high:
                span = f">= {low:g}" if high == float("inf") else f"in [{low:g}, {high:g}]"
                raise UsageError(f"daps: {key} must be {span}, got {value}")

    @staticmethod
    def exact_fits(problem: Problem) -> bool:
        """Whether the inner target is Gaussian: a linear operator with Gaussian (or no) noise."""
        gaussian = getattr(problem.noise, "kind", "gaussian") in ("gaussian", "none")
        return bool(getattr(problem.operator, "linear", False)) and gaussian

    def inner_spread(self, problem: Problem) -> float:
        """The inner step's spread s (``inner_spread``; None: 0 where the inner target is Gaussian, its mean, and
        1 elsewhere, where Langevin/HMC keep the paper's draw: unmeasured with less noise)."""
        spread = self.config.inner_spread
        if spread is None:
            return 0.0 if self.exact_fits(problem) else 1.0
        spread = float(spread)
        if not spread >= 0.0:
            raise UsageError(f"daps: inner_spread must be >= 0, got {spread}")
        return spread

    def inner_sampler(self, problem: Problem, r_rule: str | None = None) -> str:
        """The inner sampler this problem gets: "auto" is the exact draw (or mean) for a linear operator with
        Gaussian (or no) noise, Langevin otherwise (nonlinear operators, Poisson's weighted likelihood). Under
        the paper's r_t = sigma_t (``r_rule`` "sigma") with a positive spread it is Langevin too: that r_t is
        too wide at small sigma, and 50 Langevin steps, which never reach their target where the data says
        nothing, beat its exact draw on photos by 0.6-1.3 dB (docs/benchmarks.md); its mean (spread 0) has no
        such excess and is the fast preset's step."""
        wanted = str(self.config.inner)
        if wanted not in INNER_SAMPLERS:
            raise UsageError(f"daps: inner must be one of {', '.join(INNER_SAMPLERS)}, got {wanted!r}")
        exact_fits = self.exact_fits(problem)
        if wanted == "exact" and not exact_fits:
            raise UsageError("daps: the exact inner draw needs a linear operator and Gaussian noise",
                             hint="use inner='auto', 'langevin' or 'hmc'")
        if wanted == "auto":
            rule = r_rule if r_rule is not None else str(self.config.r_t)
            drawn_at_sigma = rule == "sigma" and self.inner_spread(problem) > 0.0
            return "exact" if exact_fits and not drawn_at_sigma else "langevin"
        return wanted

    def annealing_sigmas(self, prior: Prior) -> list[float]:
        cfg = self.config
        hi = min(float(cfg.sigma_max), prior.sigma_max)
        lo = max(float(cfg.sigma_min), prior.sigma_min)
        return [*poly_sigmas(int(cfg.steps), hi, min(lo, hi), rho=float(cfg.rho)).tolist(), 0.0]

    def _ode_x0(self, prior: Prior, x: torch.Tensor, sigma: float, *cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """x0_hat by the probability-flow ODE from sigma (``ode_x0``). Returns (x0_hat, D(x_t, sigma))."""
        floor = max(min(float(self.config.ode_sigma_min), sigma), prior.sigma_min)
        return ode_x0(prior, x, sigma, int(self.config.ode_steps), floor, str(self.config.ode_grid), *cond)

    def _r(self, prior: Prior, x: torch.Tensor, sigma: float, denoised: torch.Tensor,
           generator: Generators, *cond: Any) -> torch.Tensor | float:
        """r_t: sigma_t (the paper); the measured rms blend sigma_t^(1 - b) mmse(sigma_t)^b ("mmse", module
        docstring); or sigma_t sqrt(tr(J) / dim) per image, J = dD/dx at (x_t, sigma_t) ("jacobian").

        Tweedie's second-order identity gives Cov[x0 | x_t] = sigma^2 J; DAPS's isotropic Gaussian keeps its average
        variance. The trace comes from one Rademacher probe v and a finite difference, v . (D(x + h v) - D(x)) / h
        with h = 0.01 sigma (one extra network call); over a whole image the probe's error is a fraction of a
        percent. Clamped to [0.01, 1] sigma: a denoiser's Jacobian has eigenvalues in [0, 1] where it is exact."""
        rule = self.r_rule(prior)
        if rule == "sigma":
            return sigma
        if rule == "tweedie":  # pixel DAPS takes its own step (_sample); the latent solver has none
            raise UsageError(f"{self.name}: r_t='tweedie' is pixel DAPS's",
                             hint="use r_t='sigma', 'mmse' or 'jacobian'")
        if rule == "mmse":
            blend = self.r_blend(prior)
            return sigma ** (1.0 - blend) * posterior_rms_of(prior)(sigma) ** blend
        probe = randn(x.shape, generator, x.device).sign()
        h = 0.01 * sigma
        jv = (prior.denoise(x + h * probe, sigma, *cond) - denoised) / h
        trace = (probe * jv).flatten(1).mean(dim=1)  # a Rademacher probe has |v_i| = 1
        return sigma * trace.clamp(1e-4, 1.0).sqrt()

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
               tau: float, lr: float, generator: Generators) -> torch.Tensor:
        """A sample of p(x0 | x_t, y) (solvers/inner.py). Langevin/HMC steps are capped for stability: the
        drift's curvature is at most 1/r^2 + ||A||^2/tau^2, and a step above 1/curvature makes the chain oscillate
        or diverge (e.g. tau = a tiny noise std); at the paper's tau = 0.01 and ||A|| = 1 the cap is 0.99e-4
        against lr 1e-4."""
        spread = self.inner_spread(problem)
        if sampler == "exact":
            return inner.exact_draw(problem, y, x0_hat, r, tau, generator, spread)
        lr = min(lr, inner.step_cap(r, tau, operator_bound(problem.operator)))
        steps = int(self.config.langevin_steps)
        if sampler == "hmc":
            return inner.hmc(problem, y, x0_hat, r, tau, lr, steps, float(self.config.momentum), generator,
                             spread=spread)
        return inner.langevin(problem, y, x0_hat, r, tau, lr, steps, generator, spread=spread)

    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        cfg = self.config
        sigmas = self.annealing_sigmas(prior)
        tau = likelihood_std(problem, cfg.tau)
        lr0 = reference_scaled_lr(float(cfg.lr) if cfg.lr is not None else default_lr(problem.operator), tau,
                                  cfg.lr_reference_tau)
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
                                        self.inner_spread(problem))
            else:
                r = self._r(prior, x, s, denoised, generator)
                lr = decayed_lr(lr0, i, total, cfg.lr_min_ratio)
                x0 = self._inner(sampler, problem, y, x0_hat, r, tau, lr, generator)
            x = x0 + s_next * randn(shape, generator, device) if s_next > 0.0 else x0
            progress(i + 1, total, self.name)
        return x
