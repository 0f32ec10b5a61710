"""Posterior solvers: turn a prior and a problem (operator, noise, y) into posterior samples.

    solver = get_solver("daps", preset="fast", steps=30)
    x = solver.run(prior, problem, generator=generators, progress=callback)   # (N, C, H, W)

One file per paper: dps.py (arXiv 2209.14687), mcg.py (arXiv 2206.00941), daps.py (arXiv 2407.01521) and its
latent-space variant latent_daps.py (same paper, the official code's LatentDAPS), dwgf.py (arXiv 2509.19276:
particles of latents moved together by a Wasserstein gradient flow); mmse.py is
not a sampler but the one-call posterior mean for Gaussian denoising (Tweedie's formula).
Each has a hyper-parameter dataclass with presets "paper" (the paper's settings) and "fast" (a CPU budget,
measured in docs/benchmarks.md), and declares the prior kind it needs (``prior_kind``).
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..methods import METHOD_KINDS, PRESET_NAMES
from .base import Solver, SolverConfig
from .daps import DAPS, DAPSConfig
from .dps import DPS, DPSConfig
from .dwgf import DWGF, DWGFConfig
from .g2d2 import G2D2, G2D2Config
from .latent_daps import LatentDAPS, LatentDAPSConfig
from .mcg import MCG, MCGConfig
from .mmse import MMSE, MMSEConfig

#: the posterior samplers (every problem); benchmarks and generic solver tests run these
SOLVER_NAMES: tuple[str, ...] = ("dps", "mcg", "daps")
#: every --method: the samplers, then estimators that only solve some problems (their check_task says which)
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_KINDS)

_SOLVERS: dict[str, type[Solver]] = {"dps": DPS, "mcg": MCG, "daps": DAPS, "mmse": MMSE, "latent-daps": LatentDAPS,
                                  "dwgf": DWGF, "g2d2": G2D2}

__all__ = [
    "DAPS",
    "DPS",
    "DWGF",
    "G2D2",
    "MCG",
    "METHOD_NAMES",
    "MMSE",
    "PRESET_NAMES",
    "SOLVER_NAMES",
    "DAPSConfig",
    "DPSConfig",
    "DWGFConfig",
    "G2D2Config",
    "LatentDAPS",
    "LatentDAPSConfig",
    "MCGConfig",
    "MMSEConfig",
    "Solver",
    "SolverConfig",
    "get_solver",
    "solver_class",
]


def solver_class(name: str) -> type[Solver]:
    """The solver class of method ``name``; UsageError for an unknown one."""
    key = (name or "").strip().lower()
    if key not in _SOLVERS:
        raise UsageError(f"unknown solver '{name}'", hint=f"use one of {', '.join(METHOD_NAMES)}")
    return _SOLVERS[key]


def get_solver(name: str, preset: str = "fast", **overrides: Any) -> Solver:
    """The solver ``name`` with preset ``preset`` and hyper-parameter ``overrides`` (None values are ignored,
    so unset CLI flags can be passed through). Unknown names, presets or fields raise UsageError."""
    return solver_class(name).from_preset(preset, **overrides)
