"""``--set KEY=VALUE``: any hyper-parameter of a solver's config from the command line (and ``solver_options`` in
the Python API), typed by the config dataclass's own annotations, so ``--set inner_spread=1`` is the float the
solver expects and ``--set r_t_blend=none`` the None it allows. The values go on top of ``--preset``; settings that
have their own flag (--steps, --prompt, --negative-prompt, --guidance, --g2d2-process) are refused here, so one
run has one way to say each thing. No torch here: the solver classes are imported only when a run has settings.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UsageError

#: config fields that a flag of their own sets
FLAG_FIELDS = {"steps": "--steps", "prompt": "--prompt", "negative_prompt": "--negative-prompt",
               "guidance": "--guidance", "process": "--g2d2-process", "num_samples": "--num-samples"}

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")
_NONE = ("none", "null")


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a UsageError for a pair without '=' or a key given twice."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--set {pair!r} is not KEY=VALUE", hint="e.g. --set inner_spread=1")
        if key in settings:
            raise UsageError(f"--set {key} is given twice ({settings[key]!r} and {value!r})", hint="give it once")
        settings[key] = value.strip()
    return settings


def typed_settings(method: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` checked against method's config fields and converted: strings (from the command line) are
    parsed as the field's type, other values (the Python API) are taken as given. UsageError names the setting,
    what it takes and the known fields."""
    if not settings:
        return {}
    from ..solvers import solver_class

    config_class = solver_class(method).config_class
    hints = typing.get_type_hints(config_class)  # also the class variables (a config's rules): not settings
    names = {f.name for f in dataclasses.fields(config_class)}
    fields = sorted(names - set(FLAG_FIELDS))
    typed: dict[str, Any] = {}
    for key, value in settings.items():
        if key in FLAG_FIELDS:
            raise UsageError(f"--set {key}: use {FLAG_FIELDS[key]} for this", hint=f"{FLAG_FIELDS[key]} VALUE")
        if key not in names:
            known = f"known: {', '.join(fields)}" if fields else f"method {method} takes no --set settings"
            raise UsageError(f"--set {key}: method {method} has no setting {key!r}", hint=known)
        typed[key] = parse_value(key, value, hints[key]) if isinstance(value, str) else value
    return typed


def parse_value(key: str, text: str, annotation: Any) -> Any:
    """``text`` as a value of ``annotation`` (int, float, bool, str, a union of them with None, a tuple of
    floats written 'a,b'); UsageError saying what the setting takes."""
    options = _union_members(annotation)
    lowered = text.lower()
    if type(None) in options and lowered in _NONE:
        return None
    for option in (o for o in options if o is not type(None)):
        parsed = _parse_as(text, lowered, option)
        if parsed is not _FAILED:
            return parsed
    wanted = " or ".join(_describe(o) for o in options)
    raise UsageError(f"--set {key}={text}: {key} takes {wanted}", hint=f"e.g. --set {key}={_example(options)}")


_FAILED = object()


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        # bool before the others: 'true' is a bool for `bool | str`, not the string
        return tuple(sorted(args, key=lambda a: (a is not bool, a is str)))
    return (annotation,)


def _parse_as(text: str, lowered: str, option: Any) -> Any:
    if option is bool:
        return True if lowered in _TRUE else False if lowered in _FALSE else _FAILED
    if option is int:
        try:
            return int(text)
        except ValueError:
            return _FAILED
    if option is float:
        try:
            value = float(text)
        except ValueError:
            return _FAILED
        return value if math.isfinite(value) else _FAILED
    if option is str:
        return text if text else _FAILED
    if typing.get_origin(option) is tuple:
        parts = [p.strip() for p in text.split(",")]
        members = typing.get_args(option)
        if len(parts) != len(members):
            return _FAILED
        values = [_parse_as(p, p.lower(), m) for p, m in zip(parts, members, strict=True)]
        return _FAILED if any(v is _FAILED for v in values) else tuple(values)
    return _FAILED


def _describe(option: Any) -> str:
    if option is type(None):
        return "none"
    if typing.get_origin(option) is tuple:
        return f"{len(typing.get_args(option))} comma-separated numbers"
    return {bool: "true/false", int: "an integer", float: "a finite number", str: "a word"}.get(option, str(option))


def _example(options: tuple[Any, ...]) -> str:
    first = next(o for o in options if o is not type(None))
    if typing.get_origin(first) is tuple:
        return ",".join("0.9" for _ in typing.get_args(first))
    return {bool: "true", int: "10", float: "0.5", str: "VALUE"}.get(first, "VALUE")


def recorded(solver: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The summary's ``settings`` entry: each --set key with the value the solver took (typed, JSON-friendly as
    ``Solver.settings`` gives it: a tuple as a list); nothing when no setting was given, so summaries without --set
    stay as they were (and parts of a run must agree on it)."""
    if not settings:
        return {}
    taken = solver.settings()
    return {"settings": {key: taken[key] for key in settings}}
