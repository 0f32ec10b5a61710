"""LatentDAPS: DAPS in the latent space of an autoencoder (Zhang, Chu, Berner, Zheng, Bouman, Yue, Anandkumar;
"Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing", CVPR 2025, arXiv 2407.01521,
section 4.4 and the official code's ``LatentDAPS`` sampler).

The measurement sees an image x = D(z0) of latents z0; the prior is a diffusion model on z. Anneal
sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min (poly-7), sigma_N = 0, from z = sigma_max * N(0, I):

    z0_hat  = probability-flow ODE from (z_t, sigma_t), K Euler steps on the poly-7 grid sigma_t -> 0.001
              (K network calls; with classifier-free guidance each call runs the conditional and negative passes)
    z0      : M momentum (HMC) steps from z0_hat on
              log p(z0 | z_t, y) ~ -||z0 - z0_hat||^2 / (2 r_t^2) - ||y - A(crop(D(z0)))||^2 / (2 tau^2)
              with r_t = sigma_t; the data term's gradient J_D^T A'^T (A(x) - y) goes through the decoder (one
              decoder forward and backward per step, the real cost: M of them per annealing step) and is
              clamped per latent element before the 1 / tau^2
    z_{t+1} = z0 + sigma_{t+1} * N(0, I)                       (the last step returns z0)
    x       = crop(D(z_N))                                      (one decode)

Images of any size go through: the image is the top-left crop of a latent-grid-sized canvas (the next multiple of
the model's size step), the padding is free pixels that only the prior shapes, and the output is the crop. Nothing
is resized.

Presets: ``paper`` is the official code's per-task table (``configs/task``, groups ``ldm`` for VQ autoencoders and
``sd`` for KL ones: M, lr, lr_min_ratio, momentum; the official LatentDAPS code's configs), 50 annealing steps x 2 Euler
steps (100 calls), sigma 10 -> 0.1, HMC, guidance 7.5 on text-conditioned models. ``fast`` is a CPU budget chosen
by measurement (docs/benchmarks.md, "LatentDAPS"): 25 annealing steps x 1 call and a third of the table's HMC
steps, conditional pass only.

Conventions and deviations from the official code (which we follow where not said):
- Likelihood: ours is ||y - A||^2 / (2 tau^2), the paper's. The official code differentiates ||y - A||^2 and
  divides by tau^2, i.e. it doubles the data term (effective tau / sqrt(2)), and clamps that doubled gradient at
  +-1. So ``grad_clamp = 0.5`` on the gradient of ||.||^2 / 2 is the official clamp, and the official tau = 0.01
  is our ``tau = 0.01 / sqrt(2)`` (``OFFICIAL_TAU``).
- tau: as pixel DAPS, None is the exact likelihood (the noise std in tensor units) and the table's lr, tuned at
  the official tau, is scaled by (tau / OFFICIAL_TAU)^2 so the data term's step is the tuned one.
  ``tau=OFFICIAL_TAU, lr_reference_tau=0`` reproduces the official data weighting.
- Schedules: the official code discretises 51 points 10 -> 0.1, drops the last and decays the lr with i / 51; we
  use 50 points 10 -> 0.1 and i / 50 (last sigma 0.1 instead of 0.1138).
- The ODE's last Euler step lands on 0.001, as the official code; only the grid's floor is ours to set.
- The official code decodes three more times per annealing step to record trajectories, and returns zeros when
  the chain produces NaN; we decode once at the end, and a non-finite chain is an error that says what to lower.
- The model's own alpha_bar table maps sigma to the network's timestep (priors/vp.py); the official LDM wrapper
  uses DDPM's linear table for models trained with another.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import DiffrestoreError, UsageError
from ..operators import OperatorKind
from . import inner
from .annealing import Annealing, AnnealingConfig, decayed_lr, reference_scaled_lr
from .base import Generators, ProgressCallback, SolverConfig, by_kind, data_gradient, likelihood_std, randn
from .prompted import PromptConditioned, PromptSettings
from .rules import Rule, fraction, integer, positive

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import LatentPrior

#: the official tau (0.01 with the doubled data term) in our convention
OFFICIAL_TAU = 0.01 / math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class MCMCSetting:
    """One row of the official per-task table: HMC steps, lr, lr_min_ratio, momentum."""

    steps: int
    lr: float
    lr_min_ratio: float
    momentum: float


# The official configs (configs/task/*.yaml, DAPS main @098df6b): "ldm" for LDM's VQ-f4 (noise 0.05), "sd" for
# Stable Diffusion (noise 0.01). File-kernel blur takes the gaussian-blur row; denoising and colorization, which
# the official code has no row for, take super-resolution's (the mildest step sizes of the linear tasks).
_SR = {"ldm": MCMCSetting(24, 1.35e-4, 0.023, 0.86), "sd": MCMCSetting(30, 1e-4, 1.0, 0.45)}
_GBLUR = {"ldm": MCMCSetting(35, 2.70e-6, 0.95, 0.95), "sd": MCMCSetting(40, 1e-5, 1.0, 0.90)}
OFFICIAL_TABLE: dict[OperatorKind, dict[str, MCMCSetting]] = {
    OperatorKind.SUPERRES: _SR,
    OperatorKind.GAUSSIAN_BLUR: _GBLUR,
    OperatorKind.KERNEL_BLUR: _GBLUR,
    OperatorKind.MOTION_BLUR: {"ldm": MCMCSetting(49, 2.4e-5, 0.041, 0.45), "sd": MCMCSetting(30, 2e-5, 1.0, 0.85)},
    OperatorKind.INPAINT_BOX: {"ldm": MCMCSetting(15, 9.02e-6, 0.13, 0.74),
                               "sd": MCMCSetting(58, 1.11e-6, 0.43, 0.92)},
    OperatorKind.INPAINT: {"ldm": MCMCSetting(38, 8.40e-6, 0.013, 0.92), "sd": MCMCSetting(15, 3e-5, 1.0, 0.60)},
    OperatorKind.PHASE_RETRIEVAL: {"ldm": MCMCSetting(65, 2.1e-5, 0.12, 0.41),
                                   "sd": MCMCSetting(95, 1.10e-4, 0.027, 0.47)},
    OperatorKind.HDR: {"ldm": MCMCSetting(38, 4.52e-6, 0.015, 0.58), "sd": MCMCSetting(45, 1e-5, 1.0, 0.70)},
    OperatorKind.NONLINEAR_BLUR: {"ldm": MCMCSetting(80, 3.71e-6, 0.024, 0.91),
                                  "sd": MCMCSetting(60, 1e-5, 1.0, 0.80)},
}


def official_setting(operator: object, autoencoder: str) -> MCMCSetting:
    """The official row for this operator's task and autoencoder kind ("vq" -> ldm group, else sd)."""
    rows = by_kind(OFFICIAL_TABLE, operator, _SR)  # type: ignore[arg-type]
    return rows["ldm" if autoencoder == "vq" else "sd"]  # type: ignore[index]


