"""The run's own flags, declared once (the task's flags are in the task table): name, type, default, range or
choices, help. The CLI builds every restoration command's shared options from ``RUN_FLAGS``, and
``options.check_run_options`` checks a run's values against the same declarations. No torch here.
"""

from __future__ import annotations

from pathlib import Path

from ..metrics.catalogue import METRIC_NAMES, describe, parse_metrics
from ..solvers.methods import G2D2_PROCESSES, MAX_STEPS, METHOD_KINDS, PRESET_GUIDANCE, PRESET_NAMES, PRESET_STEPS
from ..tasks.flags import Flag

SAMPLING = "Model and sampling"
OUTPUT = "Inputs and outputs"
PROGRESS_MODES = ("auto", "rich", "plain", "none")
#: Every sample is a solver row and a file of its own, and the planner names all of them before anything runs.
MAX_NUM_SAMPLES = 10000


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


#: what --simulate scores when --metrics is not given
DEFAULT_METRICS: tuple[str, ...] = ("psnr", "ssim")


def metric_conventions(kind: str) -> str:
    """Each metric of ``kind`` ("image" or "set") with its direction and range convention, from the catalogue."""
    parts = []
    for name in METRIC_NAMES:
        info = describe(name)
        if info.kind == kind:
            arrow = "higher is better" if info.higher_is_better else "lower is better"
            parts.append(f"{name} ({arrow}; {info.convention})")
    return "; ".join(parts)


def parse_metric_list(value: object, flag: str = "--metrics") -> tuple[str, ...]:
    """``--metrics`` from the command line (``"psnr,lpips"``) or the API (a list of names): the catalogue's
    names, each once; a one-line usage error for an unknown one."""
    text = value if isinstance(value, str) else ",".join(str(name) for name in value)  # type: ignore[attr-defined]
    return parse_metrics(text, flag)


def _metrics_help() -> str:
    return ("With --simulate: the scores of each restored image against the clean input, comma-separated, printed "
            f"on its output line and in --json. Default: {','.join(DEFAULT_METRICS)}. Each on its own convention: "
            f"{metric_conventions('image')}. Metrics over a whole set (fid, fid-torchvision, kid) are computed by "
            "'diffrestore eval'. Weights a metric needs come from the model registry, checked before the prior "
            "loads.")


def _sampling(name: str, option: str, kind: type, help: str, **more) -> Flag:
    return Flag(name, option, kind, help, panel=SAMPLING, **more)


def _output(name: str, option: str, kind: type, help: str, **more) -> Flag:
    return Flag(name, option, kind, help, panel=OUTPUT, **more)


