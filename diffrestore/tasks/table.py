"""The task table: every task the tool knows, in the order the CLI lists them, and ``resolve_task``, which turns a
task's name and one run's flag values into a checked, immutable ``Task``. Adding a task is one ``TaskSpec`` in
this table plus its operator. No torch here (a --kernel file is read with the image reader).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import UsageError
from .flags import or_list
from .medical import MEDICAL_TASKS
from .mri import MRI_TASKS
from .photo import PHOTO_TASKS
from .spec import NOISE_SIGMA_RANGE, Task, TaskSpec, parse_noise_sigma

#: every task, by its canonical name
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (*PHOTO_TASKS, *MEDICAL_TASKS, *MRI_TASKS)}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: other names a task answers to (``sr``)
TASK_ALIASES: dict[str, str] = {alias: spec.name for spec in TASKS.values() for alias in spec.aliases}


def task_spec(name: str) -> TaskSpec:
    """The table entry of ``name`` (or an alias); UsageError for an unknown one."""
    key = str(name).strip().lower()
    key = TASK_ALIASES.get(key, key)
    if key not in TASKS:
        raise UsageError(f"unknown task '{name}'", hint=f"use one of {', '.join(TASK_NAMES)}")
    return TASKS[key]


def _tasks_with_flag(name: str) -> list[str]:
    return [spec.name for spec in TASKS.values() if any(f.name == name for f in spec.all_flags())]


def resolve_task(name: str, values: Mapping[str, Any] | None = None, *, simulate: bool = False) -> Task:
    """The task ``name`` with ``values`` (flag name -> value; None or absent = not given, so the default) checked
    and resolved: ranges, choices, combinations, the noise level ("auto" or a number), and files the flags name
    read once. UsageError (exit 2) for anything wrong, before any model loads."""
    spec = task_spec(name)
    values = dict(values or {})
    flags = {flag.name: flag for flag in spec.all_flags()}
    for key, value in values.items():
        if key in flags:
            continue
        elsewhere = _tasks_with_flag(key)
        if not elsewhere:
            raise UsageError(f"unknown option(s): {key}", hint=f"options of {spec.name}: {', '.join(sorted(flags))}")
        if value is not None and value is not False:
            option = f"--{key.replace('_', '-')}"
            raise UsageError(f"{option} only applies to {or_list(tuple(elsewhere))}, not to {spec.name}")
    params: dict[str, Any] = {}
    given: set[str] = set()
    for flag in flags.values():
        value = values.get(flag.name)
        if value is None or (flag.kind is bool and value is False):
            params[flag.name] = flag.default
        else:
            params[flag.name] = flag.check(value)
            given.add(flag.name)
    simulated = bool(simulate or spec.always_simulated)
    noise_sigma = _noise_sigma(spec, params, frozenset(given), simulated)
    spec.check(params, frozenset(given), simulated=simulated)
    spec.load(params)
    return Task(spec=spec, params=MappingProxyType(params), given=frozenset(given), simulate=simulated,
                noise_sigma=noise_sigma)


def _noise_sigma(spec: TaskSpec, params: dict[str, Any], given: frozenset[str], simulated: bool) -> float | None:
    """The Gaussian noise level the run assumes (and simulates); None: estimated from each real input."""
    if "noise_sigma" in given and params["noise"] != "gaussian":
        raise UsageError(f"--noise-sigma applies to gaussian noise, not to --noise {params['noise']}")
    if "poisson_rate" in given and params["noise"] != "poisson":
        raise UsageError("--poisson-rate applies to --noise poisson")
    value = parse_noise_sigma(params["noise_sigma"]) if "noise_sigma" in given else None
    if value == "auto":
        if simulated:
            raise UsageError("--noise-sigma auto estimates a real input's noise; --simulate adds noise of a known "
                             "level", hint=f"give a number with --simulate (default {spec.simulated_noise_sigma:g} "
                             "on [0, 1])")
        value = None
    elif value is not None:
        value = NOISE_SIGMA_RANGE.check(value)
    if params["noise"] != "gaussian":
        return 0.0  # no Gaussian term (and nothing to estimate)
    if value is None and simulated:
        value = spec.simulated_noise_sigma
    params["noise_sigma"] = "auto" if value is None else value
    return value
