"""The ``diffrestore`` command line.

This module holds flag parsing, help texts and the mapping from errors to one-line messages and exit codes.
It must not import torch or diffusers at module level: ``diffrestore --help`` has to answer at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_USAGE, DiffrestoreError

EXIT_CODE_TABLE = (
    "Exit codes: 0 all done; 1 some items failed; 2 usage error (bad flag, unreadable input); "
    "3 model or download error; 130 interrupted. Set DIFFRESTORE_DEBUG=1 to see full tracebacks."
)

app = typer.Typer(
    name="diffrestore",
    help="Restore degraded images (holes, low resolution, blur, noise, missing colour) by posterior "
    "sampling with diffusion-model priors.",
    epilog=EXIT_CODE_TABLE,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"diffrestore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Restore degraded images with diffusion-model priors."""


@app.command("env")
def env_command(
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout.")] = False,
) -> None:
    """Show versions (Python, torch, diffusers), usable devices and the model cache directory."""
    import json
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def _pkg(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    from .engine import available_devices

    info = {
        "diffrestore": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _pkg("torch"),
        "diffusers": _pkg("diffusers"),
        "devices": available_devices(),
        "cache_dir": str(_cache_dir()),
    }
    if json_output:
        typer.echo(json.dumps(info, indent=2))
        return
    devices = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in info["devices"].items())
    for key, value in info.items():
        typer.echo(f"{key:12} {devices if key == 'devices' else value}")


def _cache_dir():
    try:
        from .registry import cache_dir
    except ImportError:  # registry not built yet in this tree
        from pathlib import Path

        env = os.environ.get("DIFFRESTORE_CACHE")
        if env:
            return Path(env).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "diffrestore"
    return cache_dir()


def _debug() -> bool:
    return os.environ.get("DIFFRESTORE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _fail(message: str, code: int) -> int:
    typer.echo(f"error: {message}", err=True)
    return code


def _click_exception_types() -> tuple[type, type, type]:
    """(usage-error base, Exit, Abort): recent typer vendors click, older releases use click itself."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException, typer.Exit, typer.Abort
    import click  # pragma: no cover - typer < 0.24

    return click.ClickException, click.exceptions.Exit, click.exceptions.Abort


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app and turn every failure into one line and an exit code."""
    click_error, click_exit, click_abort = _click_exception_types()
    try:
        result = app(args=argv, prog_name="diffrestore", standalone_mode=False)
    except DiffrestoreError as error:
        if _debug():
            traceback.print_exc()
        code = _fail(str(error), error.exit_code)
    except click_exit as done:
        code = done.exit_code
    except click_error as error:  # bad flags: click's own message, one line
        if _debug():
            traceback.print_exc()
        error.show()
        code = error.exit_code if error.exit_code else EXIT_USAGE
    except (click_abort, KeyboardInterrupt):
        code = _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # a bug: still one line unless debugging
        if _debug():
            traceback.print_exc()
        code = _fail(
            f"unexpected {type(error).__name__}: {error} (set DIFFRESTORE_DEBUG=1 for the traceback and "
            "please report it)",
            1,
        )
    else:
        code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
