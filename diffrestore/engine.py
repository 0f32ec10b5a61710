"""Device and dtype resolution, seeding, and the progress callback type.

Rules (see DESIGN.md):
- ``device="auto"`` picks cuda, then mps, then cpu.
- ``dtype="auto"`` is fp16 on CUDA and float32 elsewhere; fp16 on the CPU is refused (most CPU kernels have
  no half implementation and the ones that do are slow), bf16 on the CPU is allowed where torch supports it.
- Every random number comes from a ``torch.Generator`` seeded on the CPU; tensors are drawn there and moved,
  so the same seed gives the same numbers whatever device runs the network.
"""

from __future__ import annotations

import glob as _glob
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import tasks
from .errors import DeviceError, DiffrestoreError, ModelError, OutputError, UsageError

if TYPE_CHECKING:
    import torch

#: progress(done, total, what): called by solvers after each step; never prints by itself.
ProgressCallback = Callable[[int, int, str], None]

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")


def available_devices() -> dict[str, bool]:
    """Which device classes torch can use here."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps is not None and mps.is_available()),
    }


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N | mps`` into a usable ``torch.device`` or raise DeviceError."""
    import torch

    name = (name or "auto").strip().lower()
    have = available_devices()
    if name == "auto":
        for candidate in ("cuda", "mps"):
            if have[candidate]:
                return torch.device(candidate)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type not in have:
        raise DeviceError(f"unsupported device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps")
    if not have[device.type]:
        raise DeviceError(f"device '{name}' is not available on this machine", hint="use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)",
            hint="use cuda:0",
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype the network runs in. Solver state always stays float32."""
    import torch

    name = (name or "auto").strip().lower()
    if name not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype '{name}'", hint=f"use one of {', '.join(DTYPE_NAMES)}")
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name == "fp32":
        return torch.float32
    if name == "fp16":
        if device.type == "cpu":
            raise DeviceError(
                "fp16 is not supported on the CPU", hint="use --dtype fp32 (or bf16), or run on cuda/mps"
            )
        return torch.float16
    # bf16
    if device.type == "mps" and not _mps_supports_bf16():
        raise DeviceError("bf16 is not supported on this MPS device", hint="use --dtype fp16 or fp32")
    return torch.bfloat16


def _mps_supports_bf16() -> bool:
    import torch

    try:
        torch.zeros(1, dtype=torch.bfloat16, device="mps")
    except (RuntimeError, TypeError):
        return False
    return True


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: draw on the CPU, then move, so results do not depend on the device's RNG."""
    import torch

    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator


# ==============================================================================================================
# Running a restoration job: plan -> validate -> load the model once -> batches -> atomic saves -> summary.
# Nothing below parses flags: the CLI and the Python API both fill a ``RunOptions``.

PROGRESS_MODES = ("auto", "rich", "plain", "none")
#: The uncertainty map stores gain * std (std of the samples on the [0, 1] scale), clamped: white = std >= 0.25.
STD_MAP_GAIN = 4.0
_GLOB_CHARS = re.compile(r"[*?\[]")


def image_extensions() -> tuple[str, ...]:
    """Extensions (lower case, with the dot) that folder and glob inputs pick up."""
    from .imageio import IMAGE_EXTENSIONS

    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in IMAGE_EXTENSIONS)


@dataclass
class RunOptions:
    """Everything a run needs besides the task options; the CLI's flags with the same names."""

    task: str
    method: str = "daps"
    model: str = "builtin"
    preset: str = "fast"
    steps: int | None = None
    seed: int = 0
    num_samples: int = 1
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 4
    output: Path | None = None
    suffix: str | None = None
    overwrite: bool = False
    skip_existing: bool = False
    json_output: bool = False
    quiet: bool = False
    progress: str = "auto"
    fail_fast: bool = False
    simulate: bool = False
    recursive: bool = False
    offline: bool | None = None