@dataclasses.dataclass
class LatentDAPSConfig(PromptSettings, AnnealingConfig):
    """The annealing's settings (``annealing.AnnealingConfig``) with the official latent defaults, plus:
    langevin_steps / lr / lr_min_ratio / momentum: None = the per-task table (``steps_scale`` times its steps);
    grad_clamp: the clamp of the data gradient per latent element (inf: none); lr_reference_tau: 0 uses the lr as
    given; inner: "hmc" or "langevin"; r_t: "sigma", "jacobian", "mmse" or "auto" (pixel DAPS's "tweedie" needs a
    Gaussian inner target, which the decoder takes away);
    prompt (None: the model's default), negative_prompt and guidance (None: ``default_guidance`` on text-conditioned
    models, no guidance on the others)."""

    steps: int = 50
    ode_steps: int = 2
    langevin_steps: int | None = None  # type: ignore[assignment]
    steps_scale: float = 1.0
    lr_min_ratio: float | None = None  # type: ignore[assignment]
    momentum: float | None = None  # type: ignore[assignment]
    lr_reference_tau: float | None = OFFICIAL_TAU
    sigma_max: float = 10.0
    sigma_min: float = 0.1
    ode_sigma_min: float = 0.001
    ode_grid: str = "euler"
    inner: str = "hmc"
    grad_clamp: float = 0.5
    default_guidance: float = 7.5

    rules: ClassVar[dict[str, Rule]] = {
        **AnnealingConfig.rules, **PromptSettings.rules, "langevin_steps": integer(1, optional=True),
        "lr_min_ratio": fraction(optional=True), "momentum": fraction(optional=True), "steps_scale": positive(),
        "grad_clamp": positive(infinite=True),
    }


