"""Planning a run without torch: inputs (files, folders, globs) -> items with output names, every collision and
existing output checked. Also the per-item record and the run summary that the reporters and ``--json`` print.

Nothing here loads an image or a model, so a bad flag or a colliding output fails before anything heavy starts.
"""

from __future__ import annotations

import glob as _glob
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, UsageError
from ..tasks import task_spec
from .options import RunOptions, samples_per_image

if TYPE_CHECKING:
    from ..tasks.masks import MaskSource

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class Item:
    """One input image and what became of it."""

    index: int
    input: Path
    output: Path
    samples: list[Path] = field(default_factory=list)
    std_map: Path | None = None
    mask: MaskSource | None = None
    size: tuple[int, int] | None = None  # (width, height) of the input
    channels: int | None = None
    status: str = "pending"  # pending | done | skipped | failed | not-run
    error: str | None = None
    seconds: float = 0.0  # its share of its batch's time, plus its own saving
    metrics: dict[str, float] = field(default_factory=dict)
    batch_images: int = 1  # images restored in the same solver call
    batch_seconds: float = 0.0  # that call's time
    noise_sigma: float | None = None  # the estimated Gaussian noise std on [0, 1] (--noise-sigma auto)
    tiles: int | None = None  # windows per network call when a fixed-size prior is tiled
    resolved: dict[str, Any] = field(default_factory=dict)  # what the solver derived for it (Solver.resolved)
    shard: str | None = None  # a split run: the outer shard ("2/8", --shard or Slurm) that restores it
    rank: int | None = None  # a split run: the torch.distributed rank that restores it

    def record_time(self, images: int, batch_seconds: float, save_seconds: float = 0.0) -> None:
        """Its share of its batch's solver time plus its own saving; the batch's time kept beside it, since a
        batch costs about what one image does and a share alone would understate what one image takes."""
        self.batch_images, self.batch_seconds = images, batch_seconds
        self.seconds = batch_seconds / images + save_seconds

    @property
    def looks_like_output(self) -> bool:
        """Found in a folder and named like this command's outputs (skipped unless --include-outputs)."""
        return self.error == LOOKS_LIKE_OUTPUT

    @property
    def outputs(self) -> list[Path]:
        return [self.output, *self.samples, *([self.std_map] if self.std_map else [])]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": str(self.input), "status": self.status, "output": str(self.output)}
        if self.shard is not None or self.rank is not None:  # a split run: where it sits and who restored it
            data["index"] = self.index
            data.update({k: v for k, v in (("shard", self.shard), ("rank", self.rank)) if v is not None})
        if self.samples:
            data["samples"] = [str(p) for p in self.samples]
        if self.std_map:
            data["std_map"] = str(self.std_map)
        if self.error:
            data["error"] = self.error
        if self.metrics:
            data.update({k: (round(v, 4) if v != float("inf") else None) for k, v in self.metrics.items()})
        if self.noise_sigma is not None:
            data["noise_sigma_estimated"] = round(self.noise_sigma, 6)
        if self.tiles is not None:
            data["tiles"] = self.tiles
        if self.resolved:
            data["resolved"] = self.resolved
        data["seconds"] = round(self.seconds, 3)
        if self.batch_images > 1:
            data.update(batch_images=self.batch_images, batch_seconds=round(self.batch_seconds, 3))
        return data


@dataclass
class RunSummary:
    task: str
    items: list[Item]
    seconds: float = 0.0
    load_seconds: float = 0.0
    interrupted: bool = False
    signal: str | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)
    info: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def exit_code(self) -> int:
        from ..split.summaries import summary_exit_code

        return summary_exit_code(self.to_json())

    def line(self) -> str:
        from ..split.summaries import summary_line

        return summary_line(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            **self.info,
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "not_run": self.count("not-run"),
            "interrupted": self.interrupted,
            "signal": self.signal,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "items": [item.to_json() for item in self.items],
        }


# --------------------------------------------------------------------------------------------------------------
# Inputs and outputs


#: why a folder's file named like this command's outputs is skipped (unless --include-outputs)
LOOKS_LIKE_OUTPUT = "looks like an output of this command"


