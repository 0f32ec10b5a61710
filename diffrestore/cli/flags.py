"""The options of the restoration commands, built from the declarations: every task command has its own flags
first (the task table's, ``tasks``) and then the same shared flags (``run.flags``): same names, same meaning, same
units in the help. ``commands`` builds the commands from these parameter lists. No torch here: ``--help`` must
answer at once.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from ..run.flags import RUN_FLAGS
from ..tasks.flags import Flag
from ..tasks.spec import TaskSpec, noise_flags

#: the measurement-noise flags, shown in their own help panel
NOISE_FLAG_NAMES = frozenset(flag.name for flag in noise_flags(0.0))

_PANEL_NOISE = "Measurement noise"

INPUTS_HELP = (
    "Image files, folders (their images, sorted; add --recursive for subfolders) or quoted globs ('scans/*.png')."
)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _opt(*decls: str, help: str, panel: str, **kwargs: Any) -> typer.models.OptionInfo:
    return typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)


class _PlainPlaceholders:
    """Help that shows our placeholders, not typer's type names (<bool>, <int>, <list[str]>): a flag shows none,
    an argument its name, an option its metavar. Older typers (click's TEXT, INTEGER) are left alone."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if hasattr(param, "display_type_rich") and (
                getattr(param, "is_flag", False) or getattr(param, "param_type_name", "") == "argument"
            ):
                param.display_type_rich = _no_placeholder
        return params


def _no_placeholder(ctx: Any = None) -> None:
    return None


class PlainHelpCommand(_PlainPlaceholders, typer.core.TyperCommand):
    """A task command or ``train``."""


class PlainHelpGroup(_PlainPlaceholders, typer.core.TyperGroup):
    """The root command (``--version``, ``--help``)."""


def sub_app(name: str, help: str) -> typer.Typer:
    """A command group under ``diffrestore`` (``models``, ``summary``), with the root's help and error style."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, cls=PlainHelpGroup, pretty_exceptions_enable=False,
                       add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


INPUTS = _param(
    "inputs", Annotated[list[str], typer.Argument(help=INPUTS_HELP, show_default=False, metavar="INPUTS")],
    inspect.Parameter.empty,
)

def flag_param(flag: Flag, default: Any) -> inspect.Parameter:
    """A typer option from a declared flag; ``default`` is what typer passes when it is not given (a run flag's
    own default; None for a task flag, so a run knows what the user said)."""
    decls = (flag.option, flag.short) if flag.short else (flag.option,)
    panel = _PANEL_NOISE if flag.name in NOISE_FLAG_NAMES else flag.panel
    if flag.kind is bool:
        return _param(flag.name, Annotated[bool, _opt(*decls, help=flag.help_text(), panel=panel)], bool(default))
    kind: Any = str if flag.parse is not None else flag.kind
    kind = list[kind] if flag.repeat else kind
    option = _opt(*decls, help=flag.help_text(), panel=panel, metavar=flag.metavar, show_default=False,
                  envvar=flag.envvar)
    return _param(flag.name, Annotated[kind | None, option], default)


#: the shared options of every restoration command, from the run's flag declarations
SHARED_PARAMS = [flag_param(flag, flag.default) for flag in RUN_FLAGS]


def with_params(command: Any, params: list[inspect.Parameter], name: str) -> Any:
    """``command`` (taking ``**values``) declared to typer as a function of ``params``, named ``name``: the options
    come from the flag tables, not from a hand-written signature."""
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = name
    return command


def task_params(spec: TaskSpec) -> list[inspect.Parameter]:
    """The options of a task's command: its own flags, then its noise flags, from the task table."""
    return [flag_param(flag, None) for flag in spec.all_flags()]


def task_help(spec: TaskSpec) -> str:
    return f"{spec.summary}\n\nExample: {spec.example}"