class LatentDAPS(PromptConditioned, Annealing):
    name: ClassVar[str] = "latent-daps"
    prior_kind: ClassVar[str] = "latent"
    config_class: ClassVar[type[SolverConfig]] = LatentDAPSConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 50, "ode_steps": 2},
        "fast": {"steps": 25, "ode_steps": 1, "steps_scale": 1 / 3, "default_guidance": 1.0},
    }

    def check_config(self) -> None:
        """Pixel DAPS's r_t="tweedie" named as such; then every field by its rule."""
        if self.config.r_t == "tweedie":
            raise UsageError(f"{self.name}: r_t='tweedie' is pixel DAPS's",
                             hint="use r_t='sigma', 'mmse' or 'jacobian'")
        super().check_config()

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """The annealing range, r_t rule, guidance and latent shape for this prior and image; with the problem, the
        task's HMC/Langevin steps, lr (first step, scaled to tau), lr_min_ratio and momentum, and tau."""
        out = {**self.resolved_annealing(prior), **self.resolved_prompt(prior),
               "latent_shape": list(prior.latent_shape(prior.padded_shape(tuple(x_shape))))}
        if problem is None:
            return out
        setting, tau, lr0 = self.inner_schedule(prior, problem)
        out.update(tau=tau, inner_steps=setting.steps, lr=lr0, lr_min_ratio=setting.lr_min_ratio,
                   momentum=setting.momentum, autoencoder=str(getattr(prior, "autoencoder_kind", "kl")))
        return out

    # ------------------------------------------------------------------------------------------- set-up
    def mcmc_setting(self, prior: LatentPrior, operator: object) -> MCMCSetting:
        """The HMC steps, lr, lr_min_ratio and momentum for this task: the table's, overridden by the config."""
        cfg = self.config
        row = official_setting(operator, str(getattr(prior, "autoencoder_kind", "kl")))
        steps = cfg.langevin_steps if cfg.langevin_steps is not None else row.steps * float(cfg.steps_scale)
        return MCMCSetting(
            steps=max(1, round(steps)),
            lr=float(cfg.lr) if cfg.lr is not None else row.lr,
            lr_min_ratio=float(cfg.lr_min_ratio) if cfg.lr_min_ratio is not None else row.lr_min_ratio,
            momentum=float(cfg.momentum) if cfg.momentum is not None else row.momentum,
        )

    def inner_schedule(self, prior: LatentPrior, problem: Problem) -> tuple[MCMCSetting, float, float]:
        """(the task's inner setting, the likelihood's tau, the first step's lr scaled to that tau)."""
        setting = self.mcmc_setting(prior, problem.operator)
        tau = likelihood_std(problem, self.config.tau)
        return setting, tau, reference_scaled_lr(setting.lr, tau, self.config.lr_reference_tau)

    # ------------------------------------------------------------------------------------- the data term
    def _data_term(self, prior: LatentPrior, problem: Problem, y: torch.Tensor, size: tuple[int, int],
                   tau: float) -> inner.DataTerm:
        """z -> clamp(J_D(z)^T grad_x ||y - A(x)||^2 / 2) / tau^2 at x = crop(D(z)): the pixel gradient as pixel
        DAPS computes it (the adjoint for linear operators), pulled back through the decoder by one VJP."""
        h, w = size
        clamp = self.config.grad_clamp

        def term(z: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                x = prior.decode(zg)[..., :h, :w]
                g = data_gradient(problem, y, x.detach(), 1.0)
                (gz,) = torch.autograd.grad(x, zg, g)
            if math.isfinite(clamp):
                gz = gz.clamp(-float(clamp), float(clamp))
            return gz / tau**2

        return term

    # ------------------------------------------------------------------------------------------ the loop
    def _sample(self, prior: LatentPrior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        cfg = self.config
        batch, _, h, w = shape
        cond = self.conditioning(prior)
        latent = prior.latent_shape(prior.padded_shape(shape[1:]))
        setting, tau, lr0 = self.inner_schedule(prior, problem)
        data_term = self._data_term(prior, problem, y, (h, w), tau)
        sigmas = self.annealing_sigmas(prior)
        device = torch.device(prior.device)
        total = len(sigmas) - 1
        z = sigmas[0] * randn((batch, *latent), generator, device)
        for i in range(total):
            s, s_next = sigmas[i], sigmas[i + 1]
            z0_hat, denoised = self._ode_x0(prior, z, s, cond)
            r = self._r(prior, z, s, denoised, generator, cond)
            lr = decayed_lr(lr0, i, total, setting.lr_min_ratio)
            if cfg.inner == "hmc":
                z0 = inner.hmc(problem, y, z0_hat, r, tau, lr, setting.steps, setting.momentum, generator,
                               data_term=data_term)
            else:
                z0 = inner.langevin(problem, y, z0_hat, r, tau, lr, setting.steps, generator, data_term=data_term)
            if not bool(torch.isfinite(z0).all()):
                raise DiffrestoreError(
                    f"latent-daps diverged at annealing step {i + 1} of {total} (sigma {s:.3g})",
                    hint="lower the step size (lr) or the guidance, or set grad_clamp")
            z = z0 + s_next * randn(z0.shape, generator, device) if s_next > 0.0 else z0
            progress(i + 1, total, self.name)
        return prior.decode(z)[..., :h, :w]


__all__ = ["OFFICIAL_TABLE", "OFFICIAL_TAU", "LatentDAPS", "LatentDAPSConfig", "MCMCSetting", "official_setting"]
