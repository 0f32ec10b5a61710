"""What all posterior solvers share: the Solver base (validation, no-grad loop, presets), sigma schedules, and
the measurement terms (per-image residual norms, likelihood gradients).

Conventions of every solver: images (N, C, H, W) float32 in [-1, 1]; the prior is a variance-exploding denoiser
``denoise(x, sigma) = E[x0 | x0 + sigma eps]``; every random number comes from the caller's ``torch.Generator``
(drawn on the generator's device, then moved); the loop runs under ``torch.no_grad()`` and only the step that
needs a gradient enables it; progress goes to ``progress(done, total, what)``, never to print.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from .rules import Rule, check_fields, integer, json_value

if TYPE_CHECKING:
    from ..operators import Operator, OperatorKind, Problem
    from ..priors.base import Prior

ProgressCallback = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------------------------------------- schedules


def ddpm_sigmas(steps: int, *, sigma_max: float | None = None, train_steps: int = 1000, beta_start: float = 1e-4,
                beta_end: float = 0.02) -> torch.Tensor:
    """The VE sigmas of the DDPM linear-beta schedule, respaced to ``steps`` timesteps, descending, with a final 0.

    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t). Respacing keeps ``steps`` evenly spaced integer timesteps
    from T-1 down to 0 (as ADM's ``space_timesteps``); the ancestral step between any two of them is the exact
    DDPM posterior q(x_{t'} | x_t, x0), so no beta recomputation is needed in the VE view.

    ``sigma_max``: the largest noise level the prior was trained for. Where the table's top (157 for 1000 steps)
    is above it by more than ``COVER_TOLERANCE``, clamping would leave the first steps at one noise level, doing
    nothing (7 of 100 steps at 80, the default prior's); the steps are respaced instead over the timesteps with
    sigma_t <= sigma_max: evenly from the fractional t* with sigma(t*) = sigma_max down to 0, log sigma read
    linearly between the table's integer timesteps (the VE step between any two noise levels is exact, so
    fractional timesteps need nothing else). A prior that covers the table gets the integer timesteps above,
    clamped at its sigma_max as before. Returns float32 of length steps + 1: [sigma_top, ..., sigma_0, 0].
    """
    if steps < 1 or steps > train_steps:
        raise UsageError(f"steps must be between 1 and {train_steps}, got {steps}")
    betas = torch.linspace(beta_start, beta_end, train_steps, dtype=torch.float64)
    alpha_bar = torch.cumprod(1.0 - betas, dim=0)
    table = ((1.0 - alpha_bar) / alpha_bar).sqrt()
    if sigma_max is None or float(table[-1]) <= float(sigma_max) * (1.0 + COVER_TOLERANCE):
        idx = torch.linspace(train_steps - 1, 0, steps, dtype=torch.float64).round().long()
        sigmas = table[idx] if sigma_max is None else table[idx].clamp(max=float(sigma_max))
    else:
        log_table = table.log()
        timesteps = torch.linspace(_timestep_of(log_table, math.log(float(sigma_max))), 0.0, steps,
                                   dtype=torch.float64)
        below = timesteps.floor().long().clamp(max=train_steps - 2)
        weight = timesteps - below
        sigmas = ((1.0 - weight) * log_table[below] + weight * log_table[below + 1]).exp()
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).to(torch.float32)


#: how far (relative) the DDPM table's top may exceed a prior's sigma_max and still count as covered by it: a
#: clamp that small changes nothing, and priors that state the table's own top in float32 keep their schedule
COVER_TOLERANCE = 1e-3


def _timestep_of(log_table: torch.Tensor, log_sigma: float) -> float:
    """The fractional timestep where the (increasing) log-sigma table, read linearly between its integer
    timesteps, reaches ``log_sigma``: 0 below its start."""
    below = int(torch.searchsorted(log_table, torch.tensor([log_sigma], dtype=log_table.dtype), right=True)) - 1
    if below < 0:
        return 0.0
    if below >= len(log_table) - 1:
        return float(len(log_table) - 1)
    return below + (log_sigma - float(log_table[below])) / float(log_table[below + 1] - log_table[below])


def poly_sigmas(steps: int, sigma_max: float, sigma_min: float, *, rho: float = 7.0) -> torch.Tensor:
    """EDM's polynomial schedule (rho = 7): ``steps`` sigmas from sigma_max down to sigma_min inclusive.

    sigma_i = (sigma_max^(1/rho) + i/(steps-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho. A single step gives
    [sigma_max]. Returns float32 (steps,).
    """
    if steps < 1:
        raise UsageError(f"steps must be at least 1, got {steps}")
    ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).to(torch.float32)


# ------------------------------------------------------------------------------------------------- measurement terms


def with_ct_steps(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` where a given ``steps`` also sets ``ct_steps`` (unless that is given too): for the solvers
    whose CT runs have their own step count (DAPS, MCG), so that ``--steps`` means the steps of whichever loop
    runs."""
    if overrides.get("steps") is not None and overrides.get("ct_steps") is None:
        return {**overrides, "ct_steps": overrides["steps"]}
    return overrides


def by_kind(table: dict[OperatorKind, float], operator: Operator, default: float) -> float:
    """A per-task hyper-parameter: ``table[operator.kind]``, else ``default`` (kinds are typed, see
    ``operators.OperatorKind``; a composed operator has its outer operator's kind)."""
    return table.get(getattr(operator, "kind", None), default)  # type: ignore[arg-type]


def _poisson_rate(problem: Problem) -> float | None:
    rate = getattr(problem.noise, "rate", None)
    return None if rate is None else float(rate)


def residual_weights(problem: Problem, y: torch.Tensor) -> torch.Tensor | None:
    """Inverse-variance weights of the residual y - A(x), normalised to mean 1 per image, or None (uniform).

    Poisson counts ~ Poisson(rate * x01) have variance proportional to the intensity, so (as the DPS paper's
    Poisson variant) residuals are weighted by 1 / y01, with a floor of one count so zeros stay finite. The
    normalisation is per image: a dark image beside a bright one neither weakens nor strengthens its guidance,
    and the step size means the same on every image (only the relative weights carry information).
    """
    if getattr(problem.noise, "kind", "gaussian") != "poisson":
        return None
    rate = _poisson_rate(problem) or 1.0
    y01 = (y + 1.0) / 2.0
    w = 1.0 / y01.clamp_min(1.0 / rate)
    return w / w.flatten(1).mean(dim=1).view(-1, *([1] * (w.dim() - 1)))


def residual_norms(problem: Problem, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    """Per-image (weighted) residual norm ||y - A x||, shape (N,). Never pooled over the batch: each sample's
    guidance must not depend on the others (a complaint about the reference DPS code)."""
    r = (y - ax).flatten(1)
    w = residual_weights(problem, y)
    if w is None:
        return r.norm(dim=1)
    return (r.square() * w.flatten(1)).sum(dim=1).sqrt()


def likelihood_std(problem: Problem, tau: float | None) -> float:
    """The likelihood std (tensor units) for Gaussian data terms: ``tau`` if given, else the problem's noise std.

    With known Gaussian noise the exact likelihood has tau = noise std (tensor units); noiseless problems fall
    back to 0.01 (the DAPS paper's tuning value) because tau = 0 would be a hard constraint.
    """
    if tau is not None:
        return float(tau)
    std = getattr(problem.noise, "std", None)  # Poisson models give their std at mid-grey
    if std is not None and float(std) > 0:
        return float(std)
    return 0.01


def data_gradient(problem: Problem, y: torch.Tensor, x: torch.Tensor, tau: float) -> torch.Tensor:
    """grad_x of ||y - A(x)||_W^2 / (2 tau^2), per image (summed losses: images do not interact).

    Linear operators use the adjoint (exact and cheaper than autograd); nonlinear ones go through autograd.
    Poisson problems use the per-image inverse-variance weights of ``residual_weights``.
    """
    op = problem.operator
    w = residual_weights(problem, y)
    if getattr(op, "linear", False) and hasattr(op, "adjoint"):
        r = op(x) - y
        if w is not None:
            r = r * w
        return op.adjoint(r) / tau**2
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        r = op(xg) - y
        loss = r.square() if w is None else r.square() * w
        (grad,) = torch.autograd.grad(loss.sum() / (2.0 * tau**2), xg)
    return grad.detach()


# --------------------------------------------------------------------------------------------------------- the solver


Generators = torch.Generator | Sequence[torch.Generator]


def randn(shape: tuple[int, ...] | torch.Size, generator: Generators, device: torch.device) -> torch.Tensor:
    """Standard normal float32 noise drawn on the generators' device, then moved (same seed, same numbers).

    ``generator`` is one generator for the whole tensor, or one per item of the batch (dim 0): item i then draws
    from generator i only, so its numbers do not depend on the other items (the engine passes one per sample).
    """
    return _draw(torch.randn, shape, generator, device)


def rand(shape: tuple[int, ...] | torch.Size, generator: Generators, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers, drawn as ``randn`` draws (one generator per item, or one for all)."""
    return _draw(torch.rand, shape, generator, device)


def _draw(draw: Callable[..., torch.Tensor], shape: tuple[int, ...] | torch.Size, generator: Generators,
          device: torch.device) -> torch.Tensor:
    shape = tuple(shape)
    if isinstance(generator, torch.Generator):
        return draw(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    rows = [draw(shape[1:], generator=g, device=g.device, dtype=torch.float32) for g in generator]
    return torch.stack(rows).to(device)


def image_shape_of(problem: Problem) -> tuple[int, int, int]:
    """(C, H, W) of the unknown image x: the operator's ``image_shape`` if it has one, else adjoint/pinv of y."""
    shape = getattr(problem.operator, "image_shape", None)
    if shape is not None:
        return tuple(int(v) for v in tuple(shape)[-3:])  # type: ignore[return-value]
    op = problem.operator
    for method in ("adjoint", "pinv"):
        if hasattr(op, method):
            with torch.no_grad():
                return tuple(int(v) for v in getattr(op, method)(problem.y[:1]).shape[1:])  # type: ignore[return-value]
    raise UsageError(f"cannot tell the image size of operator {type(op).__name__}: give it an image_shape attribute")


@dataclasses.dataclass
class SolverConfig:
    """Fields shared by every solver's hyper-parameters. ``rules``: what each field takes (solvers/rules.py), one
    per field of the config (subclasses add theirs), checked by ``Solver.check_config``."""

    steps: int = 100

    rules: ClassVar[dict[str, Rule]] = {"steps": integer(1)}


class Solver(ABC):
    """Base of every posterior solver: ``run`` validates, sets up no-grad, and calls ``_sample``.

    Subclasses set ``name``, ``config_class`` (a SolverConfig dataclass) and ``presets`` (name -> field values).
    """

    name: ClassVar[str]
    #: the prior kind the solver works with ("pixel", "latent" or "discrete"; see priors/base.py)
    prior_kind: ClassVar[str] = "pixel"
    config_class: ClassVar[type[SolverConfig]] = SolverConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: whether the samples of one image interact (particle methods: DWGF); they then run ``_sample_particles``
    particles_interact: ClassVar[bool] = False

    def __init__(self, config: SolverConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        """The solver with the named preset's hyper-parameters, then ``overrides`` (e.g. steps=50) on top."""
        if preset not in cls.presets:
            raise UsageError(
                f"unknown preset '{preset}' for solver {cls.name}", hint=f"use one of {', '.join(cls.presets)}"
            )
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise UsageError(
                f"unknown hyper-parameter(s) {', '.join(unknown)} for solver {cls.name}",
                hint=f"known: {', '.join(sorted(fields))}",
            )
        values = {**cls.presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
        solver = cls(cls.config_class(**values))
        solver.check_config()
        return solver

    def network_calls(self) -> int:
        """Denoiser evaluations one run makes (the cost unit of the benchmarks)."""
        return int(self.config.steps)

    def check_config(self) -> None:
        """UsageError, before any model loads, for a hyper-parameter of the wrong type or outside its range or
        choices (``--set`` and the API's ``solver_options`` land here): every field by its rule (the config's
        ``rules``); solvers with settings that depend on each other extend this. ``run`` checks again, for a
        solver built from a config directly."""
        check_fields(self.name, self.config, type(self.config).rules)

    def settings(self) -> dict[str, Any]:
        """Every setting of this solver as configured (preset, then overrides and ``--set``), JSON-friendly (tuples
        as lists): with the method, the preset's name and ``resolved``, what a run needs to be repeated. Every
        config field does something for its method."""
        return {field.name: json_value(getattr(self.config, field.name)) for field in dataclasses.fields(self.config)}

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """What the solver derives at run time from the loaded ``prior`` and the image shape ``x_shape`` (C, H, W),
        and with ``problem`` (its operator's task and its noise) from those: the values ``settings`` leaves to the
        model or the task (None there), as the run uses them. JSON-friendly, no network call, cheap (no norm
        estimate, no text encoder). The UsageError the run would raise for a setting the problem cannot take.
        Nothing to add for a solver without such values."""
        return {}

    def check_task(self, task: str, noise: str, num_samples: int) -> None:
        """UsageError, before any model loads, when this method cannot solve ``task`` with ``noise`` (a noise
        kind) and ``num_samples``. Posterior samplers solve every task; estimators such as MMSE override this."""
        return None

    def check_channels(self, image_channels: int, prior_channels: int) -> None:
        """UsageError when this method cannot restore an image of ``image_channels`` with a prior of
        ``prior_channels`` (checked once the model is loaded). Samplers take any combination the task allows."""
        return None

    def prepare(self, prior: Any) -> None:
        """Once the prior is loaded, before any image: set up what depends on it (e.g. encode a prompt), so its
        errors are one line for the whole run. Nothing to do for most solvers."""
        return None

    def needs_network_gradient(self) -> bool:
        """Whether each network call is followed by a backward pass through the network."""
        return False

    def run(
        self,
        prior: Prior,
        problem: Problem,
        *,
        generator: Generators,
        progress: ProgressCallback | None = None,
        samples_per_image: int = 1,
    ) -> torch.Tensor:
        """One posterior sample per item of ``problem.y``'s batch: (N, C, H, W) float32 on the prior's device.

        ``generator``: one ``torch.Generator`` for the batch, or a list with one per item (then each item's
        sample depends on its own generator only: what the engine passes). ``samples_per_image``: the batch is
        images after images, each as this many consecutive items with the same y; particle methods move those
        together (``particles_interact``), the others ignore it."""
        self.check_config()
        shape = image_shape_of(problem)
        batch = int(problem.y.shape[0])
        if samples_per_image < 1 or batch % samples_per_image:
            raise UsageError(f"a batch of {batch} is not whole images of {samples_per_image} samples each")
        generators = [generator] if isinstance(generator, torch.Generator) else list(generator or [])
        if not generators or not all(isinstance(g, torch.Generator) for g in generators):
            raise UsageError("solvers need an explicit torch.Generator (e.g. "
                             "diffrestore.run.runtime.make_generator(seed)) or a list of them, one per item")
        if not isinstance(generator, torch.Generator) and len(generators) != batch:
            raise UsageError(f"{len(generators)} generators for a batch of {batch}: give one per item")
        kind = getattr(prior, "kind", "pixel")
        if kind != self.prior_kind:
            raise UsageError(f"method {self.name} needs a {self.prior_kind} prior, not a {kind} one")
        prior.check_image_shape(shape)
        device = torch.device(prior.device)
        problem.operator.to(device)
        y = problem.y.detach().to(device=device, dtype=torch.float32)
        report = progress or (lambda done, total, what: None)
        with torch.no_grad():
            if self.particles_interact:
                x = self._sample_particles(prior, problem, y, (batch, *shape), generator, report, samples_per_image)
            else:
                x = self._sample(prior, problem, y, (batch, *shape), generator, report)
        return x.detach().to(torch.float32)

    def _sample_particles(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                          generator: Generators, progress: ProgressCallback, group: int) -> torch.Tensor:
        """A particle method's algorithm: as ``_sample``, with consecutive groups of ``group`` items moved
        together (one image's samples). Only solvers with ``particles_interact`` implement it."""
        raise NotImplementedError(f"{self.name} does not move particles together")

    @abstractmethod
    def _sample(self, prior: Prior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        """The algorithm; runs under no_grad with ``y`` already on the prior's device. Draw noise only through
        ``randn(shape, generator, device)`` so per-item generators keep items independent."""


def clamp_x0(x0: torch.Tensor, prior: Prior, enabled: bool) -> torch.Tensor:
    """Clamp an x0 estimate to the prior's data range where the paper does (analytic priors have none)."""
    rng = getattr(prior, "clip_range", None)
    if not enabled or rng is None:
        return x0
    return x0.clamp(rng[0], rng[1])
