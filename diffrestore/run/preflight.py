"""The checks of a run that need neither an image nor the model's weights (``validate``): the run's flags and
their ranges, the task resolved from its flags (a ``--kernel`` file read here, once), the method, its preset and
settings and its task, the prior kind of ``--model`` (from its registry family or folder layout, nothing
downloaded). Each failure is one line before anything heavy starts. The result is a ``Job``, the run resolved
once; the CLI (through ``engine.run``) and the Python API call the same function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiffrestoreError, UsageError
from ..tasks import Task, resolve_task
from .options import RunOptions, check_run_options, check_steps, samples_per_image


def make_solver(method: str, preset: str, steps: int | None, settings: Mapping[str, Any] | None = None,
                **conditioning: Any) -> Any:
    """The solver for ``--method`` with its preset (and prompt, negative_prompt, guidance for the methods that
    take them), then ``settings`` (the typed --set values, None included: a preset's value can be unset);
    UsageError for unknown names or bad overrides."""
    from ..solvers import get_solver
    from ..solvers.methods import METHOD_KINDS

    if method not in METHOD_KINDS:
        raise UsageError(f"unknown method '{method}'", hint=f"use one of {', '.join(METHOD_KINDS)}")
    overrides = {"steps": steps} if steps is not None else {}
    overrides.update(conditioning)
    try:
        solver = get_solver(method, preset, **overrides)
        if settings:
            solver = type(solver)(dataclasses.replace(solver.config, **settings))
            solver.check_config()
        return solver
    except DiffrestoreError:
        raise
    except (KeyError, ValueError, TypeError) as error:
        raise UsageError(f"cannot set up method '{method}' with preset '{preset}': {error}") from error


@dataclass(frozen=True, eq=False)
class Job:
    """A run resolved from its options, once, before anything loads: the engine, the API and the CLI read it and
    nothing changes it (an input's estimated noise level makes a new ``Task``, not a change to this one)."""

    options: RunOptions
    task: Task
    method: str  # the method that runs: daps on a latent prior is latent-daps
    num_samples: int  # -n, or the method's default
    solver: Any
    registry: Any = None  # the models.toml read (None: the shipped one)
    prior_kind: str | None = None  # of --model, from its registry family or folder layout

    @property
    def simulate(self) -> bool:
        return self.task.simulate


def validate(opts: RunOptions, task_values: Mapping[str, Any] | None = None, *, prior: Any = None,
             registry: Any = None) -> Job:
    """Every check that needs neither an image nor the model's weights, in one place: the run's flags and their
    ranges, the task's flags (resolved into a ``Task``; a --kernel file is read here, once), the method and its
    preset and settings (the solver's whole config), the method's task (e.g. mmse: denoising only), the prior
    kind. ``prior``: an already loaded prior (the Python API) whose kind is checked instead of ``opts.model``'s;
    ``registry``: the models.toml already read (else ``opts.registry``'s)."""
    from ..priors.load import prior_kind
    from ..solvers.methods import resolve_method
    from .solver_settings import typed_settings

    check_run_options(opts)
    task = resolve_task(opts.task, task_values, simulate=opts.simulate)
    num_samples = samples_per_image(opts)
    registry = registry if registry is not None else load_registry(opts.registry)
    kind = getattr(prior, "kind", "pixel") if prior is not None else prior_kind(opts.model, registry=registry)
    method = resolve_method(opts.method, kind)
    conditioning = solver_overrides(opts, method)
    settings = typed_settings(method, opts.solver_options)
    # What a method cannot do at all comes before how many steps it takes (mmse on inpaint: the task is wrong).
    solver = make_solver(method, opts.preset, None, settings, **conditioning)
    solver.check_task(task.name, task.noise, num_samples)
    if opts.steps is not None:  # the solver's own word on its steps (mmse: one call) before the general limit
        solver = make_solver(method, opts.preset, opts.steps, settings, **conditioning)
        check_steps(method, opts.steps)
    check_prior_kind(method, opts.model, kind=kind, registry=registry)
    return Job(options=opts, task=task, method=method, num_samples=num_samples, solver=solver, registry=registry,
               prior_kind=kind)


def solver_overrides(opts: RunOptions, method: str) -> dict[str, Any]:
    """--prompt, --negative-prompt, --guidance (and --g2d2-process) as solver overrides (their values are checked
    with the other run flags); a usage error for a method whose priors take no text (pixel priors), or a process
    for another method than g2d2."""
    from ..solvers.methods import CONDITIONED_METHODS

    given = {"prompt": opts.prompt, "negative_prompt": opts.negative_prompt, "guidance": opts.guidance}
    flags = [f"--{key.replace('_', '-')}" for key, value in given.items() if value is not None]
    if flags and method not in CONDITIONED_METHODS:
        raise UsageError(f"{' and '.join(flags)}: method {method} runs on a pixel prior, which takes no prompt",
                         hint="drop the flag, or use a text-conditioned model (e.g. --model sd15)")
    overrides = {key: value for key, value in given.items() if value is not None}
    if opts.g2d2_process is not None:
        if method != "g2d2":
            raise UsageError(f"--g2d2-process: method {method} has no such setting", hint="use --method g2d2")
        overrides["process"] = opts.g2d2_process
    return overrides


def load_registry(path: str | Path | None) -> Any:
    """The models.toml of ``--registry`` (RegistryError, exit 3, for a bad one); None: the default's."""
    from ..registry import load_registry as load

    return load(path) if path is not None else None


def check_prior_kind(method: str, model: str, *, kind: str | None = None, registry: Any = None) -> str | None:
    """The prior kind of ``model`` (from its registry family or its folder, before any download; or ``kind`` when
    given); UsageError when ``method`` needs another kind, naming the methods that do fit the model."""
    from ..priors.load import prior_kind
    from ..solvers.methods import METHOD_KINDS, methods_for_kind

    kind = kind or prior_kind(model, registry=registry)
    needed = METHOD_KINDS[method]
    if kind is not None and kind != needed:
        fitting = methods_for_kind(kind)
        hint = (f"use --method {' or '.join(fitting)} with this model" if fitting
                else f"no method for {kind} priors is available yet: pick a {needed} model (diffrestore models list)")
        raise UsageError(f"method {method} needs a {needed} prior, but model '{model}' is a {kind} prior",
                         hint=hint)
    return kind
