"""MCG: Manifold Constrained Gradients (Chung, Sim, Ryu, Ye; NeurIPS 2022; arXiv 2206.00941).

DDPM ancestral sampling where every reverse step is followed by the manifold-constrained gradient step and a
projection onto the measurement set:

    x0_hat   = D(x_i, sigma_i)
    x'_{i-1} ~ q(x_{i-1} | x_i, x0_hat)                               (reverse step)
    x''      = x'_{i-1} - alpha * grad_{x_i} ||y - A(x0_hat(x_i))||       (MCG: gradient through the denoiser)
    x_{i-1}  = x'' + A^+ (y_{i-1} - A x''),   y_{i-1} = y + sigma_{i-1} A(z),  z ~ N(0, I)

The last line is the projection: y_{i-1} is the measurement forward-noised to the level of x_{i-1} (in the VE view
the forward process adds sigma z; A(z) is the noise it induces on the measurement). For inpainting A^+ is the
mask, so the known pixels are replaced by the noised y (the paper's P_C); for other linear operators the pinv
projection puts A x_{i-1} = y_{i-1} exactly. Nonlinear operators have no projection: the step is the gradient alone.

Two guards against measurement noise (the paper's projection assumes y is exact):
- the correction is scaled by min(1, sigma_{i-1} / sigma_y) (the rule of DDNM+, arXiv 2212.00490): while the state
  is noisier than y the projection is full, below that it fades out, so the final sample is not forced to carry
  y's noise;
- ``project="auto"`` projects only where A^+ does not amplify noise (identity, inpainting, colorization, box
  super-resolution). For a blur, A^+ multiplies the noise by 1 / (smallest kept singular value), ~1e3: measured in
  benchmarks/posterior_exactness.py, the projection took the blur error from 0.35 to 20 (relative). There MCG is
  the gradient step alone unless ``project=True``.

Shares DPS's VE formulation and step size (unsquared per-image norm, alpha in DDPM coordinates, 0.3 / 0.5 / 1.0 by
task, as the reference implementation in the DPS code base); see dps.py.

Deviations: the paper writes the gradient step with a weighting W and alpha / ||residual|| (our unsquared norm is
the same normalisation with W = I); the two noise guards above.

Sparse-view CT: on the CT operator MCG runs the official code's CT loop instead (mcg_ct.py: variance-exploding
predictor-corrector sampling, the gradient kept to the unmeasured views, a SART-like data step), with the ``ct_*``
settings; ``ct_loop=False`` runs the loop above on CT too. The paper preset takes the code's 2000 steps there
(``ct_steps``); ``--steps`` sets the step count of whichever loop runs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..operators import OperatorKind
from . import mcg_ct
from .base import Generators, ProgressCallback, Solver, SolverConfig, randn, with_ct_steps
from .dps import DPS, DPSConfig
from .rules import Rule, flag, integer, non_negative, one_of

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Prior


@dataclasses.dataclass
class MCGConfig(DPSConfig):
    """DPS's settings (dps.py: steps = network calls, each with backward; zeta the gradient scale alpha, None = per
    task; clip_x0; zeta_reference_steps; model_zeta), plus
    project: the measurement-set projection: "auto" (operators whose pseudo-inverse does not amplify noise:
    identity, inpainting, colorization, box super-resolution), True (every linear operator), False (never).
    On the CT operator (mcg_ct.py; the photo settings above do nothing there):
    ct_loop: run the official CT loop (True) or the photo loop (False);
    ct_steps: its predictor-corrector steps (2 network calls and 1 backward each); None = ``steps``;
    ct_snr: the Langevin corrector's signal-to-noise ratio; ct_weight: the MCG gradient's weight;
    ct_lambda_start, ct_lambda_end: the data step's weight, linear over the steps."""

    project: bool | str = "auto"
    ct_loop: bool = True
    ct_steps: int | None = None
    ct_snr: float = 0.16
    ct_weight: float = 0.1
    ct_lambda_start: float = 1.0
    ct_lambda_end: float = 0.6

    rules: ClassVar[dict[str, Rule]] = {
        **DPSConfig.rules, "project": one_of(True, False, "auto"), "ct_loop": flag(),
        "ct_steps": integer(1, optional=True), "ct_snr": non_negative(), "ct_weight": non_negative(),
        # 2 would overshoot: the normalised Gram operator's norm is at most 1, so steps in [0, 2) never diverge
        "ct_lambda_start": Rule("number", low=0.0, high=2.0, high_open=True),
        "ct_lambda_end": Rule("number", low=0.0, high=2.0, high_open=True),
    }


