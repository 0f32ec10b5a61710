"""MMSE: the exact posterior mean for Gaussian denoising in one denoiser call (Tweedie's formula).

For y = x + n with n ~ N(0, s^2 I) (tensor units) the measurement is exactly the variance-exploding forward process
at noise level s, so the prior's denoiser gives the posterior mean directly:

    x_hat = E[x | y] = D(y, s)

(Tweedie's formula, Robbins 1956 / Miyasawa 1961; Efron, "Tweedie's formula and selection bias", JASA 2011). It is
the estimate with the smallest expected squared error under the prior, so it scores higher PSNR than any single
posterior sample (a sample's expected squared error is twice the mean's for an exact sampler) and than DAPS's
mean of a few samples; measured in docs/default_prior.md. It is not a sampler: it returns the same image for
every seed and no spread, and looks smoother than a sample where the prior is unsure.

Only for the identity operator (the ``denoise`` task) with Gaussian noise of known std; every other problem needs
a posterior sampler (DAPS, DPS, MCG). ``check_task`` refuses the rest before any model loads.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from .base import Solver, SolverConfig

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Prior
    from .base import Generators, ProgressCallback


@dataclasses.dataclass
class MMSEConfig(SolverConfig):
    """steps: always 1 (one denoiser call)."""

    steps: int = 1


class MMSE(Solver):
    name = "mmse"
    config_class: ClassVar[type[SolverConfig]] = MMSEConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "fast": {}}

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        solver = super().from_preset(preset, **overrides)
        if int(solver.config.steps) != 1:
            raise UsageError(f"method mmse makes exactly one denoiser call, got --steps {solver.config.steps}",
                             hint="drop --steps")
        return solver

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """With the problem, the noise level the one denoiser call is told (the noise std, tensor units)."""
        return {} if problem is None else {"sigma": float(getattr(problem.noise, "std", 0.0) or 0.0)}

    def check_task(self, task: str, noise: str, num_samples: int) -> None:
        """UsageError unless this is Gaussian denoising with one output per image."""
        if task != "denoise":
            raise UsageError(f"method mmse only restores 'denoise' (gaussian noise), not '{task}'",
                             hint="use --method daps, dps or mcg")
        if noise != "gaussian":
            raise UsageError(f"method mmse needs gaussian noise, not '{noise}'", hint="use --method daps")
        if num_samples != 1:
            raise UsageError("method mmse gives one deterministic estimate, not samples",
                             hint="drop --num-samples, or use --method daps for posterior samples")

    def check_channels(self, image_channels: int, prior_channels: int) -> None:
        """A gray image on an RGB prior is a noisy look at the luminance only: Tweedie's one call needs every
        channel observed, so there is no one-call posterior mean to give."""
        if image_channels != prior_channels:
            raise UsageError(
                f"method mmse needs an image with the model's {prior_channels} channel(s), got {image_channels}: "
                "a gray image on an RGB model is a luminance measurement, which one denoiser call cannot invert",
                hint="use --method daps, or a gray model",
            )

    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        op = problem.operator
        identity = getattr(op, "kind", None) == OperatorKind.DENOISE and tuple(y.shape[1:]) == tuple(shape[1:])
        if not identity or getattr(problem.noise, "kind", None) != "gaussian":
            raise UsageError("method mmse needs the identity operator and gaussian noise (the denoise task)",
                             hint="use --method daps, dps or mcg")
        sigma = float(problem.noise.std)
        if not prior.sigma_min <= sigma <= prior.sigma_max:
            raise UsageError(f"noise std {sigma / 2:g} (on [0, 1]) is outside the model's trained range "
                             f"{prior.sigma_min / 2:g}..{prior.sigma_max / 2:g}", hint="use --method daps")
        x = prior.denoise(y, sigma)
        progress(1, 1, "denoiser")
        return x.to(torch.float32)
