"""The ``diffrestore`` command line.

This module holds flag parsing, help texts and the mapping from errors to one-line messages and exit codes.
It must not import torch or diffusers at module level: ``diffrestore --help`` has to answer at once.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__
from .errors import EXIT_INTERRUPTED, EXIT_USAGE, DiffrestoreError, UsageError

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

    from .runtime import available_devices
    from .registry import cache_dir

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
        typer.echo(json.dumps(info, indent=2))
        return
    devices = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in info["devices"].items())
    for key, value in info.items():
        typer.echo(f"{key:12} {devices if key == 'devices' else value}")


# ==============================================================================================================
# Restoration commands. Every task command has the same shared flags (same names, same meaning); the task's own
# flags come first in its help. The commands are built from parameter lists so the shared flags are declared once.

_PANEL_TASK = "Task options"
_PANEL_NOISE = "Measurement noise"
_PANEL_SAMPLING = "Model and sampling"
_PANEL_OUTPUT = "Inputs and outputs"

_INPUTS_HELP = (
    "Image files, folders (their images, sorted; add --recursive for subfolders) or quoted globs ('scans/*.png')."
)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _opt(*decls: str, help: str, panel: str, **kwargs: Any) -> typer.models.OptionInfo:
    return typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)


_INPUTS = _param(
    "inputs", Annotated[list[str], typer.Argument(help=_INPUTS_HELP, show_default=False, metavar="INPUTS")],
    inspect.Parameter.empty,
)

_NOISE_PARAMS = [
    _param("noise", Annotated[str, _opt(
        "--noise", help="Noise model of the measurement: gaussian, poisson or none.", panel=_PANEL_NOISE,
        metavar="gaussian|poisson|none")], "gaussian"),
    _param("noise_sigma", Annotated[float | None, _opt(
        "--noise-sigma", panel=_PANEL_NOISE, metavar="SIGMA", show_default=False,
        help="Std of the Gaussian measurement noise on the [0, 1] intensity scale of the image (a paper's "
        "0.05 on the [-1, 1] scale is 0.025 here). Default: 0.1 for denoise, 0.025 for the other tasks.")], None),
    _param("poisson_rate", Annotated[float | None, _opt(
        "--poisson-rate", panel=_PANEL_NOISE, metavar="RATE", show_default=False,
        help="Photons per unit intensity for --noise poisson (larger = less noise). Default: 100.")], None),
]

_SHARED_PARAMS = [
    _param("method", Annotated[str, _opt(
        "--method", help="Posterior sampler: daps, dps or mcg; or mmse (denoise only: "
        "the posterior mean in one call).", panel=_PANEL_SAMPLING)], "daps"),
    _param("model", Annotated[str, _opt(
        "--model", help="Prior: a name from 'diffrestore models list' or a local model folder.",
        panel=_PANEL_SAMPLING, metavar="NAME|DIR")], "builtin"),
    _param("preset", Annotated[str, _opt(
        "--preset", help="Solver settings: fast (CPU-friendly budget) or paper (the paper's settings).",
        panel=_PANEL_SAMPLING, metavar="fast|paper")], "fast"),
    _param("steps", Annotated[int | None, _opt(
        "--steps", help="Number of solver steps (overrides the preset).", panel=_PANEL_SAMPLING,
        show_default=False)], None),
    _param("seed", Annotated[int, _opt(
        "--seed", help="Random seed: the same seed, inputs and device class give the same output.",
        panel=_PANEL_SAMPLING)], 0),
    _param("num_samples", Annotated[int, _opt(
        "--num-samples", "-n", panel=_PANEL_SAMPLING, metavar="N",
        help="Posterior samples per image. With N > 1 every sample is written (<name>_sK), the output is their "
        "mean, and <name>_std.png maps the per-pixel standard deviation (4 x std on the [0, 1] scale, so white "
        "= std of 0.25 or more).")], 1),
    _param("device", Annotated[str, _opt(
        "--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.", panel=_PANEL_SAMPLING,
        metavar="auto|cpu|cuda[:N]|mps")], "auto"),
    _param("dtype", Annotated[str, _opt(
        "--dtype", help="Network precision: auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16. fp16 is "
        "refused on the CPU.", panel=_PANEL_SAMPLING, metavar="auto|fp32|fp16|bf16")], "auto"),
    _param("batch_size", Annotated[int, _opt(
        "--batch-size", help="Images of the same size restored together (each brings --num-samples rows).",
        panel=_PANEL_SAMPLING)], 4),
    _param("simulate", Annotated[bool, _opt(
        "--simulate", help="Treat each input as the CLEAN image: degrade it with this task's operator and noise, "
        "restore it, and print PSNR / SSIM against the input.", panel=_PANEL_SAMPLING)], False),
    _param("offline", Annotated[bool, _opt(
        "--offline", help="Never download: use cached weights only.", panel=_PANEL_SAMPLING)], False),
    _param("output", Annotated[Path | None, _opt(
        "--output", "-o", panel=_PANEL_OUTPUT, metavar="FILE|DIR", show_default=False,
        help="Output file (one input only) or folder (created; folder inputs keep their layout). Default: next "
        "to each input.")], None),
    _param("suffix", Annotated[str | None, _opt(
        "--suffix", panel=_PANEL_OUTPUT, show_default=False,
        help="Appended to the input's name: <stem><suffix>.<ext>. Default: _<task>, e.g. photo_inpaint.png.")],
        None),
    _param("overwrite", Annotated[bool, _opt(
        "--overwrite", help="Replace existing outputs (inputs are never overwritten).", panel=_PANEL_OUTPUT)],
        False),
    _param("skip_existing", Annotated[bool, _opt(
        "--skip-existing", help="Skip inputs whose output exists (reported as skipped).", panel=_PANEL_OUTPUT)],
        False),
    _param("recursive", Annotated[bool, _opt(
        "--recursive", "-r", help="Also take images from subfolders of folder inputs.", panel=_PANEL_OUTPUT)],
        False),
    _param("fail_fast", Annotated[bool, _opt(
        "--fail-fast", help="Stop at the first failed image (default: go on, report, exit 1).",
        panel=_PANEL_OUTPUT)], False),
    _param("json_output", Annotated[bool, _opt(
        "--json", help="Print a JSON summary on stdout instead of the output paths.", panel=_PANEL_OUTPUT)],
        False),
    _param("quiet", Annotated[bool, _opt(
        "--quiet", "-q", help="Print nothing but errors (and --json).", panel=_PANEL_OUTPUT)], False),
    _param("progress", Annotated[str, _opt(
        "--progress", panel=_PANEL_OUTPUT, metavar="auto|rich|plain|none",
        help="Progress on stderr: auto = a bar on a terminal (unless CI is set), else one line per image.")],
        "auto"),
]

_MASK_PARAMS = [
    _param("mask", Annotated[Path | None, _opt(
        "--mask", panel=_PANEL_TASK, metavar="FILE", show_default=False,
        help="Mask image of the same size: white = missing (to fill), black = known.")], None),
    _param("mask_dir", Annotated[Path | None, _opt(
        "--mask-dir", panel=_PANEL_TASK, metavar="DIR", show_default=False,
        help="Folder of masks matched by file stem: photo.jpg uses DIR/photo.png (or photo_mask.png).")], None),
    _param("box", Annotated[str | None, _opt(
        "--box", panel=_PANEL_TASK, metavar="X,Y,W,H", show_default=False,
        help="Fill a rectangle: left, top, width, height in pixels.")], None),
    _param("random_fraction", Annotated[float | None, _opt(
        "--random-fraction", panel=_PANEL_TASK, metavar="F", show_default=False,
        help="Fill a random share F of the pixels (drawn from --seed); mostly for --simulate.")], None),
    _param("invert_mask", Annotated[bool, _opt(
        "--invert-mask", help="Swap the mask's meaning (black = missing).", panel=_PANEL_TASK)], False),
]

_SR_PARAMS = [
    _param("scale", Annotated[int, _opt(
        "--scale", "-s", help="Upscaling factor: 2, 3, 4 or 8.", panel=_PANEL_TASK)], 4),
    _param("downsample", Annotated[str, _opt(
        "--downsample", help="How the low-resolution image was made: bicubic or box (average).",
        panel=_PANEL_TASK, metavar="bicubic|box")], "bicubic"),
]

_DEBLUR_PARAMS = [
    _param("blur", Annotated[str, _opt(
        "--blur", help="Blur kind: gaussian or motion (ignored with --kernel).", panel=_PANEL_TASK,
        metavar="gaussian|motion")], "gaussian"),
    _param("kernel", Annotated[Path | None, _opt(
        "--kernel", panel=_PANEL_TASK, metavar="FILE", show_default=False,
        help="Blur kernel from a file (.png or .npy), normalised to sum 1.")], None),
    _param("kernel_size", Annotated[int | None, _opt(
        "--kernel-size", panel=_PANEL_TASK, show_default=False,
        help="Kernel width in pixels, odd. Default: 61.")], None),
    _param("sigma", Annotated[float | None, _opt(
        "--sigma", panel=_PANEL_TASK, show_default=False,
        help="Gaussian blur std in pixels. Default: 3.0.")], None),
    _param("intensity", Annotated[float | None, _opt(
        "--intensity", panel=_PANEL_TASK, show_default=False,
        help="Motion blur strength in (0, 1]; the kernel is drawn once from --seed. Default: 0.5.")], None),
]

_PHASE_PARAMS = [
    _param("oversampling", Annotated[float | None, _opt(
        "--oversampling", panel=_PANEL_TASK, show_default=False,
        help="Zero-padding factor of the Fourier transform (>= 1). Default: 2.0.")], None),
]

_HDR_PARAMS = [
    _param("scale", Annotated[float, _opt(
        "--scale", "-s", help="Exposure gain of the clipping: the file is clip(scale * x).", panel=_PANEL_TASK)],
        2.0),
]

_TASK_HELP = {
    "inpaint": (
        "Fill missing regions. The mask comes from --mask, --mask-dir, --box, --random-fraction or the "
        "input's transparent pixels.",
        "diffrestore inpaint photo.png --mask holes.png",
    ),
    "superres": (
        "Upscale a low-resolution image (--scale 2, 3, 4 or 8); the output is --scale times larger.",
        "diffrestore superres small.png --scale 4",
    ),
    "deblur": (
        "Remove a known blur: gaussian (--sigma), motion (--intensity), or a kernel file (--kernel).",
        "diffrestore deblur blurry.png --blur gaussian --sigma 3",
    ),
    "denoise": (
        "Remove Gaussian (--noise-sigma, [0, 1] scale) or Poisson (--noise poisson --poisson-rate) noise.",
        "diffrestore denoise noisy.png --noise-sigma 0.1",
    ),
    "colorize": (
        "Add colour to a grayscale image (an RGB input is reduced to its luminance first).",
        "diffrestore colorize old_photo.jpg",
    ),
    "phase-retrieval": (
        "Recover an image from the magnitude of its Fourier transform. Measurements are not pictures, so this "
        "command always simulates: each input is the clean image, and PSNR / SSIM are printed.",
        "diffrestore phase-retrieval object.png --oversampling 2",
    ),
    "hdr": (
        "Recover the range lost to clipping: the input is clip(scale * x).",
        "diffrestore hdr overexposed.png --scale 2",
    ),
}

_TASK_PARAMS = {
    "inpaint": _MASK_PARAMS,
    "superres": _SR_PARAMS,
    "deblur": _DEBLUR_PARAMS,
    "denoise": [],
    "colorize": [],
    "phase-retrieval": _PHASE_PARAMS,
    "hdr": _HDR_PARAMS,
}

_RUN_OPTION_NAMES = (
    "method", "model", "preset", "steps", "seed", "num_samples", "device", "dtype", "batch_size", "output",
    "suffix", "overwrite", "skip_existing", "json_output", "quiet", "progress", "fail_fast", "simulate",
    "recursive", "offline",
)


def _run_task(task: str, values: dict[str, Any]) -> int:
    """Shared body of every task command: flags -> options -> engine.run -> exit code."""
    from . import engine, plan, tasks

    inputs = values.pop("inputs")
    run_values = {name: values.pop(name) for name in _RUN_OPTION_NAMES}
    run_values["offline"] = True if run_values["offline"] else None
    opts = plan.RunOptions(task=task, **run_values)
    if "box" in values and values["box"] is not None:
        values["box"] = tasks.parse_box(values["box"])
    task_opts = tasks.TaskOptions(**values)
    summary = engine.run(inputs, opts, task_opts)
    if opts.json_output:
        typer.echo(plan.summary_json(summary))
    return summary.exit_code


def _make_task_command(task: str, name: str, *, hidden: bool = False, alias_of: str | None = None) -> None:
    params = [_INPUTS, *_TASK_PARAMS[task], *_NOISE_PARAMS, *_SHARED_PARAMS]

    def command(**values: Any) -> int:
        return _run_task(task, values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{task.replace('-', '_')}_command"
    summary, example = _TASK_HELP[task]
    doc = f"{summary}\n\nExample: {example}"
    if alias_of:
        doc = f"Alias of '{alias_of}'. {doc}"
    app.command(name, help=doc, epilog=EXIT_CODE_TABLE, hidden=hidden, no_args_is_help=True)(command)


for _task in ("inpaint", "superres", "deblur", "denoise", "colorize", "phase-retrieval", "hdr"):
    _make_task_command(_task, _task)
_make_task_command("superres", "sr", alias_of="superres")


@app.command("train", epilog=EXIT_CODE_TABLE, no_args_is_help=True)
def train_command(
    data_dir: Annotated[Path, typer.Argument(help="Folder of training images (searched recursively).",
                                             show_default=False, metavar="DATA_DIR")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (usable as --model DIR); an "
                                      "existing checkpoint there from the same recipe is resumed.")],
    size: Annotated[int, typer.Option("--size", help="Training crop size in pixels (a multiple of 16).")] = 48,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps.")] = 10000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per step.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, crops and noise.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.",
                                        metavar="auto|cpu|cuda[:N]|mps")] = "auto",
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (after a 200-step warm-up).")] = 1e-3,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every",
                                                  help="Write OUT/checkpoint.pt every N steps.")] = 250,
    max_downscale: Annotated[float, typer.Option("--max-downscale", help="Crop regions up to this many times the "
                                                 "crop size, resized down (1 = plain crops).")] = 1.0,
    permute_channels: Annotated[bool, typer.Option("--permute-channels", help="Shuffle colour channels (helps "
                                                   "when few training images are in colour).")] = False,
    flips: Annotated[bool, typer.Option("--flips/--no-flips", help="Random flips and 90-degree rotations "
                                        "(turn off for data with a fixed orientation, e.g. documents).")] = True,
    pixel_unshuffle: Annotated[int, typer.Option("--pixel-unshuffle", help="Run the UNet at 1/N resolution "
                                                 "behind a pixel-unshuffle stem (2 = the default prior's).")] = 2,
    channels: Annotated[int | None, typer.Option("--channels", help="1 (grey) or 3 (RGB); default: 3 if any "
                                                 "training image has colour, else 1.")] = None,
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

    from . import plan
    from .progress import progress_mode

    if progress not in plan.PROGRESS_MODES:
        raise UsageError(f"unknown --progress '{progress}'", hint="use auto, rich, plain or none")
    from .train import train

    mode = progress_mode(progress, quiet=quiet)
    recipe = dict(size=size, steps=steps, batch_size=batch_size, seed=seed, device=device, lr=lr,
                  checkpoint_every=checkpoint_every, max_downscale=max_downscale, permute_channels=permute_channels,
                  dihedral=flips, pixel_unshuffle=pixel_unshuffle, channels=channels, resume=resume)
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
                typer.echo(f"[{done}/{total}] {what}", err=True)

        result = train(data_dir, out, progress=report, **recipe)
    if not quiet:
        typer.echo(f"trained in {time.perf_counter() - t0:.1f} s", err=True)
        typer.echo(str(result))
    return 0


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _mount_models_app() -> None:
    """``diffrestore models ...`` from the registry's sub-app, once that module exists in the tree."""
    if importlib.util.find_spec(f"{__package__}.cli_models") is None:
        return
    from .cli_models import models_app

    app.add_typer(models_app, name="models")


_mount_models_app()


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