#: operators whose A A^T is diagonal with entries of order 1, so A^+ passes measurement noise through unamplified
WELL_CONDITIONED = frozenset(
    {OperatorKind.DENOISE, OperatorKind.INPAINT, OperatorKind.INPAINT_BOX, OperatorKind.COLORIZE}
)


class MCG(DPS):
    name: ClassVar[str] = "mcg"
    config_class: ClassVar[type[SolverConfig]] = MCGConfig
    # DPS's presets (same step counts; MCG's step size follows the same zeta table); on CT the paper preset takes
    # the official code's 2000 steps and the fast one its 100
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {**DPS.presets["paper"], "ct_steps": 2000},
        "fast": {**DPS.presets["fast"]},
    }

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        """As every solver's; ``--steps`` also sets ``ct_steps`` (``base.with_ct_steps``)."""
        return super().from_preset(preset, **with_ct_steps(overrides))

    def runs_ct_loop(self, operator: object) -> bool:
        """Whether this run takes the official CT loop (mcg_ct.py): the CT operator and ``ct_loop``."""
        return bool(self.config.ct_loop) and getattr(operator, "kind", None) == OperatorKind.CT

    def ct_settings(self) -> mcg_ct.CTLoop:
        """The CT loop's settings from this config."""
        cfg = self.config
        return mcg_ct.CTLoop(steps=int(cfg.ct_steps or cfg.steps), snr=float(cfg.ct_snr), weight=float(cfg.ct_weight),
                             lambda_start=float(cfg.ct_lambda_start), lambda_end=float(cfg.ct_lambda_end))

    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        if self.runs_ct_loop(problem.operator):
            return mcg_ct.sample(prior, problem, y, shape, generator, progress, self.ct_settings(), self.name)
        return super()._sample(prior, problem, y, shape, generator, progress)

    def projects(self, operator: object) -> bool:
        """Whether the projection step applies to this operator (see MCGConfig.project)."""
        if not getattr(operator, "linear", False) or self.config.project is False:
            return False
        if self.config.project is True:
            return True
        kind = getattr(operator, "kind", None)
        box_sr = kind == OperatorKind.SUPERRES and getattr(operator, "kernel", None) == "box"
        return kind in WELL_CONDITIONED or box_sr

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """DPS's, and with the problem whether the projection runs on its operator; on CT, the CT loop's steps,
        noise levels and network calls instead."""
        if problem is not None and self.runs_ct_loop(problem.operator):
            loop = self.ct_settings()
            sigmas = mcg_ct.ve_sigmas(loop.steps, float(prior.sigma_min), float(prior.sigma_max), loop.t_min)
            return {"loop": "ct", "ct_steps": loop.steps, "sigma_max": sigmas[0], "sigma_min": sigmas[-2],
                    "network_calls": 2 * loop.steps}
        out = super().resolved(prior, x_shape, problem)
        if problem is not None:
            out["project"] = self.projects(problem.operator)
        return out

    def _after_step(
        self, problem: Problem, y: torch.Tensor, x: torch.Tensor, sigma: float, generator: Generators
    ) -> torch.Tensor:
        op = problem.operator
        if not self.projects(op):
            return x
        noise_std = float(getattr(problem.noise, "std", 0.0) or 0.0)
        weight = 1.0 if noise_std <= 0.0 else min(1.0, sigma / noise_std)
        if weight <= 0.0:
            return x
        y_noised = y
        if sigma > 0.0:
            y_noised = y + sigma * op(randn(x.shape, generator, x.device))
        return x + weight * op.pinv(y_noised - op(x))
