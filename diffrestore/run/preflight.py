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
from .options import RunOptions, check_run_options, check_steps, run_metrics, samples_per_image


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
    metrics: tuple[str, ...] = ()  # what a simulated run scores each image with (none for real inputs)

    @property
    def simulate(self) -> bool:
        return self.task.simulate


@dataclass(frozen=True, eq=False)
class Checked:
    """What ``check_flags`` resolved without torch: everything of a ``Job`` but the solver, which ``make_job``
    builds (the solver modules import torch)."""

    options: RunOptions
    task: Task
    method: str
    num_samples: int
    conditioning: dict[str, Any]  # --prompt, --negative-prompt, --guidance, --g2d2-process (and -n) as overrides
    registry: Any = None
    prior_kind: str | None = None
    metrics: tuple[str, ...] = ()


def check_flags(opts: RunOptions, task_values: Mapping[str, Any] | None = None, *, prior: Any = None,
                registry: Any = None) -> Checked:
    """The checks that need no image, no weights and no torch, so that a bad flag fails in a fraction of a second
    (the engine plans the inputs, also torch-free, before ``make_job``): the run's flags and their ranges and
    names (method, device, dtype), the task's flags (resolved into a ``Task``; a --kernel file is read here,
    once), the prior kind of --model (a name the registry lacks refused) and the method that runs on it, the
    prompt flags against the method, the --steps limit. ``prior``: an already loaded prior (the Python API)
    whose kind is checked instead of ``opts.model``'s; ``registry``: the models.toml already read (else
    ``opts.registry``'s)."""
    from ..priors.load import prior_kind
    from ..solvers.methods import MAX_STEPS, METHOD_KINDS, resolve_method, sample_settings

    check_run_options(opts)
    task = resolve_task(opts.task, task_values, simulate=opts.simulate)
    metrics = check_metrics(opts, task)
    num_samples = samples_per_image(opts)
    registry = registry if registry is not None else load_registry(opts.registry)
    kind = getattr(prior, "kind", "pixel") if prior is not None else prior_kind(opts.model, registry=registry)
    if prior is None and kind is None and METHOD_KINDS.get(opts.method) != "none":  # fbp, sense: no model loads
        check_model_name(opts.model, registry)
    method = resolve_method(opts.method, kind)
    # and -n for the methods whose config reads it (DAPS: one sample takes the inner mean, several are drawn)
    conditioning = {**solver_overrides(opts, method), **sample_settings(method, num_samples)}
    check_prior_kind(method, opts.model, kind=kind, registry=registry)
    if MAX_STEPS.get(method, 0) > 1:  # a one-call method (mmse) says first what it cannot do (make_job)
        check_steps(method, opts.steps)
    return Checked(options=opts, task=task, method=method, num_samples=num_samples, conditioning=conditioning,
                   registry=registry, prior_kind=kind, metrics=metrics)


def make_job(checked: Checked) -> Job:
    """The solver for a checked run, its whole config checked (--set values, the preset, the method's task):
    the part of the checks that imports torch. Still before any image or weights."""
    from .solver_settings import typed_settings

    opts, method = checked.options, checked.method
    settings = typed_settings(method, opts.solver_options)
    # What a method cannot do at all comes before how many steps it takes (mmse on inpaint: the task is wrong).
    solver = make_solver(method, opts.preset, None, settings, **checked.conditioning)
    solver.check_task(checked.task.name, checked.task.noise, checked.num_samples)
    if opts.steps is not None:  # the solver's own word on its steps (mmse: one call) before the general limit
        solver = make_solver(method, opts.preset, opts.steps, settings, **checked.conditioning)
        check_steps(method, opts.steps)
    return Job(options=opts, task=checked.task, method=method, num_samples=checked.num_samples, solver=solver,
               registry=checked.registry, prior_kind=checked.prior_kind, metrics=checked.metrics)


def validate(opts: RunOptions, task_values: Mapping[str, Any] | None = None, *, prior: Any = None,
             registry: Any = None) -> Job:
    """Every check that needs neither an image nor the model's weights, in one place: ``check_flags`` (no torch)
    then ``make_job`` (the solver and its whole config). The engine runs the two apart, with the input planning
    between them, so that a missing file also fails before torch loads."""
    return make_job(check_flags(opts, task_values, prior=prior, registry=registry))


def check_metrics(opts: RunOptions, task: Task) -> tuple[str, ...]:
    """The metrics a run scores its images with: --metrics (or the default) when the task is simulated, none
    otherwise. UsageError for --metrics without a clean image to score against, or for a metric over a whole set
    (FID, KID), which one image cannot give: ``diffrestore eval`` computes those over its folder."""
    from ..metrics.catalogue import describe

    names = run_metrics(opts)  # an unknown name first, whatever else is wrong
    if not task.simulate:
        if opts.metrics is not None:
            raise UsageError("--metrics needs --simulate: a real input has no clean image to score against",
                             hint="add --simulate to degrade a clean image, restore and score it")
        return ()
    per_set = [name for name in names if describe(name).kind == "set"]
    if per_set:
        raise UsageError(f"--metrics {per_set[0]} is computed over a set of images, not per image",
                         hint=f"use 'diffrestore eval {task.name} CLEAN_DIR ... --metrics {','.join(names)}'")
    return names


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


def check_model_name(model: str, registry: Any = None) -> None:
    """ModelError (exit 3) at once for a plain ``--model`` name that the registry does not have, as loading
    would say it (``Registry.get``, with the names it resembles) after torch and the inputs. A path, existing or
    not, is left to the loader, which names what is wrong with the folder after the inputs were checked."""
    from ..registry import load_registry as load

    registry = registry if registry is not None else load()
    if model in registry or "/" in model or "\\" in model or model.startswith((".", "~")) or Path(model).exists():
        return
    registry.get(model)  # raises the registry's own "unknown model" error


def check_prior_kind(method: str, model: str, *, kind: str | None = None, registry: Any = None) -> str | None:
    """The prior kind of ``model`` (from its registry family or its folder, before any download; or ``kind`` when
    given); UsageError when ``method`` needs another kind, naming the methods that do fit the model."""
    from ..priors.load import prior_kind
    from ..solvers.methods import METHOD_KINDS, methods_for_kind

    kind = kind or prior_kind(model, registry=registry)
    needed = METHOD_KINDS[method]
    if kind == "metric":  # a registry entry of a metric's network: no method's kind, and no prior at all
        from ..metrics.catalogue import weights_text

        raise UsageError(f"model '{model}' holds the {weights_text(model)}, not a diffusion prior: no --method "
                         "restores with it", hint=f"pick a {needed} prior for --model (diffrestore models list); "
                         "metric weights are used by --metrics and diffrestore eval")
    if kind is not None and kind != needed and needed != "none":  # "none": a classical method loads no model
        fitting = methods_for_kind(kind)
        hint = (f"use --method {' or '.join(fitting)} with this model" if fitting
                else f"no method for {kind} priors is available yet: pick a {needed} model (diffrestore models list)")
        raise UsageError(f"method {method} needs a {needed} prior, but model '{model}' is a {kind} prior",
                         hint=hint)
    return kind