@dataclass
class Item:
    """One input image and what became of it."""

    index: int
    input: Path
    output: Path
    samples: list[Path] = field(default_factory=list)
    std_map: Path | None = None
    mask: tasks.MaskSource | None = None
    size: tuple[int, int] | None = None  # (width, height) of the input
    channels: int | None = None
    status: str = "pending"  # pending | done | skipped | failed | not-run
    error: str | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def outputs(self) -> list[Path]:
        return [self.output, *self.samples, *([self.std_map] if self.std_map else [])]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": str(self.input), "status": self.status, "output": str(self.output)}
        if self.samples:
            data["samples"] = [str(p) for p in self.samples]
        if self.std_map:
            data["std_map"] = str(self.std_map)
        if self.error:
            data["error"] = self.error
        if self.metrics:
            data.update({k: (round(v, 4) if v != float("inf") else None) for k, v in self.metrics.items()})
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class RunSummary:
    task: str
    items: list[Item]
    seconds: float = 0.0
    load_seconds: float = 0.0
    interrupted: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def exit_code(self) -> int:
        from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED

        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.count("failed") or self.count("not-run") else EXIT_OK

    def line(self) -> str:
        failed = [item.input.name for item in self.items if item.status == "failed"]
        text = f"{self.count('done')} done, {self.count('skipped')} skipped, {len(failed)} failed"
        if failed:
            names = ", ".join(failed[:5]) + (f", and {len(failed) - 5} more" if len(failed) > 5 else "")
            text += f" ({names})"
        if self.count("not-run"):
            text += f", {self.count('not-run')} not run"
        text += f" in {self.seconds:.1f} s"
        return ("interrupted: " if self.interrupted else "") + text

    def to_json(self) -> dict[str, Any]:
        return {
            **self.info,
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "not_run": self.count("not-run"),
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "items": [item.to_json() for item in self.items],
        }


# --------------------------------------------------------------------------------------------------------------
# Inputs and outputs (no torch)


@dataclass(frozen=True)
class InputFile:
    path: Path
    root: Path | None  # the folder it was found in (outputs in -o DIR mirror the layout below it)


def _looks_like_output(path: Path, suffix: str) -> bool:
    """A file an earlier run of this command wrote (so a folder run does not restore its own outputs)."""
    stem = path.stem
    return stem.endswith(suffix) or bool(re.search(re.escape(suffix) + r"_(std|s\d+)$", stem))


def expand_inputs(
    inputs: list[str] | list[Path], *, recursive: bool, extensions: tuple[str, ...], skip_suffix: str | None = None
) -> list[InputFile]:
    """Files as given; folders -> their images (sorted, by extension, ``recursive`` descends); globs expanded.

    UsageError for a path that does not exist, a glob without matches, or a folder without images.
    """
    found: list[InputFile] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, root))

    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")

    if not inputs:
        raise UsageError("no input given", hint="pass image files, folders or globs")
    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted((p for p in path.glob(pattern) if is_image(p)), key=lambda p: p.relative_to(path).as_posix())
            if skip_suffix:
                files = [p for p in files if not _looks_like_output(p, skip_suffix)]
            if not files:
                raise UsageError(
                    f"no images in folder {path}",
                    hint=f"looked for {', '.join(extensions)}"
                    + ("" if recursive else "; add --recursive for subfolders"),
                )
            for p in files:
                add(p, path)
        elif path.is_file():
            add(path, None)
        elif _GLOB_CHARS.search(text):
            matches = sorted(Path(m) for m in _glob.glob(os.path.expanduser(text), recursive=recursive))
            files = [m for m in matches if is_image(m)]
            if not files:
                raise UsageError(f"no images match '{text}'")
            for p in files:
                add(p, None)
        elif path.exists():
            raise UsageError(f"input is not a file or folder: {path}")
        else:
            raise UsageError(f"input not found: {path}")
    return found


def default_suffix(task: str) -> str:
    return f"_{tasks.canonical_task(task)}"


def _output_is_dir(output: Path, n_inputs: int, extensions: tuple[str, ...]) -> bool:
    if output.is_dir() or str(output).endswith(("/", os.sep)):
        return True
    if output.suffix.lower() in extensions:
        if n_inputs > 1:
            raise UsageError(
                f"-o {output} names one file but there are {n_inputs} inputs", hint="give a folder: -o DIR/"
            )
        return False
    if output.suffix:
        raise UsageError(f"-o {output}: unknown image extension '{output.suffix}'",
                         hint=f"use one of {', '.join(extensions)}, or a folder")
    return True