@dataclass(frozen=True)
class InputFile:
    path: Path
    root: Path | None  # the folder it was found in (outputs in -o DIR mirror the layout below it)
    looks_like_output: bool = False  # found in a folder and named like this command's outputs: skipped


def _looks_like_output(path: Path, suffix: str) -> bool:
    """A file an earlier run of this command wrote (so a folder run does not restore its own outputs)."""
    stem = path.stem
    return stem.endswith(suffix) or bool(re.search(re.escape(suffix) + r"_(std|s\d+)$", stem))


def expand_inputs(
    inputs: list[str] | list[Path], *, recursive: bool, extensions: tuple[str, ...], skip_suffix: str | None = None
) -> list[InputFile]:
    """Files as given; folders -> their images (sorted, by extension, ``recursive`` descends); globs expanded.
    A folder's files named like outputs of ``skip_suffix`` are marked ``looks_like_output``.

    UsageError for a path that does not exist, a glob without matches, or a folder without images.
    """
    found: list[InputFile] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path | None, looks_like_output: bool = False) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, root, looks_like_output))

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
            if not files:
                raise UsageError(
                    f"no images in folder {path}",
                    hint=f"looked for {', '.join(extensions)}"
                    + ("" if recursive else "; add --recursive for subfolders"),
                )
            for p in files:  # earlier outputs are kept as items, to be counted and named as skipped
                add(p, path, bool(skip_suffix) and _looks_like_output(p, skip_suffix))
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
    return f"_{task_spec(task).name}"


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
    samples = samples_per_image(opts)
    width = len(str(samples))
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
        if f.looks_like_output:
            item.status, item.error = "skipped", LOOKS_LIKE_OUTPUT
        elif samples > 1:
            item.samples = [main.with_name(f"{main.stem}_s{i:0{width}d}{main.suffix}") for i in
                            range(1, samples + 1)]
            item.std_map = main.with_name(f"{main.stem}_std.png")
        items.append(item)

    # An earlier output is no input to protect: --overwrite may replace it, as the run that wrote it would.
    inputs = {f.path.resolve(): f.path for f in files if not f.looks_like_output}
    owners: dict[Path, Item] = {}
    for item in items:
        if item.status == "skipped":
            continue
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
    existing = [item for item in items if item.status == "pending" and any(p.exists() for p in item.outputs)]
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


def check_output_folders(items: list[Item]) -> None:
    """OutputError naming the first output folder that cannot be written or created, before any model loads:
    an existing folder must take a new file, a missing one the folders that lead to it (checked on the nearest
    existing parent, which is left as it was)."""
    folders = sorted({out.parent for item in items if item.status == "pending" for out in item.outputs})
    checked: set[Path] = set()
    for folder in folders:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing in checked:
            continue
        checked.add(existing)
        if not existing.is_dir():
            raise OutputError(f"output folder {folder} cannot be created: {existing} is a file, not a folder",
                              hint="choose another -o")
        try:
            if existing == folder:
                fd, probe = tempfile.mkstemp(prefix=".diffrestore-probe-", dir=existing)
                os.close(fd)
                os.unlink(probe)
            else:
                os.rmdir(tempfile.mkdtemp(prefix=".diffrestore-probe-", dir=existing))
        except OSError as error:
            what = f"{folder}" if existing == folder else f"{folder} cannot be created: {existing}"
            raise OutputError(f"output folder {what} is not writable: {error.strerror or error}",
                              hint="choose another -o, or fix the folder's permissions") from None


def plan_run(inputs: list[str] | list[Path], opts: RunOptions) -> list[Item]:
    """Inputs -> items with their outputs named, collisions refused and existing outputs handled."""
    extensions = task_spec(opts.task).input_extensions()  # what the task reads
    suffix = default_suffix(opts.task) if opts.suffix is None else opts.suffix
    skip_suffix = None if opts.include_outputs else suffix or None
    files = expand_inputs(inputs, recursive=opts.recursive, extensions=extensions, skip_suffix=skip_suffix)
    items = plan_outputs(files, opts, extensions)  # every process checks the whole list for collisions
    if opts.sharding is not None and opts.sharding.split:
        items = opts.sharding.select(items)  # then keeps its own part (shards.py)
    check_existing(items, opts)
    check_output_folders(items)
    return items
