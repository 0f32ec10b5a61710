"""The ``diffrestore`` command line.

This module holds flag parsing, help texts and the mapping from errors to one-line messages and exit codes.
It must not import torch or diffusers at module level: ``diffrestore --help`` has to answer at once.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import EXIT_SOME_FAILED, EXIT_USAGE, DiffrestoreError, UsageError, short_error
from ..run import streams
from ..run.interrupts import signal_name, signal_of, stop_on_signals
from ..tasks.spec import TaskSpec
from ..tasks.table import TASKS
from .flags import INPUTS, SHARED_PARAMS, PlainHelpCommand, PlainHelpGroup, task_help, task_params, with_params

EXIT_CODE_TABLE = (
    "Exit codes: 0 all done; 1 some items failed; 2 usage error (bad flag, unreadable input); "
    "3 model or download error; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP); 141 "
    "stdout closed by its reader (| head), the run's files all written. Set DIFFRESTORE_DEBUG=1 to see full "
    "tracebacks."
)

app = typer.Typer(
    name="diffrestore",
    help="Restore degraded images (holes, low resolution, blur, noise, missing colour) by posterior "
    "sampling with diffusion-model priors.",
    epilog=EXIT_CODE_TABLE,
    no_args_is_help=True,
    cls=PlainHelpGroup,
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


@app.command("env", cls=PlainHelpCommand)
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

    from ..registry import cache_dir
    from ..run.runtime import available_devices

    info = {
        "diffrestore": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _pkg("torch"),
        "diffusers": _pkg("diffusers"),
        "devices": available_devices(),
        "cache_dir": str(cache_dir()),
    }
    if json_output:
        streams.write_out(json.dumps(info, indent=2))
        return
    devices = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in info["devices"].items())
    for key, value in info.items():
        streams.write_out(f"{key:12} {streams.shown(devices if key == 'devices' else value)}")


# ==============================================================================================================
# Restoration commands, built from the parameter lists of cli_flags (the shared flags are declared once).



def _answers_signals(command: Any) -> Any:
    """A command that answers a stop signal itself (one line, 128 + the signal's number): typer would turn the
    KeyboardInterrupt into a silent exit 130, whatever the signal. A run prints its own summary and returns, so
    this sees only signals outside one (validation, training)."""

    @functools.wraps(command)
    def answering(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as stop:
            return _interrupted(stop)

    return answering


def _run_task(task: str, values: dict[str, Any]) -> int:
    """Shared body of every task command: flags -> run options and task flag values -> the run -> exit code."""
    import json

    from ..run.flags import RUN_FLAGS
    from ..run.options import RunOptions
    from ..run.solver_settings import parse_pairs
    from ..split import distributed, summaries

    inputs = values.pop("inputs")
    run_values = {flag.name: values.pop(flag.name) for flag in RUN_FLAGS}  # the rest are the task's flags
    run_values["offline"] = True if run_values["offline"] else None  # not given: the environment may say
    run_values["solver_options"] = parse_pairs(run_values.pop("solver_set") or [])
    opts = RunOptions(task=task, **run_values)
    doc, code = distributed.run(inputs, opts, values)  # a split run's rank 0 has the whole world's document
    # --json first: a summary file that cannot be written (a full disk) must not cost the printed one.
    if doc is not None and opts.json_output:
        streams.write_out(json.dumps(doc, indent=2))
    if doc is not None and opts.summary_file is not None:
        try:
            summaries.write_summary(Path(opts.summary_file), doc)
        except (DiffrestoreError, OSError) as error:
            # The images are written; the summary is one output that failed: 1, unless the run's code says more.
            _fail(f"the summary was not written: {short_error(error)}", 0)
            code = code or EXIT_SOME_FAILED
    return code


def _make_task_command(spec: TaskSpec, name: str, *, hidden: bool = False, alias_of: str | None = None) -> None:
    params = [INPUTS, *task_params(spec), *SHARED_PARAMS]

    @_answers_signals
    def command(**values: Any) -> int:
        return _run_task(spec.name, values)

    with_params(command, params, f"{spec.name.replace('-', '_')}_command")
    doc = task_help(spec)
    if alias_of:
        doc = f"Alias of '{alias_of}'. {doc}"
    app.command(name, help=doc, epilog=EXIT_CODE_TABLE, hidden=hidden, no_args_is_help=True,
                cls=PlainHelpCommand)(command)


# Every task of the table is a command, and so is each of its command aliases (sr).
for _spec in TASKS.values():
    _make_task_command(_spec, _spec.name)
for _spec in TASKS.values():
    for _alias in _spec.command_aliases:
        _make_task_command(_spec, _alias, alias_of=_spec.name)


def _int_list(text: str, flag: str, example: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers from the command line ('' is the empty list)."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if (text.strip() and not values) or any(v < 1 for v in values):
        raise UsageError(f"{flag} needs positive whole numbers separated by commas, got '{text}'",
                         hint=f"for example {flag} {example}")
    return values


@app.command("train", epilog=EXIT_CODE_TABLE, no_args_is_help=True, cls=PlainHelpCommand)
@_answers_signals
def train_command(
    data_dir: Annotated[Path, typer.Argument(help="Folder of training images (searched recursively).",
                                             show_default=False, metavar="DATA_DIR")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (usable as --model DIR); an "
                                      "existing checkpoint there from the same recipe is resumed.", metavar="DIR")],
    size: Annotated[int, typer.Option("--size", help="Training crop size in pixels (a multiple of 16).",
                                      metavar="PIXELS")] = 48,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps.", metavar="N")] = 10000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step.", metavar="N")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, crops and noise.", metavar="N")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.",
                                        metavar="auto|cpu|cuda[:N]|mps")] = "auto",
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (after a 200-step warm-up).",
                                      metavar="RATE")] = 1e-3,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", metavar="N",
                                                  help="Write OUT/checkpoint.pt every N steps.")] = 250,
    max_downscale: Annotated[float, typer.Option("--max-downscale", help="Crop regions up to this many times the "
                                                 "crop size, resized down (1 = plain crops).", metavar="FACTOR")] = 1.0,
    permute_channels: Annotated[bool, typer.Option("--permute-channels", help="Shuffle colour channels (helps "
                                                   "when few training images are in colour).")] = False,
    flips: Annotated[bool, typer.Option("--flips/--no-flips", help="Random flips and 90-degree rotations "
                                        "(turn off for data with a fixed orientation, e.g. documents).")] = True,
    pixel_unshuffle: Annotated[int, typer.Option("--pixel-unshuffle", help="Run the UNet at 1/N resolution "
                                                 "behind a pixel-unshuffle stem (2 = the default prior's).",
                                                 metavar="N")] = 2,
    channels: Annotated[int | None, typer.Option("--channels", help="1 (grey), 3 (RGB) or 2 (complex MRI: .npy "
                                                 "arrays, magnitudes with --random-phase); default: 2 if the "
                                                 "folder has .npy arrays, else 3 if any image has colour, else 1.",
                                                 metavar="1|2|3")] = None,
    random_phase: Annotated[bool, typer.Option("--random-phase", help="With --channels 2: give magnitude images "
                                               "a smooth random phase per crop.")] = False,
    base_channels: Annotated[int, typer.Option("--base-channels", help="Channels of the UNet's first level.",
                                               metavar="N")] = 32,
    channel_mults: Annotated[str, typer.Option("--channel-mults", help="Channel multiplier of each UNet level, "
                                               "comma-separated (one level per entry).",
                                               metavar="M,M,...")] = "1,2,2,4",
    lr_drop_at: Annotated[str, typer.Option("--lr-drop-at", help="Divide the learning rate by 10 after these "
                                            "step numbers, comma-separated (default: never).",
                                            metavar="STEP,...")] = "",
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/checkpoint.pt "
                                         "if it exists.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    progress: Annotated[str, typer.Option("--progress", help="auto, rich, plain or none.",
                                          metavar="auto|rich|plain|none")] = "auto",
) -> int:
    """Train a small prior (the builtin architecture) on a folder of images.

    Example: diffrestore train photos/ --out my-model --steps 2000, then
    diffrestore inpaint x.png --box 8,8,16,16 --model my-model
    """
    import time

    from ..run.flags import PROGRESS_MODES
    from ..run.progress import progress_mode

    if progress not in PROGRESS_MODES:
        raise UsageError(f"unknown --progress '{progress}'", hint="use auto, rich, plain or none")
    from ..train import train

    mode = progress_mode(progress, quiet=quiet)
    recipe = dict(size=size, steps=steps, batch_size=batch_size, seed=seed, device=device, lr=lr,
                  checkpoint_every=checkpoint_every, max_downscale=max_downscale, permute_channels=permute_channels,
                  dihedral=flips, pixel_unshuffle=pixel_unshuffle, channels=channels, resume=resume,
                  base_channels=base_channels, channel_mults=_int_list(channel_mults, "--channel-mults", "1,2,4,6"),
                  lr_drops=_int_list(lr_drop_at, "--lr-drop-at", "30000"), random_phase=random_phase)
    t0 = time.perf_counter()
    if mode == "rich":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeRemainingColumn(), console=_stderr_console()) as bar:
            task_id = bar.add_task("", total=steps)

            def report(done: int, total: int, what: str) -> None:
                bar.update(task_id, completed=done, total=total, description=what)

            result = train(data_dir, out, progress=report, **recipe)
    else:
        every = max(1, steps // 20)

        def report(done: int, total: int, what: str) -> None:
            if mode == "plain" and (done % every == 0 or done == total):
                streams.write_err(f"[{done}/{total}] {what}")

        result = train(data_dir, out, progress=report, **recipe)
    if not quiet:
        streams.write_err(f"trained in {time.perf_counter() - t0:.1f} s")
        streams.write_out(streams.shown(result))  # the model folder: never fails on an odd name or a closed pipe
    return 0


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _mount_sub_apps() -> None:
    """``diffrestore models ...``, ``diffrestore summary ...`` and ``diffrestore eval ...``."""
    from .eval import eval_app, mount_task_commands
    from .models import models_app
    from .summary import summary_app

    app.add_typer(models_app, name="models")
    app.add_typer(summary_app, name="summary")
    mount_task_commands(epilog=EXIT_CODE_TABLE, wrap=_answers_signals)
    app.add_typer(eval_app, name="eval")


_mount_sub_apps()


def _debug() -> bool:
    return os.environ.get("DIFFRESTORE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _fail(message: str, code: int) -> int:
    streams.write_err(f"error: {message}")  # never fails, never on stdout, a name's control characters escaped
    return code


def _click_exception_types() -> tuple[type, type, type]:
    """(usage-error base, Exit, Abort): recent typer vendors click, older releases use click itself."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException, typer.Exit, typer.Abort
    import click  # pragma: no cover - typer < 0.24

    return click.ClickException, click.exceptions.Exit, click.exceptions.Abort


def _usage_line(error: Any) -> str:
    """A parser error (bad value, unknown flag or command) as one line in the style of our own errors, pointing
    at the help of the command it came from instead of printing its usage block."""
    message = " ".join(str(error.format_message()).split())
    message = message[:1].lower() + message[1:]  # click's "Invalid value ..." -> "invalid value ..."
    ctx = getattr(error, "ctx", None)
    command = getattr(ctx, "command_path", None) or "diffrestore"
    return f"{message} (see '{command} --help')"


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or Interrupted) that typer or click wrapped into ``error``, if any."""
    seen = error.__cause__ or error.__context__
    while seen is not None and not isinstance(seen, KeyboardInterrupt):
        seen = seen.__cause__ or seen.__context__
    return seen


def _interrupted(stop: BaseException | None) -> int:
    """One line for a stop signal outside a run; the exit code is 128 + the signal's number."""
    return _fail(f"interrupted ({signal_name(stop)})", 128 + signal_of(stop))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app and turn every failure into one line and an exit code."""
    click_error, click_exit, click_abort = _click_exception_types()
    streams.ensure_standard_streams()  # 2>&- : notes must not fall back to stdout
    streams.reset()
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP as Ctrl-C, for the whole command
            result = app(args=argv, prog_name="diffrestore", standalone_mode=False)
    except DiffrestoreError as error:
        if _debug():
            traceback.print_exc()
        code = _fail(str(error), error.exit_code)
    except click_exit as done:
        code = done.exit_code
    except click_error as error:
        if _debug():
            traceback.print_exc()
        code = error.exit_code if error.exit_code else EXIT_USAGE
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare command: its help is the answer
            error.show()
        else:
            _fail(_usage_line(error), code)
    except click_abort as abort:  # older click's spelling of an interrupt
        code = _interrupted(_interrupt_behind(abort))
    except KeyboardInterrupt as stop:
        code = _interrupted(stop)
    except SystemExit as done:  # typer's answer to a broken pipe on stdout outside a run: exit 1, no word
        code = _stdout_lost(done)
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
    code = streams.exit_code(code)  # a run whose stdout reader went away: 141 when nothing else went wrong
    if argv is None:
        sys.exit(code)
    return code


def _stdout_lost(done: SystemExit) -> int:
    """A SystemExit that typer raised for a broken stdout pipe (``diffrestore models list | head -1``): stdout
    is silenced and the exit code is the one of a process SIGPIPE stopped; any other SystemExit keeps its code."""
    import errno

    cause = done.__context__
    if isinstance(cause, OSError) and cause.errno == errno.EPIPE:
        streams.stdout_failed(cause)  # silenced: Python's flush at exit must not complain again
        return streams.exit_code(0)
    if isinstance(done.code, str):  # sys.exit("message"): the message is the error line
        return _fail(done.code, 1)
    return done.code if isinstance(done.code, int) else 0


if __name__ == "__main__":
    main()
