"""Posterior solvers: turn a prior (a denoiser) and a problem (operator, noise, y) into posterior samples.

    solver = get_solver("daps", preset="fast", steps=30)
    x = solver.run(prior, problem, generator=make_generator(0), progress=callback)   # (N, C, H, W)

One file per paper: dps.py (arXiv 2209.14687), mcg.py (arXiv 2206.00941), daps.py (arXiv 2407.01521); mmse.py is
not a sampler but the one-call posterior mean for Gaussian denoising (Tweedie's formula).
Each has a hyper-parameter dataclass with presets "paper" (the paper's settings) and "fast" (a CPU budget,
measured in docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .base import Solver, SolverConfig
from .daps import DAPS, DAPSConfig
from .dps import DPS, DPSConfig
from .mcg import MCG, MCGConfig
from .mmse import MMSE, MMSEConfig

#: the posterior samplers (every problem); benchmarks and generic tests run these
SOLVER_NAMES: tuple[str, ...] = ("dps", "mcg", "daps")
#: every --method: the samplers, then estimators that only solve some problems (their check_task says which)
METHOD_NAMES: tuple[str, ...] = (*SOLVER_NAMES, "mmse")
PRESET_NAMES: tuple[str, ...] = ("paper", "fast")

_SOLVERS: dict[str, type[Solver]] = {"dps": DPS, "mcg": MCG, "daps": DAPS, "mmse": MMSE}

__all__ = [
    "DAPS",
    "DPS",
    "MCG",
    "METHOD_NAMES",
    "MMSE",
    "PRESET_NAMES",
    "SOLVER_NAMES",
    "DAPSConfig",
    "DPSConfig",
    "MCGConfig",
    "MMSEConfig",
    "Solver",
    "SolverConfig",
    "get_solver",
]


def get_solver(name: str, preset: str = "fast", **overrides: Any) -> Solver:
    """The solver ``name`` with preset ``preset`` and hyper-parameter ``overrides`` (None values are ignored,
    so unset CLI flags can be passed through). Unknown names, presets or fields raise UsageError."""
    key = (name or "").strip().lower()
    if key not in _SOLVERS:
        raise UsageError(f"unknown solver '{name}'", hint=f"use one of {', '.join(METHOD_NAMES)}")
    return _SOLVERS[key].from_preset(preset, **overrides)