def plan_outputs(files: list[InputFile], opts: RunOptions, extensions: tuple[str, ...]) -> list[Item]:
    """Output names for every input, with every collision checked. Raises OutputError / UsageError."""
    suffix = default_suffix(opts.task) if opts.suffix is None else opts.suffix
    if opts.output is None and suffix == "":
        raise UsageError("--suffix '' would overwrite the inputs", hint="give -o DIR or a non-empty --suffix")
    out_dir: Path | None = None
    out_file: Path | None = None
    if opts.output is not None:
        output = Path(opts.output).expanduser()
        if _output_is_dir(output, len(files), extensions):
            out_dir = output
        else:
            out_file = output
    width = len(str(opts.num_samples))
    items: list[Item] = []
    for index, f in enumerate(files):
        if out_file is not None:
            main = out_file
        else:
            folder = f.path.parent
            if out_dir is not None:
                relative = f.path.parent.relative_to(f.root) if f.root is not None else Path()
                folder = out_dir / relative
            main = folder / f"{f.path.stem}{suffix}{f.path.suffix.lower()}"
        item = Item(index=index, input=f.path, output=main)
        if opts.num_samples > 1:
            item.samples = [main.with_name(f"{main.stem}_s{i:0{width}d}{main.suffix}") for i in
                            range(1, opts.num_samples + 1)]
            item.std_map = main.with_name(f"{main.stem}_std.png")
        items.append(item)

    inputs = {f.path.resolve(): f.path for f in files}
    owners: dict[Path, Item] = {}
    for item in items:
        for out in item.outputs:
            key = out.resolve()
            if key in inputs:
                raise OutputError(f"output {out} would overwrite the input {inputs[key]}",
                                  hint="inputs are never overwritten: use -o DIR or --suffix")
            if key in owners and owners[key] is not item:
                raise OutputError(
                    f"{owners[key].input} and {item.input} would both be written to {out}",
                    hint="use -o DIR with distinct names, or rename one input",
                )
            owners[key] = item
    return items


def check_existing(items: list[Item], opts: RunOptions) -> None:
    """Existing outputs: an error, unless --overwrite (replace) or --skip-existing (mark skipped)."""
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing cannot be combined")
    existing = [item for item in items if any(p.exists() for p in item.outputs)]
    if not existing or opts.overwrite:
        return
    if opts.skip_existing:
        for item in existing:
            item.status = "skipped"
            item.error = f"{next(p for p in item.outputs if p.exists())} exists"
        return
    first = next(p for p in existing[0].outputs if p.exists())
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    raise OutputError(f"output {first} already exists{more}",
                      hint="use --overwrite to replace or --skip-existing to keep it")


def check_run_options(opts: RunOptions) -> None:
    """Flag checks that need nothing but the flags."""
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing cannot be combined")
    if opts.num_samples < 1:
        raise UsageError(f"--num-samples must be at least 1, got {opts.num_samples}")
    if opts.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {opts.batch_size}")
    if opts.steps is not None and opts.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {opts.steps}")
    from .solvers import PRESET_NAMES  # the solvers own their presets

    if opts.preset not in PRESET_NAMES:
        raise UsageError(f"unknown preset '{opts.preset}'", hint=f"use {' or '.join(sorted(PRESET_NAMES))}")
    if opts.progress not in PROGRESS_MODES:
        raise UsageError(f"unknown --progress '{opts.progress}'", hint=f"use {', '.join(PROGRESS_MODES)}")
    if opts.suffix is not None and ("/" in opts.suffix or os.sep in opts.suffix):
        raise UsageError(f"--suffix '{opts.suffix}' must not contain a path separator")


# --------------------------------------------------------------------------------------------------------------
# Progress and messages: results on stdout, progress and messages on stderr.


def progress_mode(requested: str, *, quiet: bool, stream: TextIO | None = None) -> str:
    """``auto`` -> rich when stderr is a terminal and CI is unset, else plain; quiet -> none."""
    if quiet:
        return "none"
    if requested != "auto":
        return requested
    stream = stream or sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return "rich" if is_tty and not os.environ.get("CI") else "plain"


