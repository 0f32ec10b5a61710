"""The classical CT reconstructions, as methods a CT user runs beside the samplers to compare: filtered
back-projection (``fbp``), SART (``sart``) and TV-regularised least squares (``tv``). Not posterior samplers and
no network: each is one call of ``operators.radon.ParallelBeamCT`` (its module doc has the maths and the
references: Kak and Slaney ch. 3 for FBP, Andersen and Kak 1984 for SART, Chambolle and Pock 2011 for the TV
solver), deterministic, one output per image.

They reconstruct the CT scale ``u`` (air 0), not the tensor ``x = 2 u - 1``: the CT task measures
``y = A x = 2 p - A 1`` (tasks/medical.py), so ``p = (y + A 1) / 2`` is the sinogram of ``u``, in which air
projects to 0. FBP of ``p`` is exactly ``ParallelBeamCT.fbp`` of the user's sinogram; FBP of ``y`` would add
the sparse-view streaks of the image square's edges. SART and TV keep ``u`` in [0, 1] (attenuation is not
negative; the CT scale ends at 3072 HU).

The engine gives them a stand-in prior (``stand_in_prior``: one channel, no network), so no model loads; every
other task is refused (``check_task``) before anything loads.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from ..operators.radon import FBP_FILTERS
from .base import Solver, SolverConfig
from .rules import Rule, integer, non_negative, one_of

if TYPE_CHECKING:
    from ..operators import Problem
    from .base import Generators, ProgressCallback


class NoPrior:
    """What a classical reconstruction gets instead of a model (prior kind "none"): one channel (the CT task's
    images have one), any size, no network."""

    kind = "none"
    name = "none (classical reconstruction)"
    channels = 1
    native_size = None
    sigma_min = sigma_max = 0.0

    def __init__(self, device: Any = "cpu") -> None:
        self.device = torch.device(device)

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        return None

    def denoise(self, x: torch.Tensor, sigma: Any, *args: Any) -> torch.Tensor:
        raise RuntimeError("a classical reconstruction has no denoiser")


@dataclasses.dataclass
class FBPConfig(SolverConfig):
    """steps: always 1. filter: the ramp filter's window (scikit-image's names; none = plain back-projection)."""

    steps: int = 1
    filter: str = "ramp"

    rules: ClassVar[dict[str, Rule]] = {**SolverConfig.rules, "filter": one_of(*FBP_FILTERS)}


@dataclasses.dataclass
class SARTConfig(SolverConfig):
    """steps: sweeps over all views (ordered subsets of one view each, golden-ratio order); relaxation in (0, 2)."""

    steps: int = 5
    relaxation: float = 1.0

    rules: ClassVar[dict[str, Rule]] = {
        **SolverConfig.rules, "relaxation": Rule("number", low=0.0, high=2.0, low_open=True, high_open=True)}


@dataclasses.dataclass
class TVConfig(SolverConfig):
    """steps: primal-dual iterations; weight: of TV against ||A u - p||^2 / (2 ||A||^2); sart_sweeps: of the start."""

    steps: int = 100
    weight: float = 1e-3
    sart_sweeps: int = 5

    rules: ClassVar[dict[str, Rule]] = {**SolverConfig.rules, "weight": non_negative(),
                                        "sart_sweeps": integer(0)}


class Reconstruction(Solver):
    """A deterministic reconstruction with no model (CT's here, MRI's in classical_mri.py): one task, one output
    per image, a stand-in prior of the task's channels."""

    prior_kind: ClassVar[str] = "none"
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}, "fast": {}}
    #: the task it solves, and what its input is (for the refusal of other tasks)
    task: ClassVar[str] = ""
    measures: ClassVar[str] = ""
    stand_in: ClassVar[type[NoPrior]] = NoPrior

    def stand_in_prior(self, device: Any) -> NoPrior:
        return self.stand_in(device)

    def check_task(self, task: str, noise: str, num_samples: int) -> None:
        """UsageError unless this is the method's task with one output per image."""
        if task != self.task:
            raise UsageError(f"method {self.name} reconstructs {self.measures} ('{self.task}'), not '{task}'",
                             hint="use --method daps, dps or mcg")
        if num_samples != 1:
            raise UsageError(f"method {self.name} gives one deterministic reconstruction, not samples",
                             hint="drop --num-samples")

    def network_calls(self) -> int:
        return 0


class Classical(Reconstruction):
    """A one-call CT reconstruction (the subclasses say which)."""

    task: ClassVar[str] = "ct"
    measures: ClassVar[str] = "CT sinograms"

    def _sample(self, prior: Any, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        op = problem.operator
        if getattr(op, "kind", None) != OperatorKind.CT or not hasattr(op, "fbp"):
            raise UsageError(f"method {self.name} needs the CT operator on a one-channel image (the ct task with "
                             "a one-channel model)", hint="use --method daps, dps or mcg")
        sinogram = (y + op(y.new_ones(1, *op.image_shape))) / 2  # p: the CT scale's projections, air -> 0
        unit = self.reconstruct(op, sinogram)
        progress(1, 1, self.name)
        return (2 * unit - 1).to(torch.float32)

    def reconstruct(self, op: Any, sinogram: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FBP(Classical):
    name = "fbp"
    config_class: ClassVar[type[SolverConfig]] = FBPConfig

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        solver = super().from_preset(preset, **overrides)
        if int(solver.config.steps) != 1:
            raise UsageError(f"method fbp is one filtered back-projection, got --steps {solver.config.steps}",
                             hint="drop --steps")
        return solver

    def reconstruct(self, op: Any, sinogram: torch.Tensor) -> torch.Tensor:
        return op.fbp(sinogram, filter=str(self.config.filter))


class SART(Classical):
    name = "sart"
    config_class: ClassVar[type[SolverConfig]] = SARTConfig

    def reconstruct(self, op: Any, sinogram: torch.Tensor) -> torch.Tensor:
        return op.sart(sinogram, int(self.config.steps), float(self.config.relaxation), clip=(0.0, 1.0))


class TV(Classical):
    name = "tv"
    config_class: ClassVar[type[SolverConfig]] = TVConfig

    def reconstruct(self, op: Any, sinogram: torch.Tensor) -> torch.Tensor:
        start = op.sart(sinogram, int(self.config.sart_sweeps), clip=(0.0, 1.0))
        return op.tv_reconstruct(sinogram, float(self.config.weight), int(self.config.steps), x0=start,
                                 clip=(0.0, 1.0))