RUN_FLAGS: tuple[Flag, ...] = (
    _sampling("method", "--method", str, "Posterior sampler: daps, dps or mcg; or mmse (denoise only: the "
              "posterior mean in one call). daps on a latent prior (Stable Diffusion, LDM) runs latent-daps; dwgf "
              "(latent priors) moves the -n samples together as particles of one gradient flow (-n 1 is RED-diff in "
              "latent space); g2d2 runs on discrete (VQ-Diffusion) priors; fbp, sart and tv are the classical CT "
              "reconstructions (ct only, no model); zero-filled, sense, cs-wavelet and cs-tv the classical MRI ones "
              "(mri only, no model).", default="daps",
              choices=tuple(METHOD_KINDS), metavar="|".join(PRESET_STEPS)),
    _sampling("model", "--model", str, "Prior: a name from 'diffrestore models list' or a local model folder. "
              "Default: the task's own (builtin; ct and mri ship theirs).", metavar="NAME|DIR"),
    _sampling("preset", "--preset", str, "Solver settings: fast (CPU-friendly budget) or paper (the paper's "
              "settings).", default="fast", choices=PRESET_NAMES, metavar="fast|paper"),
    _sampling("steps", "--steps", int, _steps_help(), low=1, metavar="N"),
    _sampling("prompt", "--prompt", str, "Text prompt for text-conditioned priors (Stable Diffusion). Default: the "
              "model's own (see 'diffrestore models info NAME').", metavar="TEXT"),
    _sampling("negative_prompt", "--negative-prompt", str, "What classifier-free guidance steers away from. "
              "Default: the empty prompt.", metavar="TEXT"),
    _sampling("guidance", "--guidance", float, _guidance_help(), low=0.0, low_open=True, high=1e4, metavar="SCALE",
              hint="use a scale > 0 (1 = no guidance)"),
    _sampling("g2d2_process", "--g2d2-process", str, "--method g2d2 on discrete (VQ-Diffusion) priors: how it "
              "moves to the next step. star (default, the paper's process): draw the tokens from the optimised "
              "posterior and re-mask the next step's count at random; markov (the released code's presets): the "
              "VQ-Diffusion posterior step, every timestep.", choices=G2D2_PROCESSES,
              metavar="|".join(G2D2_PROCESSES)),
    _sampling("solver_set", "--set", str, "A hyper-parameter of the method on top of --preset, e.g. --set "
              "inner_spread=1 (DAPS draws its inner step instead of taking its mean: wider, better calibrated -n "
              "spreads) or --set zeta=2 (DPS's step). Repeatable. The names are the solver's config fields (an "
              "unknown one lists them); 'none' where a setting allows it. Recorded in the JSON summary.",
              metavar="KEY=VALUE", repeat=True),
    _sampling("tile_overlap", "--tile-overlap", int, "Models with a fixed size (e.g. 256x256 checkpoints) denoise "
              "other sizes in overlapping windows, blended at every step; this is their overlap in pixels, at most "
              "half a window. Default: a quarter of the window.", low=0, metavar="PX"),
    _sampling("seed", "--seed", int, "Random seed (any size): the same seed, inputs and device class give the same "
              "output.", default=0, metavar="N"),
    _sampling("num_samples", "--num-samples", int, "Posterior samples per image (default 1; dwgf 4). With N > 1 "
              "every sample is written (<name>_sK), the output is their mean, and <name>_std.png maps the per-pixel "
              "standard deviation (4 x std on the [0, 1] scale, so white = std of 0.25 or more). DAPS takes its "
              "inner step's mean for one sample (the sharpest single restoration) and draws it for several, so "
              "that the spread is the posterior's: sample 1 of -n 4 is not the -n 1 result (--set inner_spread=0 "
              "keeps the mean). With few samples the std is itself uncertain: a 90 % interval is mean +- 2.6 std "
              "at -n 4, +- 2.0 at -n 8. With --method dwgf they are the interacting particles of one flow (the "
              f"paper's 4; -n 1 is RED-diff in latent space). At most {MAX_NUM_SAMPLES}.", short="-n", low=1,
              high=MAX_NUM_SAMPLES, metavar="N", hint="every sample is restored and written as its own file"),
    _sampling("device", "--device", str, "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
              default="auto", metavar="auto|cpu|cuda[:N]|mps"),
    _sampling("dtype", "--dtype", str, "Network precision: auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or "
              "bf16. fp16 is refused on the CPU.", default="auto", metavar="auto|fp32|fp16|bf16"),
    _sampling("batch_size", "--batch-size", int, "Images of the same size restored together (each brings "
              "--num-samples rows).", default=4, low=1, metavar="N"),
    _sampling("simulate", "--simulate", bool, "Treat each input as the CLEAN image: degrade it with this task's "
              "operator and noise, restore it, and score it against the input (PSNR / SSIM, or --metrics).",
              default=False),
    _sampling("metrics", "--metrics", str, _metrics_help(), metavar="NAME,...", parse=parse_metric_list),
    _sampling("offline", "--offline", bool, "Never download: use cached weights only.", default=False),
    _sampling("registry", "--registry", Path, "The models.toml that --model NAME is looked up in, instead of the "
              "one shipped with diffrestore (as in 'diffrestore models --registry').", metavar="FILE",
              envvar="DIFFRESTORE_REGISTRY"),
    _output("output", "--output", Path, "Output file (one input only) or folder (created; folder inputs keep "
            "their layout). Default: next to each input.", short="-o", metavar="FILE|DIR"),
    _output("suffix", "--suffix", str, "Appended to the input's name: <stem><suffix>.<ext>. Default: _<task>, e.g. "
            "photo_inpaint.png.", metavar="TEXT"),
    _output("overwrite", "--overwrite", bool, "Replace existing outputs (inputs are never overwritten).",
            default=False),
    _output("skip_existing", "--skip-existing", bool, "Skip inputs whose outputs all exist (reported as skipped); an "
            "input with only some of them (a run stopped mid-write, another -n) is restored again.",
            default=False),
    _output("recursive", "--recursive", bool, "Also take images from subfolders of folder inputs.", short="-r",
            default=False),
    _output("include_outputs", "--include-outputs", bool, "Also restore folder files named like this command's "
            "outputs (<stem>_<task>, _sK, _std), which are otherwise skipped and reported as such.", default=False),
    _output("fail_fast", "--fail-fast", bool, "Stop at the first failed image (default: go on, report, exit 1).",
            default=False),
    _output("json_output", "--json", bool, "Print a JSON summary on stdout instead of the output paths.",
            default=False),
    _output("summary_file", "--summary", Path, "Also write the JSON summary (as --json prints it) to FILE, "
            "atomically; only an earlier run's summary is replaced.", metavar="FILE"),
    _output("shard", "--shard", str, "Restore only part I of N of the inputs (round-robin over the planned list, "
            "the same in every process): run I = 1..N anywhere, then 'diffrestore summary merge'. Slurm array "
            "tasks and torchrun / accelerate processes split the inputs by themselves; --shard 1/1 turns a Slurm "
            "array's split off.", metavar="I/N"),
    _output("quiet", "--quiet", bool, "Print nothing but errors (and --json).", short="-q", default=False),
    _output("progress", "--progress", str, "Progress on stderr: auto = a bar on a terminal (unless CI is set), "
            "else one line per image.", default="auto", choices=PROGRESS_MODES, metavar="auto|rich|plain|none"),
)
#: the flags by keyword name
RUN_FLAG_BY_NAME: dict[str, Flag] = {flag.name: flag for flag in RUN_FLAGS}