class Reporter:
    """Plain reporter; also the base of the others. ``quiet`` keeps only failure lines."""

    def __init__(self, *, quiet: bool = False, show_progress: bool = True, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.show_progress = show_progress and not quiet
        self._out = out
        self._err = err
        self.total = 0
        self.finished = 0

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # stdout ---------------------------------------------------------------------------------------------------
    def result(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    # stderr ---------------------------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        """A note or warning; hidden by --quiet."""
        if not self.quiet:
            print(text, file=self.err, flush=True)

    def failure(self, item: Item) -> None:
        """Always shown, one line naming the file and the reason."""
        print(f"failed: {item.input}: {item.error}", file=self.err, flush=True)

    def start(self, total: int) -> None:
        self.total = total

    def batch_started(self, items: list[Item]) -> None:
        pass

    def step(self, done: int, total: int, what: str) -> None:
        pass

    def item_finished(self, item: Item) -> None:
        self.finished += 1
        if item.status == "failed":
            self.failure(item)
            return
        if not self.show_progress:
            return
        width = len(str(self.total))
        if item.status == "skipped":
            text = f"skipped {item.input} ({item.error})"
        else:
            text = f"{item.input} -> {item.output} ({item.seconds:.1f} s)"
        print(f"[{self.finished:>{width}}/{self.total}] {text}", file=self.err, flush=True)


class RichReporter(Reporter):
    """A bar for images and one for the solver steps of the current batch, on stderr."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=self.err, stderr=self._err is None)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=False, redirect_stdout=False, redirect_stderr=False,
        )
        # Results belong on stdout. When stdout is the same terminal as the bar, print them through the bar's
        # console (above the bar) so the display stays intact; when it is a pipe or file, write it plainly.
        self._stdout_is_tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._images = None
        self._steps = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def result(self, text: str) -> None:
        if self.quiet:
            return
        if self._stdout_is_tty:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.out, flush=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def failure(self, item: Item) -> None:
        self.console.print(f"failed: {item.input}: {item.error}", markup=False, highlight=False, soft_wrap=True)

    def start(self, total: int) -> None:
        super().start(total)
        self._images = self.progress.add_task("images", total=total)
        self._steps = self.progress.add_task("steps", total=1, visible=False)

    def batch_started(self, items: list[Item]) -> None:
        names = ", ".join(item.input.name for item in items[:3]) + (" ..." if len(items) > 3 else "")
        self.progress.update(self._steps, description=f"steps  {names}", completed=0, visible=True)

    def step(self, done: int, total: int, what: str) -> None:
        self.progress.update(self._steps, completed=done, total=total)

    def item_finished(self, item: Item) -> None:
        self.finished += 1
        if item.status == "failed":
            self.failure(item)
        self.progress.advance(self._images)


def make_reporter(opts: RunOptions, *, out: TextIO | None = None, err: TextIO | None = None) -> Reporter:
    mode = progress_mode(opts.progress, quiet=opts.quiet, stream=err)
    if mode == "rich":
        return RichReporter(quiet=opts.quiet, out=out, err=err)
    return Reporter(quiet=opts.quiet, show_progress=mode == "plain", out=out, err=err)


# --------------------------------------------------------------------------------------------------------------
# Model and solver


def load_prior(
    name: str, *, device: torch.device, dtype: torch.dtype, offline: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """The prior for ``--model``: a registry name or a local model folder. ModelError when it cannot load."""
    from .registry import resolve_prior

    try:
        return resolve_prior(name, device=device, dtype=dtype, offline=offline, echo=echo)
    except DiffrestoreError:
        raise
    except Exception as error:  # a model folder that is not what it claims to be
        raise ModelError(f"cannot load model '{name}': {error}") from error


def make_solver(method: str, preset: str, steps: int | None) -> Any:
    from .solvers import METHOD_NAMES, get_solver

    if method not in METHOD_NAMES:
        raise UsageError(f"unknown method '{method}'", hint=f"use one of {', '.join(METHOD_NAMES)}")
    overrides = {"steps": steps} if steps is not None else {}
    try:
        return get_solver(method, preset, **overrides)
    except DiffrestoreError:
        raise
    except (KeyError, ValueError, TypeError) as error:
        raise UsageError(f"cannot set up method '{method}' with preset '{preset}': {error}") from error


def _check_fits(prior: Any, task: str, task_opts: tasks.TaskOptions, item: Item, *, simulated: bool,
                name: str) -> None:
    """UsageError when the prior cannot restore this image: channels, or a fixed native size (no tiling yet)."""
    assert item.size is not None and item.channels is not None
    tasks.check_channels(task, item.channels, int(prior.channels), name)
    channels = tasks.x_channels(task, item.channels, int(prior.channels))
    w, h = tasks.restored_size(task, task_opts, item.size, simulate=simulated)
    if hasattr(prior, "check_image_shape"):
        prior.check_image_shape((channels, h, w))


# --------------------------------------------------------------------------------------------------------------
# The restoration of one batch (shared with the Python API)


@dataclass
class Restored:
    """What one image's restoration produced (tensor units, CPU, float32)."""

    image: torch.Tensor  # (1, C, H, W): the output (the sample mean when there are several samples)
    samples: torch.Tensor  # (K, C, H, W)
    std: torch.Tensor | None  # (1, 1, H, W) per-pixel std of the samples on the [0, 1] scale, mean over channels
    measurement: torch.Tensor  # (1, ...) y
    reference: torch.Tensor | None  # the clean image when simulating
    metrics: dict[str, float]


def restore_batch(
    prior: Any,
    solver: Any,
    task: str,
    task_opts: tasks.TaskOptions,
    images: list[torch.Tensor],
    *,
    mask: torch.Tensor | None,
    num_samples: int,
    seed: int,
    simulate: bool,
    progress: ProgressCallback | None = None,
) -> list[Restored]:
    """Restore same-size images (each (1, C, H, W), tensor units) that share one operator, in one solver call."""
    import torch

    from .operators import Problem

    task = tasks.canonical_task(task)
    in_c, h, w = (int(v) for v in images[0].shape[1:])
    simulated = tasks.is_simulated(task, simulate)
    out_w, out_h = tasks.restored_size(task, task_opts, (w, h), simulate=simulated)
    tasks.check_channels(task, in_c, int(prior.channels), getattr(prior, "name", None) or "the model")
    channels = tasks.x_channels(task, in_c, int(prior.channels))
    x_shape = (channels, out_h, out_w)
    if hasattr(prior, "check_image_shape"):
        prior.check_image_shape(x_shape)
    operator = tasks.build_operator(task, task_opts, x_shape, seed=seed, mask=mask)
    noise = tasks.build_noise(task, task_opts)
    ys, refs = [], []
    for image in images:
        # Simulated noise is drawn per image from the seed, so an image's measurement does not depend on its batch.
        y, ref = tasks.measurement(task, operator, noise, image.to(torch.float32), channels=channels,
                                   simulate=simulated, generator=make_generator(seed + 1))
        ys.append(y)
        refs.append(ref)
    device = getattr(prior, "device", torch.device("cpu"))
    operator = operator.to(device)
    y_batch = torch.cat([y.expand(num_samples, *y.shape[1:]) for y in ys]).contiguous().to(device)
    problem = Problem(operator=operator, noise=noise, y=y_batch)
    x = solver.run(prior, problem, generator=make_generator(seed), progress=progress)
    x = x.detach().to("cpu", torch.float32)

    from . import metrics

    results = []
    for i in range(len(images)):
        samples = x[i * num_samples : (i + 1) * num_samples].clamp(-1.0, 1.0)
        mean = samples.mean(dim=0, keepdim=True)
        std = None
        if num_samples > 1:
            std = ((samples + 1.0) / 2.0).std(dim=0, keepdim=True).mean(dim=1, keepdim=True)
        scores: dict[str, float] = {}
        if refs[i] is not None:
            scores = {"psnr": float(metrics.psnr(mean, refs[i])[0]), "ssim": float(metrics.ssim(mean, refs[i])[0])}
        results.append(Restored(
            image=tasks.to_output_channels(task, mean, in_c),
            samples=tasks.to_output_channels(task, samples, in_c),
            std=std, measurement=ys[i], reference=refs[i], metrics=scores,
        ))
    return results


def std_map_image(std: torch.Tensor) -> torch.Tensor:
    """The std map as a gray image in tensor units: value = clamp(STD_MAP_GAIN * std, 0, 1), no rescaling."""
    return (std * STD_MAP_GAIN).clamp(0.0, 1.0) * 2.0 - 1.0


# --------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class _Prepared:
    item: Item
    mask: Any = None  # bool tensor (1, 1, H, W) or None
    key: tuple = ()


def _loaded_tensor(loaded: Any) -> torch.Tensor:
    return loaded.tensor


def _loaded_size(loaded: Any) -> tuple[int, int]:
    t = _loaded_tensor(loaded)
    return int(t.shape[-1]), int(t.shape[-2])


def _short_error(error: BaseException) -> str:
    if isinstance(error, DiffrestoreError):
        return str(error)
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def run(
    inputs: list[str] | list[Path],
    opts: RunOptions,
    task_opts: tasks.TaskOptions,
    *,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Run a whole job. Raises DiffrestoreError for problems found before any model loads; per-image failures
    are recorded on the items. KeyboardInterrupt propagates after the summary is marked interrupted and printed.
    """
    t_start = time.perf_counter()
    task = tasks.canonical_task(opts.task)
    opts.task = task
    check_run_options(opts)
    tasks.validate_options(task, task_opts)
    simulated = tasks.is_simulated(task, opts.simulate)
    solver = make_solver(opts.method, opts.preset, opts.steps)
    solver.check_task(task, task_opts.noise, opts.num_samples)  # e.g. mmse: denoising only
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)

    extensions = image_extensions()
    suffix = default_suffix(task) if opts.suffix is None else opts.suffix
    files = expand_inputs(inputs, recursive=opts.recursive, extensions=extensions, skip_suffix=suffix or None)
    items = plan_outputs(files, opts, extensions)
    check_existing(items, opts)

    reporter = reporter or make_reporter(opts)
    summary = RunSummary(task=task, items=items, info={
        "task": task, "method": opts.method, "model": opts.model, "preset": opts.preset,
        "steps": opts.steps or getattr(getattr(solver, "config", None), "steps", None),
        "seed": opts.seed, "num_samples": opts.num_samples, "simulate": simulated, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "operator": tasks.describe(task, task_opts),
    })

    # Validate every input (decode it, find and check its mask) before any weights load.
    from . import imageio

    prepared: list[_Prepared] = []
    single = len(items) == 1
    for item in items:
        if item.status == "skipped":
            continue
        try:
            loaded = imageio.load_image(item.input)
            item.size = _loaded_size(loaded)
            item.channels = int(_loaded_tensor(loaded).shape[1])
            item.mask = tasks.mask_source(task, task_opts, item.input, extensions)
            mask = None
            out_size = tasks.restored_size(task, task_opts, item.size, simulate=simulated)
            if item.mask.kind != "none":
                mask = tasks.build_mask(item.mask, task_opts, out_size, seed=opts.seed, loaded=loaded)
            del loaded
        except DiffrestoreError as error:
            if single or opts.fail_fast:
                raise
            item.status, item.error = "failed", str(error)
            continue
        except (OSError, ValueError) as error:
            if single or opts.fail_fast:
                raise UsageError(f"{item.input}: {_short_error(error)}") from error
            item.status, item.error = "failed", _short_error(error)
            continue
        key = (item.size, item.channels, item.mask.key(item.input) if item.mask else None)
        prepared.append(_Prepared(item=item, mask=mask, key=key))

    with reporter:
        reporter.start(len(items))
        for item in items:
            if item.status in ("failed", "skipped"):
                reporter.item_finished(item)
        try:
            if prepared:
                t_load = time.perf_counter()
                prior = load_prior(opts.model, device=device, dtype=dtype, offline=opts.offline,
                                   echo=reporter.message)
                summary.load_seconds = time.perf_counter() - t_load
                fitting = []
                for p in prepared:
                    # Channels and native size are only known once the model is loaded.
                    try:
                        _check_fits(prior, task, task_opts, p.item, simulated=simulated, name=opts.model)
                    except DiffrestoreError as error:
                        if single or opts.fail_fast:
                            raise
                        p.item.status, p.item.error = "failed", str(error)
                        reporter.item_finished(p.item)
                        continue
                    fitting.append(p)
                _run_batches(fitting, prior, solver, task, task_opts, opts, reporter, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            for item in items:
                if item.status == "pending":
                    item.status = "not-run"
            summary.seconds = time.perf_counter() - t_start
            reporter.message(summary.line())
            raise
        summary.seconds = time.perf_counter() - t_start
        reporter.message(summary.line())
    return summary


def _batches(prepared: list[_Prepared], batch_size: int) -> list[list[_Prepared]]:
    """Consecutive groups of at most ``batch_size`` images sharing size, channels and mask, in input order."""
    groups: dict[tuple, list[_Prepared]] = {}
    for p in prepared:
        groups.setdefault(p.key, []).append(p)
    batches = [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]
    batches.sort(key=lambda b: b[0].item.index)
    return batches


def _run_batches(
    prepared: list[_Prepared],
    prior: Any,
    solver: Any,
    task: str,
    task_opts: tasks.TaskOptions,
    opts: RunOptions,
    reporter: Reporter,
    summary: RunSummary,
) -> None:
    from . import imageio

    stop = False
    notes_seen: set[str] = set()
    protected = [item.input for item in summary.items]
    for batch in _batches(prepared, opts.batch_size):
        if stop:
            for p in batch:
                p.item.status = "not-run"
            continue
        t0 = time.perf_counter()
        reporter.batch_started([p.item for p in batch])
        loaded = []
        try:
            loaded = [imageio.load_image(p.item.input) for p in batch]
            results = restore_batch(
                prior, solver, task, task_opts, [_loaded_tensor(x) for x in loaded], mask=batch[0].mask,
                num_samples=opts.num_samples, seed=opts.seed, simulate=opts.simulate, progress=reporter.step,
            )
        except (DiffrestoreError, RuntimeError, ValueError, OSError) as error:
            message = _short_error(error)
            for p in batch:
                p.item.status, p.item.error = "failed", message
                p.item.seconds = (time.perf_counter() - t0) / len(batch)
                reporter.item_finished(p.item)
            if opts.fail_fast:
                stop = True
            continue
        per_item = (time.perf_counter() - t0) / len(batch)
        for p, like, result in zip(batch, loaded, results, strict=True):
            item = p.item
            t_save = time.perf_counter()
            try:
                for note in _save(item, like, result, overwrite=opts.overwrite, protected=protected):
                    if note not in notes_seen:
                        notes_seen.add(note)
                        reporter.message(f"note: {item.output.name}: {note}")
            except (DiffrestoreError, OSError, ValueError) as error:
                item.status, item.error = "failed", _short_error(error)
                reporter.item_finished(item)
                if opts.fail_fast:
                    stop = True
                continue
            item.status = "done"
            item.metrics = result.metrics
            item.seconds = per_item + time.perf_counter() - t_save
            if not opts.json_output:
                line = str(item.output)
                if result.metrics:
                    line += f"\tPSNR {result.metrics['psnr']:.2f} dB\tSSIM {result.metrics['ssim']:.4f}"
                reporter.result(line)
                for extra in item.outputs[1:]:
                    reporter.result(str(extra))
            reporter.item_finished(item)


def _save(item: Item, like: Any, result: Restored, *, overwrite: bool, protected: list[Path]) -> list[str]:
    """Write the outputs of one finished image (each atomically), samples and std map first, the main one last.

    Returns what the output formats could not keep (imageio's notes)."""
    import dataclasses

    from . import imageio

    if item.mask is not None and item.mask.kind == "alpha":
        # The transparency was the hole to fill: the filled result is opaque.
        like = dataclasses.replace(like, alpha=None)
    for folder in {p.parent for p in item.outputs}:
        folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    for path, sample in zip(item.samples, result.samples if item.samples else [], strict=True):
        notes += imageio.save_image(sample.unsqueeze(0), path, like=like, overwrite=overwrite,
                                    protected=protected).notes
    if item.std_map is not None and result.std is not None:
        imageio.save_image(std_map_image(result.std), item.std_map, like=None, overwrite=overwrite,
                           protected=protected)
    notes += imageio.save_image(result.image, item.output, like=like, overwrite=overwrite, protected=protected).notes
    return notes


def summary_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_json(), indent=2)
