"""DAPS's decoupled noise annealing, shared by pixel DAPS (daps.py) and LatentDAPS (latent_daps.py): Zhang, Chu,
Berner, Zheng, Bouman, Yue, Anandkumar, "Improving Diffusion Inverse Problem Solving with Decoupled Noise
Annealing", CVPR 2025, arXiv 2407.01521.

The update both run, per annealing step t on the poly-7 schedule sigma_max -> sigma_min, then 0:

    x0_hat  = probability-flow ODE from (x_t, sigma_t) towards 0 (``ode_x0``: K Euler steps, K network calls)
    x0      = a sample of N(x0; x0_hat, r_t^2 I) p(y | x0)     (the inner step: each solver its own sampler)
    x_{t+1} = x0 + sigma_{t+1} z                                 (the last step returns x0 itself)

Here: the settings both solvers read (``AnnealingConfig``), the annealing schedule, the ODE, the rule for r_t
("sigma", "mmse", "jacobian", "auto"; daps.py's docstring says what each is worth) and the inner step's learning
rate and its decay. What only pixel DAPS does (the exact draw, the inner mean, the Tweedie covariance) is in
daps.py; the latent data term and the official per-task table in latent_daps.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from .base import Generators, Solver, SolverConfig, poly_sigmas, randn
from .rules import Rule, fraction, integer, non_negative, one_of, positive

if TYPE_CHECKING:
    from ..priors.base import Prior

ODE_GRIDS = ("denoise", "euler")
#: the r_t rules of every annealing solver (pixel DAPS adds "tweedie")
R_T_RULES = ("sigma", "jacobian", "mmse", "auto")


@dataclasses.dataclass
class AnnealingConfig(SolverConfig):
    """The settings of the annealing both DAPS solvers run (defaults: the pixel paper's).

    steps: annealing steps. ode_steps: Euler steps per x0_hat (network calls per annealing step).
    langevin_steps: inner iterations per annealing step. lr: the inner step size (None = the solver's per-task
    table); lr_min_ratio: final lr / lr. tau: likelihood std in tensor units (None = the problem's noise std).
    lr_reference_tau: the tau the lr was tuned for; the lr used is lr * (tau / lr_reference_tau)^2, which keeps the
    data term's step lr / tau^2 the tuned one; None or 0 uses lr as given.
    sigma_max / sigma_min: annealing range (clipped to the prior's); rho: the schedule's EDM exponent (7: steps
    packed towards small sigma). ode_sigma_min: where the ODE grid ends; ode_grid: "denoise" (the grid ends with
    the denoiser) or "euler" (the official latent code's all-Euler grid, ``ode_x0``).
    inner: the inner sampler ("langevin", or "hmc": the official latent code's momentum steps, ``momentum``).
    r_t: the prior std of x0 given x_t: "sigma" (the paper's r_t = sigma_t), "jacobian" (Tweedie's second-order
    identity, one extra network call per annealing step), "mmse" (the prior's measured posterior rms, blended with
    sigma_t by ``r_t_blend``: r_t = sigma_t^(1 - b) mmse^b; ``r_t_blend`` None: the model's recommended b, else 1)
    or "auto" ("mmse" where the model folder recommends a blend, else "sigma")."""

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
    rho: float = 7.0

    rules: ClassVar[dict[str, Rule]] = {
        **SolverConfig.rules, "ode_steps": integer(1), "langevin_steps": integer(1), "lr": positive(optional=True),
        "lr_min_ratio": fraction(), "tau": positive(optional=True), "lr_reference_tau": non_negative(optional=True),
        "sigma_max": positive(), "sigma_min": positive(), "ode_sigma_min": positive(), "rho": positive(),
        "inner": one_of("langevin", "hmc"), "momentum": fraction(), "r_t": one_of(*R_T_RULES),
        "r_t_blend": fraction(optional=True), "ode_grid": one_of(*ODE_GRIDS),
    }


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


class Annealing(Solver):
    """The annealing loop's shared parts; subclasses run the loop (``_sample``) with their own inner step."""

    config_class: ClassVar[type[SolverConfig]] = AnnealingConfig

    def check_config(self) -> None:
        """Every field by its rule, and an annealing range that goes down."""
        super().check_config()
        cfg = self.config
        if not float(cfg.sigma_max) > float(cfg.sigma_min):
            raise UsageError(f"{self.name}: sigma_max ({cfg.sigma_max}) must be above sigma_min ({cfg.sigma_min})")

    def network_calls(self) -> int:
        return int(self.config.steps) * (int(self.config.ode_steps) + self.extra_calls_per_step())

    def extra_calls_per_step(self) -> int:
        """Network calls per annealing step beyond the ODE's: the "jacobian" rule's probe."""
        return 1 if str(self.config.r_t) == "jacobian" else 0

    def r_rule(self, prior: Any) -> str:
        """The r_t rule this prior gets: "auto" is "mmse" where the prior's model folder recommends it (a
        measured ``recommended.daps_r_t_blend`` beside its "posterior_rms" table), else the paper's "sigma"."""
        rule = str(self.config.r_t)
        if rule == "auto":
            return "mmse" if recommended_blend(prior) is not None else "sigma"
        return rule

    def r_blend(self, prior: Any) -> float:
        """b of r_t = sigma_t^(1 - b) mmse^b: ``r_t_blend``, else the prior's recommendation, else 1 (both checked
        where they are read: the config by ``check_config``, the recommendation when the model folder loads)."""
        if self.config.r_t_blend is not None:
            return float(self.config.r_t_blend)
        recommended = recommended_blend(prior)
        return 1.0 if recommended is None else recommended

    def annealing_sigmas(self, prior: Prior, steps: int | None = None) -> list[float]:
        """The annealing's sigmas, then 0: ``steps`` of them (None: the config's)."""
        cfg = self.config
        hi = min(float(cfg.sigma_max), prior.sigma_max)
        lo = max(float(cfg.sigma_min), prior.sigma_min)
        count = int(cfg.steps if steps is None else steps)
        return [*poly_sigmas(count, hi, min(lo, hi), rho=float(cfg.rho)).tolist(), 0.0]

    def _ode_x0(self, prior: Prior, x: torch.Tensor, sigma: float, *cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """x0_hat by the probability-flow ODE from sigma (``ode_x0``). Returns (x0_hat, D(x_t, sigma))."""
        floor = max(min(float(self.config.ode_sigma_min), sigma), prior.sigma_min)
        return ode_x0(prior, x, sigma, int(self.config.ode_steps), floor, str(self.config.ode_grid), *cond)

    def _r(self, prior: Prior, x: torch.Tensor, sigma: float, denoised: torch.Tensor,
           generator: Generators, *cond: Any) -> torch.Tensor | float:
        """r_t: sigma_t (the paper); the measured rms blend sigma_t^(1 - b) mmse(sigma_t)^b ("mmse", daps.py's
        docstring); or sigma_t sqrt(tr(J) / dim) per image, J = dD/dx at (x_t, sigma_t) ("jacobian").

        Tweedie's second-order identity gives Cov[x0 | x_t] = sigma^2 J; DAPS's isotropic Gaussian keeps its average
        variance. The trace comes from one Rademacher probe v and a finite difference, v . (D(x + h v) - D(x)) / h
        with h = 0.01 sigma (one extra network call); over a whole image the probe's error is a fraction of a
        percent. Clamped to [0.01, 1] sigma: a denoiser's Jacobian has eigenvalues in [0, 1] where it is exact."""
        rule = self.r_rule(prior)
        if rule == "sigma":
            return sigma
        if rule == "mmse":
            blend = self.r_blend(prior)
            return sigma ** (1.0 - blend) * posterior_rms_of(prior)(sigma) ** blend
        probe = randn(x.shape, generator, x.device).sign()
        h = 0.01 * sigma
        jv = (prior.denoise(x + h * probe, sigma, *cond) - denoised) / h
        trace = (probe * jv).flatten(1).mean(dim=1)  # a Rademacher probe has |v_i| = 1
        return sigma * trace.clamp(1e-4, 1.0).sqrt()

    def resolved_annealing(self, prior: Any) -> dict[str, Any]:
        """What the annealing takes from the prior: its range (clipped to the prior's) and the r_t rule and blend."""
        sigmas = self.annealing_sigmas(prior)
        rule = self.r_rule(prior)
        out: dict[str, Any] = {"sigma_max": sigmas[0], "sigma_min": sigmas[-2], "r_t": rule}
        if rule == "mmse":
            out["r_t_blend"] = self.r_blend(prior)
            out["r_t_blend_source"] = "config" if self.config.r_t_blend is not None else (
                "model" if recommended_blend(prior) is not None else "default")
        return out


__all__ = ["ODE_GRIDS", "R_T_RULES", "Annealing", "AnnealingConfig", "decayed_lr", "ode_x0", "posterior_rms_of",
           "recommended_blend", "reference_scaled_lr"]
