"""Posterior solvers: turn a prior and a problem (operator, noise, y) into posterior samples.

    solver = get_solver("daps", preset="fast", steps=30)
    x = solver.run(prior, problem, generator=generators, progress=callback)   # (N, C, H, W)

One file per paper: dps.py (arXiv 2209.14687), mcg.py (arXiv 2206.00941), daps.py (arXiv 2407.01521) and its
latent-space variant latent_daps.py (same paper, the official code's LatentDAPS), dwgf.py (arXiv 2509.19276:
particles of latents moved together by a Wasserstein gradient flow); mmse.py is
not a sampler but the one-call posterior mean for Gaussian denoising (Tweedie's formula); classical.py holds the
classical CT reconstructions (fbp, sart, tv) and classical_mri.py the MRI ones (zero-filled, sense, cs-wavelet,
cs-tv), which need no prior.
Each has a hyper-parameter dataclass with presets "paper" (the paper's settings) and "fast" (a CPU budget,
measured in docs/benchmarks.md), and declares the prior kind it needs (``prior_kind``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .methods import METHOD_KINDS, PRESET_NAMES

if TYPE_CHECKING:
    from .base import Solver

#: the posterior samplers (every problem); benchmarks and generic solver tests run these
SOLVER_NAMES: tuple[str, ...] = ("dps", "mcg", "daps")
#: every --method: the samplers, then estimators that only solve some problems (their check_task says which)
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_KINDS)

#: method -> (module, solver class); the modules import torch, so they load on first use and
#: ``diffrestore.solvers.methods`` (the torch-free table) can be read without them
_SOLVERS: dict[str, tuple[str, str]] = {
    "dps": ("dps", "DPS"), "mcg": ("mcg", "MCG"), "daps": ("daps", "DAPS"), "mmse": ("mmse", "MMSE"),
    "latent-daps": ("latent_daps", "LatentDAPS"), "dwgf": ("dwgf", "DWGF"), "g2d2": ("g2d2", "G2D2"),
    "fbp": ("classical", "FBP"), "sart": ("classical", "SART"), "tv": ("classical", "TV"),
    "zero-filled": ("classical_mri", "ZeroFilled"), "sense": ("classical_mri", "SENSE"),
    "cs-wavelet": ("classical_mri", "CSWavelet"), "cs-tv": ("classical_mri", "CSTV"),
}
#: public names -> the module that defines them
_EXPORTS: dict[str, str] = {
    **{cls: module for module, cls in _SOLVERS.values()},
    **{f"{cls}Config": module for module, cls in _SOLVERS.values()},
    "Solver": "base", "SolverConfig": "base",
}

__all__ = [
    "METHOD_NAMES", "PRESET_NAMES", "SOLVER_NAMES", *sorted(_EXPORTS), "get_solver", "solver_class",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def solver_class(name: str) -> type[Solver]:
    """The solver class of method ``name``; UsageError for an unknown one."""
    key = (name or "").strip().lower()
    if key not in _SOLVERS:
        raise UsageError(f"unknown solver '{name}'", hint=f"use one of {', '.join(METHOD_NAMES)}")
    module, cls = _SOLVERS[key]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def get_solver(name: str, preset: str = "fast", **overrides: Any) -> Solver:
    """The solver ``name`` with preset ``preset`` and hyper-parameter ``overrides`` (None values are ignored,
    so unset CLI flags can be passed through). Unknown names, presets or fields raise UsageError."""
    return solver_class(name).from_preset(preset, **overrides)
