"""A flag, declared once: its name on the command line and in the Python API, its type, default, range or choices,
metavar and help. The task table lists each task's flags as ``Flag`` values; the CLI builds its options from them
and ``Flag.check`` is the one place a value is checked against its range. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def or_list(values: tuple[Any, ...]) -> str:
    """``(a, b, c)`` -> ``"a, b or c"``."""
    texts = [str(v) for v in values]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


@dataclass(frozen=True)
class Flag:
    """One option of a command. ``name`` is the keyword (``kernel_size``), ``option`` the command-line spelling
    (``--kernel-size``). ``default`` is what a run uses when the flag is not given (``None``: nothing, or a value
    the task derives); the CLI passes ``None`` for a flag not given, so a run knows what the user said."""

    name: str
    option: str
    kind: type  # int, float, str, bool or Path
    help: str
    default: Any = None
    metavar: str | None = None
    short: str | None = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    low_open: bool = False  # the range excludes ``low``
    high: float | None = None
    high_open: bool = False
    odd: bool = False
    hint: str | None = None  # said with a range error (e.g. the unit a paper uses)
    show_default: bool = True  # "Default: X" at the end of the help
    parse: Callable[[Any], Any] | None = None  # turns a given value into the flag's (instead of ``kind``)
    panel: str = "Task options"  # the --help section it is listed in
    envvar: str | None = None  # an environment variable that gives it when the flag is not
    repeat: bool = False  # may be given several times (a list)

    def help_text(self) -> str:
        if not self.show_default or self.default is None or self.kind is bool:
            return self.help
        return f"{self.help} Default: {self.default}."

    def convert(self, value: Any) -> Any:
        """``value`` as this flag's type (strings from the API or a file are parsed); UsageError naming the flag."""
        if value is not None and self.parse is not None:
            return self.parse(value)
        if value is None or (isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))):
            return value
        try:
            if self.kind is bool:
                if isinstance(value, (int, float)) and value in (0, 1):
                    return bool(value)
                raise ValueError
            if self.kind is int:
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                return int(number)
            if self.kind is float:
                return float(value)
            if self.kind is Path:
                return Path(value)
            return self.kind(value)
        except (TypeError, ValueError, OverflowError):
            what = {int: "a whole number", float: "a number", bool: "true or false"}.get(self.kind, "text")
            raise UsageError(f"invalid {self.option} {value!r}: it takes {what}") from None

    def check(self, value: Any) -> Any:
        """The value converted and checked against the choices and range; UsageError otherwise."""
        value = self.convert(value)
        if value is None or self.kind in (bool, Path) or self.parse is not None:
            return value
        if self.choices is not None:
            if value not in self.choices:
                hint = f"use {or_list(self.choices)}"
                if self.kind is str:
                    raise UsageError(f"unknown {self.option} '{value}'", hint=hint)
                raise UsageError(f"{self.option} {_number(value)} is not supported", hint=hint)
            return value
        if self.kind in (int, float) and (problem := self.out_of_range(value)) is not None:
            raise UsageError(f"{self.option} must be {problem}, got {_number(value)}", hint=self.hint)
        return value

    def out_of_range(self, value: float) -> str | None:
        """What ``value`` breaks, in words ("at least 1", "below 1", "an odd number", "finite"); None if nothing."""
        if not math.isfinite(value):
            return "finite"
        low, high = self.low, self.high
        if low is not None and (value <= low if self.low_open else value < low):
            return f"above {_number(low)}" if self.low_open else f"at least {_number(low)}"
        if high is not None and (value >= high if self.high_open else value > high):
            return f"below {_number(high)}" if self.high_open else f"at most {_number(high)}"
        if self.odd and int(value) % 2 != 1:
            return "an odd number"
        return None
