"""The flags of the restoration commands, declared once: every task command has the same shared flags (same
names, same meaning, same units in the help) and its own task flags first. ``cli.py`` builds the commands from
these parameter lists. No torch here: ``--help`` must answer at once.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from ..run.options import MAX_NUM_SAMPLES
from ..solvers.methods import G2D2_PROCESSES, MAX_STEPS, PRESET_GUIDANCE, PRESET_STEPS
from ..tasks.flags import Flag
from ..tasks.spec import TaskSpec, noise_flags

#: the measurement-noise flags, shown in their own help panel
NOISE_FLAG_NAMES = frozenset(flag.name for flag in noise_flags(0.0))

_PANEL_TASK = "Task options"
_PANEL_NOISE = "Measurement noise"
_PANEL_SAMPLING = "Model and sampling"
_PANEL_OUTPUT = "Inputs and outputs"

INPUTS_HELP = (
    "Image files, folders (their images, sorted; add --recursive for subfolders) or quoted globs ('scans/*.png')."
)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _opt(*decls: str, help: str, panel: str, **kwargs: Any) -> typer.models.OptionInfo:
    return typer.Option(*decls, help=help, rich_help_panel=panel, **kwargs)


def _steps_help() -> str:
    """--steps with each method's preset steps and limit, from the torch-free method table."""
    per_method = []
    for i, (method, steps) in enumerate(PRESET_STEPS.items()):
        if steps["fast"] == steps["paper"]:
            per_method.append(f"{method} {steps['fast']}")
        else:  # the first method names the presets, the others follow its order
            fast, paper = (" (fast)", " (paper)") if i == 0 else ("", "")
            per_method.append(f"{method} {steps['fast']}{fast} / {steps['paper']}{paper}")
    limits = ", ".join(f"{method} {limit}" for method, limit in MAX_STEPS.items() if limit > 1)
    return f"Number of solver steps (overrides the preset). Default: {', '.join(per_method)}. At most: {limits}."


def _guidance_help() -> str:
    """--guidance with each conditioned method's preset scales, from the torch-free method table."""
    per_method = []
    for method, scales in PRESET_GUIDANCE.items():
        fast, paper = scales["fast"], scales["paper"]
        per_method.append(f"{method} {fast:g}" if fast == paper else f"{method} {fast:g} (fast) / {paper:g} (paper)")
    return ("Classifier-free guidance scale for text-conditioned priors (1 = the prompt only, one network pass; "
            f"unconditional models take none). Default: {', '.join(per_method)}.")


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

