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
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..operators import OperatorKind
from .base import Generators, SolverConfig, randn
from .dps import DPS, DPSConfig
from .rules import Rule, one_of

if TYPE_CHECKING:
    from ..operators import Problem


@dataclasses.dataclass
class MCGConfig(DPSConfig):
    """DPS's settings (dps.py: steps = network calls, each with backward; zeta the gradient scale alpha, None = per
    task; clip_x0; zeta_reference_steps; model_zeta), plus
    project: the measurement-set projection: "auto" (operators whose pseudo-inverse does not amplify noise:
    identity, inpainting, colorization, box super-resolution), True (every linear operator), False (never)."""

    project: bool | str = "auto"

    rules: ClassVar[dict[str, Rule]] = {**DPSConfig.rules, "project": one_of(True, False, "auto")}


#: operators whose A A^T is diagonal with entries of order 1, so A^+ passes measurement noise through unamplified
WELL_CONDITIONED = frozenset(
    {OperatorKind.DENOISE, OperatorKind.INPAINT, OperatorKind.INPAINT_BOX, OperatorKind.COLORIZE}
)


class MCG(DPS):
    name: ClassVar[str] = "mcg"
    config_class: ClassVar[type[SolverConfig]] = MCGConfig
    # presets: DPS's (same step counts; MCG's step size follows the same zeta table)

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
        """DPS's, and with the problem whether the projection runs on its operator."""
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
