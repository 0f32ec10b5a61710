"""What each solver setting takes: one ``Rule`` per config field (its type, its range or its choices), declared
beside the field in the config's ``rules`` table and checked by ``Solver.check_config`` before any model loads.

Values arrive typed from ``--set`` (run/solver_settings.py parses the text by the field's annotation) or as given
from the Python API's ``solver_options``, where any type can come; so a rule checks the type first (bools are not
numbers here, though Python counts them as ints), then the range. A failure is one UsageError line naming the
method, the setting and what it takes.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from ..errors import UsageError


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one setting takes. ``kind``: "integer", "number", "flag" (true/false), "choice" (one of ``choices``,
    compared by type and value: True is not 1), "text" or "pair" (two numbers, each in the range). ``low`` /
    ``high``: the range's ends (None: unbounded), excluded where ``low_open`` / ``high_open``; ``optional``: None
    is allowed; ``infinite``: a number may be +inf (meaning "no limit")."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False
    infinite: bool = False

    def check(self, method: str, key: str, value: Any) -> None:
        """UsageError unless ``value`` is what this rule takes."""
        if value is None and self.optional:
            return
        if not self._has_type(value):
            raise UsageError(f"{method}: {key} must be {self.kind_words()}, got {value!r}")
        numbers_in = [value] if self.kind in ("integer", "number") else list(value) if self.kind == "pair" else []
        for number in numbers_in:
            if math.isinf(number) and not self.infinite:
                raise UsageError(f"{method}: {key} must be a finite number, got {value!r}")
            if not self._in_range(float(number)):
                raise UsageError(f"{method}: {key} must be {self.range_words()}, got {value!r}")

    def kind_words(self) -> str:
        """The type in words, e.g. "an integer or none"."""
        words = {"integer": "an integer", "number": "a number", "flag": "true or false", "text": "a word",
                 "pair": "two numbers"}.get(self.kind) or f"one of {', '.join(map(_word, self.choices))}"
        return f"{words} or none" if self.optional else words

    def range_words(self) -> str:
        """The range in words: ">= 0", "> 0", "in [0, 1]", "in (0, 1]", ..."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def _has_type(self, value: Any) -> bool:
        if self.kind == "integer":
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if self.kind == "number":
            return _is_number(value)
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str)
        if self.kind == "pair":
            return isinstance(value, tuple | list) and len(value) == 2 and all(_is_number(v) for v in value)
        return any(type(value) is type(choice) and value == choice for choice in self.choices)

    def _in_range(self, number: float) -> bool:
        if math.isnan(number):
            return False
        above = self.low is None or (number > self.low if self.low_open else number >= self.low)
        below = self.high is None or (number < self.high if self.high_open else number <= self.high)
        return above and below


def _word(choice: Any) -> str:
    """A choice as --set writes it (true, not True)."""
    return str(choice).lower() if isinstance(choice, bool) else str(choice)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(low: int = 1, *, optional: bool = False) -> Rule:
    """A whole number >= ``low`` (1: a count of steps)."""
    return Rule("integer", low=low, optional=optional)


def positive(*, optional: bool = False, infinite: bool = False) -> Rule:
    """A number > 0."""
    return Rule("number", low=0.0, low_open=True, optional=optional, infinite=infinite)


def non_negative(*, optional: bool = False) -> Rule:
    """A number >= 0 (0 switches a term off)."""
    return Rule("number", low=0.0, optional=optional)


def fraction(*, optional: bool = False, low_open: bool = False, high_open: bool = False) -> Rule:
    """A number in [0, 1] (ends excluded as asked)."""
    return Rule("number", low=0.0, high=1.0, low_open=low_open, high_open=high_open, optional=optional)


def one_of(*choices: Any) -> Rule:
    """One of ``choices`` (words, or True / False beside words)."""
    return Rule("choice", choices=tuple(choices))


def flag() -> Rule:
    """True or false."""
    return Rule("flag")


def text(*, optional: bool = False) -> Rule:
    """Any string (a prompt; "" included)."""
    return Rule("text", optional=optional)


def pair_of_fractions(*, high_open: bool = False) -> Rule:
    """Two numbers in [0, 1] (Adam's betas: [0, 1))."""
    return Rule("pair", low=0.0, high=1.0, high_open=high_open)


def check_fields(method: str, config: Any, rules: dict[str, Rule]) -> None:
    """Every field of the dataclass ``config`` against its rule; a field without one is a programming error."""
    for field in dataclasses.fields(config):
        rule = rules.get(field.name)
        if rule is None:
            raise TypeError(f"{type(config).__name__}.{field.name} has no rule: add one to its config's rules")
        rule.check(method, field.name, getattr(config, field.name))


def json_value(value: Any) -> Any:
    """A setting as JSON takes it: tuples as lists (recursively); numbers, strings, bools and None as they are."""
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    return value


__all__ = ["Rule", "check_fields", "flag", "fraction", "integer", "json_value", "non_negative", "one_of",
           "pair_of_fractions", "positive", "text"]