# ---------------------------------------------------------------------------------------- diffrestore eval

EVALUATION = "Evaluation"


def _eval_metrics_help() -> str:
    return (f"Metrics of the table, comma-separated. Default: {','.join(DEFAULT_METRICS)}. Per image (mean ± std "
            f"over the images): {metric_conventions('image')}. Over the whole set of saved images, against the "
            f"references: {metric_conventions('set')}. Weights a metric needs come from the model registry "
            "('diffrestore models download NAME'), checked before anything runs.")


#: the options of 'diffrestore eval' besides the run's (mode a) or instead of them (mode b)
EVAL_FLAGS: tuple[Flag, ...] = (
    Flag("eval_methods", "--method", str, "Methods to compare, comma-separated (one row of the table each, "
         "restored into OUT/<method>/), e.g. daps,dps. Any --method of the task commands.", default="daps",
         metavar="METHOD,...", panel=EVALUATION),
    Flag("eval_metrics", "--metrics", str, _eval_metrics_help(), default=",".join(DEFAULT_METRICS),
         metavar="NAME,...", panel=EVALUATION, show_default=False, parse=parse_metric_list),
    Flag("eval_output", "--output", Path, "Folder of the report: results.csv, results.json, table.md, "
         "contact_sheet.png (and OUT/<method>/ with the restored images). Required for a task; optional with "
         "--restored (the table is printed either way).", short="-o", metavar="OUT", panel=EVALUATION),
    Flag("contact_rows", "--contact-sheet", int, "Images (rows) in OUT/contact_sheet.png: degraded input, each "
         "method, reference, and each method's std map with -n > 1. 0: no contact sheet.", default=4, low=0,
         metavar="N", panel=EVALUATION),
)
EVAL_FLAG_BY_NAME: dict[str, Flag] = {flag.name: flag for flag in EVAL_FLAGS}
