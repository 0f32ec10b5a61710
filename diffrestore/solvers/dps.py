"""DPS: Diffusion Posterior Sampling (Chung, Kim, Mccann, Klasky, Ye; ICLR 2023; arXiv 2209.14687).

Ancestral DDPM sampling with a measurement-gradient correction after every reverse step:

    x0_hat   = D(x_i, sigma_i)                                   (Tweedie estimate, one network call)
    x'_{i-1} ~ q(x_{i-1} | x_i, x0_hat)                          (the DDPM reverse step)
    x_{i-1}  = x'_{i-1} - zeta * grad_{x_i} ||y - A(x0_hat(x_i))||   (backprop through the network)

Written in the variance-exploding view (x = x0 + sigma eps, sigma = sqrt((1 - alpha_bar) / alpha_bar)) on the DDPM
linear-beta schedule; there the DDPM posterior q(x_{i-1} | x_i, x0) is exactly
    mean = x0 + (sigma_{i-1}^2 / sigma_i^2) (x_i - x0),   var = sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2.
The official code applies zeta in DDPM (variance-preserving) coordinates x_vp = x / sqrt(1 + sigma^2); mapped to the
VE view the same update reads x_{i-1} -= zeta * sqrt((1 + sigma_i^2)(1 + sigma_{i-1}^2)) * grad_{x_i}, which is what
we do, so zeta means the same as in the official configs.

Step size as the official code (not the paper's zeta / ||residual||): the gradient of the UNSQUARED residual norm,
taken per image (the reference code takes it over the whole batch, so the batch size changed results),
zeta = 0.3 (super-resolution, deblurring and everything else), 0.5 (inpainting), 1.0 (phase retrieval).
Poisson noise: residuals weighted by 1 / y normalised to mean 1 per image (the paper's weighted least squares; with
the unsquared norm the step does not depend on the weights' scale, so a dark image gets the same step as a bright one).
x0_hat is clamped to the data range as in the official code (``clip_x0``; analytic priors have no range).

Fewer steps: the official zeta is a per-step size tuned for 1000 steps; respaced to 100 steps the same zeta gives a
tenth of the total guidance and the samples drift from y (benchmarks/posterior_exactness.py, 100 steps: relative
mean error 0.20 / 0.40 / 0.30 on inpainting / x2 super-resolution / blur, the SR one worse than the pseudo-inverse's
0.31). ``zeta_reference_steps=1000`` (the "fast" preset) scales zeta by 1000 / steps: 0.06 / 0.06 / 0.06, as good as
1000 steps. The "paper" preset keeps the official zeta untouched.

Other networks: the official zeta was tuned for the papers' ADM checkpoints; the step acts through the denoiser's
Jacobian, so another network wants another size. With ``model_zeta`` (the "fast" preset) a model folder's
``recommended.dps_zeta`` (``model_zeta``: a number or a table by operator kind, on the official scale) replaces the
official table; a model that says nothing keeps it. With ``recommended.dps_zeta_pixels`` (the C x H x W the zeta
was measured at) it is scaled by sqrt(values / that): the step of the unsquared norm is a unit direction, so its
size per pixel falls as 1 / sqrt(values), and the official zeta under-guides large images (default prior, 512 x 512,
SR x4: 11.0 dB with the official table, 25.2 with its measured 256 x 256 table scaled; docs/benchmarks.md). The
shipped default prior recommends 1.0 (super-resolution and random inpainting 2.0) at 3 x 256 x 256.

Deviations: the reverse-step variance is DDPM's "fixed small" posterior variance (the official ADM networks learn
it; our denoiser interface does not expose a variance); the initial state is N(0, (1 + sigma_max^2) I), the VE
image of DDPM's x_T ~ N(0, I). Fewer steps than 1000 respace the timesteps evenly (as ADM's respacing). A prior
trained below the table's top sigma (157; the default prior: 80) gets the steps respaced over sigma <= its sigma_max
(``base.ddpm_sigmas``), not clamped there (7 of the fast preset's 100 steps sat at 80): measured on the default prior,
fast preset, astronaut / coffee at 64 px, 3 seeds, 100 calls either way: SR x2 21.29 -> 21.39 / 24.22 -> 24.31 dB,
box inpainting 17.82 -> 17.79 / 19.12 -> 19.15 dB (within the seeds' spread).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..operators import OperatorKind
from .base import (
    Generators,
    ProgressCallback,
    Solver,
    SolverConfig,
    by_kind,
    clamp_x0,
    ddpm_sigmas,
    randn,
    residual_norms,
)
from .rules import Rule, flag, integer, non_negative

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Prior

#: the official configs' guidance scales by task (every other task: ZETA_DEFAULT)
ZETA_BY_KIND: dict[OperatorKind, float] = {
    OperatorKind.INPAINT: 0.5,
    OperatorKind.INPAINT_BOX: 0.5,
    OperatorKind.PHASE_RETRIEVAL: 1.0,
    OperatorKind.NONLINEAR_BLUR: 0.3,  # nonlinear_deblur_config.yaml: the default, written out as the paper's
    # measured, not official (InverseBench's DPS has another step rule): mri-phantom, 4x single-coil training
    # phantoms, fast preset: 0.1 / 0.2 / 0.3 / 0.5 / 1.0 -> 22.90 / 24.58 / 25.22 / 23.59 / 21.95 dB
    OperatorKind.MRI: 0.3,
    OperatorKind.CT: 0.003,  # no paper value: measured with ct-phantom (docs/ct.md, "Diffusion methods on CT")
}
ZETA_DEFAULT = 0.3


@dataclasses.dataclass
class DPSConfig(SolverConfig):
    """steps: reverse DDPM steps = network calls (each with a backward pass).
    zeta: guidance scale; None = the per-task table above (or, with model_zeta, the model's own: model_zeta()).
    clip_x0: clamp x0_hat to the data range.
    zeta_reference_steps: if set, zeta is multiplied by zeta_reference_steps / steps, so a shortened run keeps the
    total guidance of a run of that many steps (the "fast" preset: 1000, see the module docstring)."""

    steps: int = 1000
    zeta: float | None = None
    clip_x0: bool = True
    zeta_reference_steps: int | None = None
    model_zeta: bool = False

    rules: ClassVar[dict[str, Rule]] = {
        **SolverConfig.rules, "zeta": non_negative(optional=True), "clip_x0": flag(),
        "zeta_reference_steps": integer(1, optional=True), "model_zeta": flag(),
    }


def model_zeta(prior: object, operator: object) -> float | None:
    """The step a prior asks for on this operator, or None: ``recommended.dps_zeta`` in its model folder's config,
    one number or a table by operator kind (``{"default": 1.0, "superres": 3.0}``), on the official configs' scale
    (per step of 1000). The step acts through the denoiser's Jacobian, so its right size is a property of the
    network, measured per model (at the image size and noise it will see: docs/benchmarks.md); the official
    table is tuned for the papers' ADM checkpoints at 256 x 256."""
    recommended = getattr(prior, "recommended", None) or {}
    zeta = recommended.get("dps_zeta")
    if isinstance(zeta, dict):
        kind = getattr(getattr(operator, "kind", None), "value", None)
        zeta = zeta.get(kind, zeta.get("default"))
    if zeta is None:
        return None
    return float(zeta) * size_factor(recommended.get("dps_zeta_pixels"), operator)


def size_factor(reference_values: object, operator: object) -> float:
    """sqrt(values per image / reference_values), or 1 without a reference (``recommended.dps_zeta_pixels``).

    The step of the unsquared residual norm is a unit direction, so its size per pixel falls as 1 / sqrt(values);
    a zeta measured at one image size keeps its per-pixel step at another when scaled by this. Measured with the
    default prior (docs/benchmarks.md): the 256 x 256 table scaled this way beats the official one at 128, 256 and
    512 px (at 512: SR x4 25.2 against 11.0 dB)."""
    shape = getattr(operator, "image_shape", None)
    if reference_values is None or shape is None:
        return 1.0
    return math.sqrt(math.prod(shape) / float(reference_values))


class DPS(Solver):
    name: ClassVar[str] = "dps"
    config_class: ClassVar[type[SolverConfig]] = DPSConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 1000},
        "fast": {"steps": 100, "zeta_reference_steps": 1000, "model_zeta": True},
    }

    def needs_network_gradient(self) -> bool:
        return True

    def guidance_scale(self, problem: Problem, prior: object = None) -> float:
        """The step zeta: the given one, else (with ``model_zeta``, the fast preset) the one the prior's model folder
        recommends, else the official per-task table; scaled by zeta_reference_steps / steps when that is set."""
        return self.guidance_and_source(problem, prior)[0]

    def guidance_and_source(self, problem: Problem, prior: object = None) -> tuple[float, str]:
        """``guidance_scale`` and where it came from: "config", "model" (its recommendation, scaled to the image
        size) or "task" (the official table)."""
        cfg = self.config
        measured = model_zeta(prior, problem.operator) if cfg.model_zeta and prior is not None else None
        if cfg.zeta is not None:
            zeta, source = float(cfg.zeta), "config"
        elif measured is not None:
            zeta, source = measured, "model"
        else:
            zeta, source = by_kind(ZETA_BY_KIND, problem.operator, ZETA_DEFAULT), "task"
        if cfg.zeta_reference_steps:
            zeta *= float(cfg.zeta_reference_steps) / float(cfg.steps)
        return zeta, source

    def sigma_schedule(self, prior: Prior) -> list[float]:
        """The reverse steps' sigmas, then 0: the DDPM table respaced over the noise levels the prior covers
        (``ddpm_sigmas``: the paper's timesteps on a prior that covers the table)."""
        return ddpm_sigmas(int(self.config.steps), sigma_max=float(prior.sigma_max)).tolist()

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """The first and last noise levels of the schedule for this prior, and whether x0_hat is clamped (the
        prior's data range); with the problem, zeta as used (the model's recommendation scaled to the image size,
        and to the step count) and its source."""
        sigmas = self.sigma_schedule(prior)
        out: dict[str, Any] = {"sigma_max": sigmas[0], "sigma_min": sigmas[-2],
                               "clip_x0": bool(self.config.clip_x0 and getattr(prior, "clip_range", None) is not None)}
        if problem is not None:
            out["zeta"], out["zeta_source"] = self.guidance_and_source(problem, prior)
        return out

    def _guided_x0(
        self, prior: Prior, problem: Problem, y: torch.Tensor, x: torch.Tensor, sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x0_hat(x) and grad_x of the per-image residual norms (summed: images stay independent)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = clamp_x0(prior.denoise(xg, sigma), prior, self.config.clip_x0)
            norms = residual_norms(problem, y, problem.operator(x0))
            (grad,) = torch.autograd.grad(norms.sum(), xg)
        return x0.detach(), grad.detach()

    def _reverse_step(
        self, x: torch.Tensor, x0: torch.Tensor, s: float, s_prev: float, generator: Generators
    ) -> torch.Tensor:
        """A sample of the DDPM posterior q(x_{i-1} | x_i, x0) in the VE view; the mean only when s_prev == 0."""
        ratio = (s_prev / s) ** 2
        mean = x0 + ratio * (x - x0)
        if s_prev <= 0.0:
            return mean
        std = s_prev * math.sqrt(max(1.0 - ratio, 0.0))
        return mean + std * randn(x.shape, generator, x.device)

    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        sigmas = self.sigma_schedule(prior)
        zeta = self.guidance_scale(problem, prior)
        device = torch.device(prior.device)
        x = math.sqrt(1.0 + sigmas[0] ** 2) * randn(shape, generator, device)
        total = len(sigmas) - 1
        for i in range(total):
            s, s_prev = sigmas[i], sigmas[i + 1]
            x0, grad = self._guided_x0(prior, problem, y, x, s)
            x = self._reverse_step(x, x0, s, s_prev, generator)
            x = x - zeta * math.sqrt((1.0 + s**2) * (1.0 + s_prev**2)) * grad
            x = self._after_step(problem, y, x, s_prev, generator)
            progress(i + 1, total, self.name)
        return x

    def _after_step(
        self, problem: Problem, y: torch.Tensor, x: torch.Tensor, sigma: float, generator: Generators
    ) -> torch.Tensor:
        """Hook for MCG's projection; DPS does nothing."""
        return x