SHARED_PARAMS = [
    _param("method", Annotated[str, _opt(
        "--method", help="Posterior sampler: daps, dps or mcg; or mmse (denoise only: the posterior mean in one "
        "call). daps on a latent prior (Stable Diffusion, LDM) runs latent-daps; dwgf (latent priors) moves the -n "
        "samples together as particles of one gradient flow (-n 1 is RED-diff in latent space); g2d2 runs on discrete "
        "(VQ-Diffusion) priors.",
        panel=_PANEL_SAMPLING,
        metavar="|".join(PRESET_STEPS))], "daps"),
    _param("model", Annotated[str, _opt(
        "--model", help="Prior: a name from 'diffrestore models list' or a local model folder.",
        panel=_PANEL_SAMPLING, metavar="NAME|DIR")], "builtin"),
    _param("preset", Annotated[str, _opt(
        "--preset", help="Solver settings: fast (CPU-friendly budget) or paper (the paper's settings).",
        panel=_PANEL_SAMPLING, metavar="fast|paper")], "fast"),
    _param("steps", Annotated[int | None, _opt(
        "--steps", help=_steps_help(), panel=_PANEL_SAMPLING, metavar="N", show_default=False)], None),
    _param("prompt", Annotated[str | None, _opt(
        "--prompt", panel=_PANEL_SAMPLING, metavar="TEXT", show_default=False,
        help="Text prompt for text-conditioned priors (Stable Diffusion). Default: the model's own (see "
        "'diffrestore models info NAME').")], None),
    _param("negative_prompt", Annotated[str | None, _opt(
        "--negative-prompt", panel=_PANEL_SAMPLING, metavar="TEXT", show_default=False,
        help="What classifier-free guidance steers away from. Default: the empty prompt.")], None),
    _param("guidance", Annotated[float | None, _opt(
        "--guidance", panel=_PANEL_SAMPLING, metavar="SCALE", show_default=False,
        help=_guidance_help())], None),
    _param("g2d2_process", Annotated[str | None, _opt(
        "--g2d2-process", panel=_PANEL_SAMPLING, metavar="|".join(G2D2_PROCESSES), show_default=False,
        help="--method g2d2 on discrete (VQ-Diffusion) priors: how it moves to the next step. star (default, the "
        "paper's process): draw the tokens from the optimised posterior and re-mask the next step's count at "
        "random; markov (the released code's presets): the VQ-Diffusion posterior step, every timestep.")], None),
    _param("solver_set", Annotated[list[str] | None, _opt(
        "--set", panel=_PANEL_SAMPLING, metavar="KEY=VALUE", show_default=False,
        help="A hyper-parameter of the method on top of --preset, e.g. --set inner_spread=1 (DAPS draws its inner "
        "step instead of taking its mean: wider, better calibrated -n spreads) or --set zeta=2 (DPS's step). "
        "Repeatable. The names are the solver's config fields (an unknown one lists them); 'none' where a "
        "setting allows it. Recorded in the JSON summary.")], None),
    _param("tile_overlap", Annotated[int | None, _opt(
        "--tile-overlap", panel=_PANEL_SAMPLING, metavar="PX", show_default=False,
        help="Models with a fixed size (e.g. 256x256 checkpoints) denoise other sizes in overlapping windows, "
        "blended at every step; this is their overlap in pixels, at most half a window. Default: a quarter of "
        "the window.")], None),
    _param("seed", Annotated[int, _opt(
        "--seed", help="Random seed (any size): the same seed, inputs and device class give the same output.",
        panel=_PANEL_SAMPLING, metavar="N")], 0),
    _param("num_samples", Annotated[int | None, _opt(
        "--num-samples", "-n", panel=_PANEL_SAMPLING, metavar="N", show_default=False,
        help="Posterior samples per image (default 1; dwgf 4). With N > 1 every sample is written (<name>_sK), "
        "the output is their mean, and <name>_std.png maps the per-pixel standard deviation (4 x std on the "
        "[0, 1] scale, so white = std of 0.25 or more; DAPS's fast preset takes inner means, so its spread is "
        "narrower than the posterior's: --set inner_spread=1 or --preset paper draws). With --method dwgf they are "
        "the interacting "
        f"particles of one flow (the paper's 4; -n 1 is RED-diff in latent space). At most {MAX_NUM_SAMPLES}.")], None),
    _param("device", Annotated[str, _opt(
        "--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.", panel=_PANEL_SAMPLING,
        metavar="auto|cpu|cuda[:N]|mps")], "auto"),
    _param("dtype", Annotated[str, _opt(
        "--dtype", help="Network precision: auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16. fp16 is "
        "refused on the CPU.", panel=_PANEL_SAMPLING, metavar="auto|fp32|fp16|bf16")], "auto"),
    _param("batch_size", Annotated[int, _opt(
        "--batch-size", help="Images of the same size restored together (each brings --num-samples rows).",
        panel=_PANEL_SAMPLING, metavar="N")], 4),
    _param("simulate", Annotated[bool, _opt(
        "--simulate", help="Treat each input as the CLEAN image: degrade it with this task's operator and noise, "
        "restore it, and print PSNR / SSIM against the input.", panel=_PANEL_SAMPLING)], False),
    _param("offline", Annotated[bool, _opt(
        "--offline", help="Never download: use cached weights only.", panel=_PANEL_SAMPLING)], False),
    _param("registry", Annotated[Path | None, _opt(
        "--registry", panel=_PANEL_SAMPLING, metavar="FILE", show_default=False, envvar="DIFFRESTORE_REGISTRY",
        help="The models.toml that --model NAME is looked up in, instead of the one shipped with diffrestore "
        "(as in 'diffrestore models --registry').")], None),
    _param("output", Annotated[Path | None, _opt(
        "--output", "-o", panel=_PANEL_OUTPUT, metavar="FILE|DIR", show_default=False,
        help="Output file (one input only) or folder (created; folder inputs keep their layout). Default: next "
        "to each input.")], None),
    _param("suffix", Annotated[str | None, _opt(
        "--suffix", panel=_PANEL_OUTPUT, show_default=False, metavar="TEXT",
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
    _param("include_outputs", Annotated[bool, _opt(
        "--include-outputs", panel=_PANEL_OUTPUT,
        help="Also restore folder files named like this command's outputs (<stem>_<task>, _sK, _std), which "
        "are otherwise skipped and reported as such.")], False),
    _param("fail_fast", Annotated[bool, _opt(
        "--fail-fast", help="Stop at the first failed image (default: go on, report, exit 1).",
        panel=_PANEL_OUTPUT)], False),
    _param("json_output", Annotated[bool, _opt(
        "--json", help="Print a JSON summary on stdout instead of the output paths.", panel=_PANEL_OUTPUT)],
        False),
    _param("summary_file", Annotated[Path | None, _opt(
        "--summary", panel=_PANEL_OUTPUT, metavar="FILE", show_default=False,
        help="Also write the JSON summary (as --json prints it) to FILE, atomically; only an earlier run's "
        "summary is replaced.")], None),
    _param("shard", Annotated[str | None, _opt(
        "--shard", panel=_PANEL_OUTPUT, metavar="I/N", show_default=False,
        help="Restore only part I of N of the inputs (round-robin over the planned list, the same in every "
        "process): run I = 1..N anywhere, then 'diffrestore summary merge'. Slurm array tasks and torchrun / "
        "accelerate processes split the inputs by themselves; --shard 1/1 turns a Slurm array's split off.")], None),
    _param("quiet", Annotated[bool, _opt(
        "--quiet", "-q", help="Print nothing but errors (and --json).", panel=_PANEL_OUTPUT)], False),
    _param("progress", Annotated[str, _opt(
        "--progress", panel=_PANEL_OUTPUT, metavar="auto|rich|plain|none",
        help="Progress on stderr: auto = a bar on a terminal (unless CI is set), else one line per image.")],
        "auto"),
]

def _task_param(flag: Flag) -> inspect.Parameter:
    """A typer option from a task table flag. Given or not is told by None (bools: False), so a run knows what
    the user said; the default a run uses is the flag's, stated in its help."""
    panel = _PANEL_NOISE if flag.name in NOISE_FLAG_NAMES else _PANEL_TASK
    decls = (flag.option, flag.short) if flag.short else (flag.option,)
    if flag.kind is bool:
        return _param(flag.name, Annotated[bool, _opt(*decls, help=flag.help_text(), panel=panel)], False)
    kind = str if flag.parse is not None else flag.kind
    option = _opt(*decls, help=flag.help_text(), panel=panel, metavar=flag.metavar, show_default=False)
    return _param(flag.name, Annotated[kind | None, option], None)


def task_params(spec: TaskSpec) -> list[inspect.Parameter]:
    """The options of a task's command: its own flags, then its noise flags, from the task table."""
    return [_task_param(flag) for flag in spec.all_flags()]


def task_help(spec: TaskSpec) -> str:
    return f"{spec.summary}\n\nExample: {spec.example}"
