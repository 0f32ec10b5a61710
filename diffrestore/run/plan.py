"""Planning a run without torch: inputs (files, folders, globs) -> items with output names, every collision and
existing output checked. Also the per-item record and the run summary that the reporters and ``--json`` print.

Nothing here loads an image or a model, so a bad flag or a colliding output fails before anything heavy starts.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, UsageError
from ..tasks import task_spec
from .input_files import LOOKS_LIKE_OUTPUT, InputFile, expand_inputs, real_path
from .options import RunOptions, samples_per_image

if TYPE_CHECKING:
    from ..tasks.masks import MaskSource

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
    replace: list[Path] = field(default_factory=list)  # outputs of a partial set (--skip-existing) it replaces
    part: int | None = None  # the image of a several-image file it restores (InputFile.part)
    input_info: dict[str, Any] = field(default_factory=dict)  # what the task read from the input (MRI's scale)

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
        optional = {"part": self.part, "input_info": self.input_info or None, "tiles": self.tiles,
                    "resolved": self.resolved or None}
        data.update({key: value for key, value in optional.items() if value is not None})
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
            **{key: self.count(status) for key, status in (("done", "done"), ("skipped", "skipped"),
                                                          ("failed", "failed"), ("not_run", "not-run"))},
            "interrupted": self.interrupted,
            "signal": self.signal,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "items": [item.to_json() for item in self.items],
        }


# --------------------------------------------------------------------------------------------------------------
# Inputs and outputs


def _output_folder(opts: RunOptions, extensions: tuple[str, ...]) -> Path | None:
    """The folder -o names, when it names one (an image file name names a file)."""
    if opts.output is None:
        return None
    output = Path(opts.output).expanduser()
    if output.suffix.lower() in extensions and not output.is_dir():
        return None
    return output


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
        if output.is_symlink() and not output.exists():
            raise OutputError(f"-o {output} is a symbolic link to {os.readlink(output)}, which does not exist",
                              hint="create the link's target, remove the link, or choose another -o")
        if _output_is_dir(output, len(files), extensions):
            out_dir = output
        else:
            out_file = output
    samples = samples_per_image(opts)
    width = len(str(samples))
    items: list[Item] = []
    keys: list[list[str]] = []  # each item's outputs, resolved
    # Paths as strings and resolved folders cached: a few string operations and one lstat per output, so a
    # folder of 100 000 files plans in seconds (Path objects and their hashes cost more than the checks).
    # (input folder, root) -> (output folder, resolved, exists: in a new folder no output is a link to check)
    out_folders: dict[tuple[str, Path | None], tuple[Path, str, bool]] = {}
    for index, f in enumerate(files):
        where = ("", None) if out_file is not None else (os.path.dirname(str(f.path)), f.root)
        known = out_folders.get(where)
        if known is None:
            if out_file is not None:
                folder = out_file.parent
            elif out_dir is not None:
                folder = out_dir / (f.path.parent.relative_to(f.root) if f.root is not None else Path())
            else:
                folder = f.path.parent
            known = out_folders[where] = (folder, real_path(folder), os.path.isdir(folder))
        folder, real, there = known
        stem = f.path.stem if f.part is None else f"{f.path.stem}_{f.part:03d}"  # an MRI .h5's slice 7: _007
        main = out_file if out_file is not None else folder / f"{stem}{suffix}{f.path.suffix.lower()}"
        item = Item(index=index, input=f.path, output=main, part=f.part)
        if f.looks_like_output:
            item.status, item.error = "skipped", LOOKS_LIKE_OUTPUT
        elif samples > 1:
            item.samples = [main.with_name(f"{main.stem}_s{i:0{width}d}{main.suffix}") for i in
                            range(1, samples + 1)]
            item.std_map = main.with_name(f"{main.stem}_std.png")
        item_keys = [] if f.looks_like_output else [
            # the output itself is resolved only when it is a symbolic link (never written through to an input)
            real_path(out) if out.name in ("", ".", "..") or (there and os.path.islink(out))
            else os.path.join(real, out.name) for out in item.outputs]
        items.append(item)
        keys.append(item_keys)

    # An earlier output is no input to protect: --overwrite may replace it, as the run that wrote it would.
    inputs = {f.key or real_path(f.path): f.path for f in files if not f.looks_like_output}
    owners: dict[str, Item] = {}
    for item, item_keys in zip(items, keys, strict=True):
        for out, key in zip(item.outputs, item_keys, strict=False):
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
    """Existing outputs: an error, unless --overwrite (replace) or --skip-existing. An image is skipped only when
    its whole set is there (main output, every sample and the std map this run's -n writes); a partial set, left
    by a run stopped between two files or written with another -n, is restored again and its files replaced.
    A dangling symbolic link at an output name counts as existing (writing there would fail only at the end)."""
    if opts.overwrite and opts.skip_existing:
        raise UsageError("--overwrite and --skip-existing cannot be combined")
    existing: list[tuple[Item, list[Path]]] = []
    folders: dict[str, bool] = {}  # output folder -> exists (one stat per folder: a new -o costs no stat per file)

    def present(path: Path) -> bool:
        folder = os.path.dirname(str(path))
        there = folders.get(folder)
        if there is None:
            there = folders[folder] = os.path.isdir(folder or ".")
        return there and os.path.lexists(path)

    for item in items:
        if item.status == "pending":
            found = [p for p in item.outputs if present(p)]
            if found:
                existing.append((item, found))
    if not existing or opts.overwrite:
        return
    if opts.skip_existing:
        for item, found in existing:
            if len(found) == len(item.outputs):
                item.status, item.error = "skipped", f"{item.output} exists"
            else:
                item.replace = found
        return
    first = existing[0][1][0]
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    raise OutputError(f"output {first} already exists{more}",
                      hint="use --overwrite to replace or --skip-existing to keep it")


def check_output_names(item: Item, check_format: Any = None) -> None:
    """OutputError when an output name cannot be written: no image extension to choose the format by (or
    ``check_format``'s rule: ``Task.check_output``), or too long for a file name. Checked before any model loads."""
    from ..imageio.common import _SAVE_FORMATS, IMAGE_EXTENSIONS
    from ..imageio.write import NAME_MAX

    if check_format is not None:
        check_format(item.output)
    elif item.output.suffix.lower() not in _SAVE_FORMATS:
        raise OutputError(
            f"output {item.output} for the input {item.input} has no image extension to choose its format",
            hint=f"rename the input to end in one of {', '.join(IMAGE_EXTENSIONS)}, or give -o NAME.png for it")
    for out in item.outputs:
        size = len(os.fsencode(out.name))
        if size > NAME_MAX:
            raise OutputError(f"output name {out.name} is {size} bytes long, more than the {NAME_MAX} a file name "
                              f"may have (input {item.input})",
                              hint="use a shorter --suffix, or rename the input")


def check_output_folders(items: list[Item]) -> None:
    """OutputError naming the first output folder that cannot be written or created, before any model loads:
    an existing folder must take a new file, a missing one the folders that lead to it (checked on the nearest
    existing parent, which is left as it was)."""
    folders = [Path(folder) for folder in sorted({os.path.dirname(str(out)) or "." for item in items
                                                  if item.status == "pending" for out in item.outputs})]
    checked: set[Path] = set()
    for folder in folders:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():  # mkdir would fail on it, only once the image is restored
                raise OutputError(f"output folder {folder} cannot be created: {existing} is a symbolic link to "
                                  f"{os.readlink(existing)}, which does not exist",
                                  hint="create the link's target, remove the link, or choose another -o")
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


def plan_run(inputs: list[str] | list[Path], opts: RunOptions, *, parts: Any = None) -> list[Item]:
    """Inputs -> items with their outputs named, collisions refused and existing outputs handled."""
    extensions = task_spec(opts.task).input_extensions()  # what the task reads
    suffix = default_suffix(opts.task) if opts.suffix is None else opts.suffix
    skip_suffix = None if opts.include_outputs else suffix or None
    files = expand_inputs(inputs, recursive=opts.recursive, extensions=extensions, skip_suffix=skip_suffix,
                          output_folder=_output_folder(opts, extensions))
    files = files if parts is None else parts(files)  # a file of several images: one each (inputs.py)
    items = plan_outputs(files, opts, extensions)  # every process checks the whole list for collisions
    if opts.sharding is not None and opts.sharding.split:
        items = opts.sharding.select(items)  # then keeps its own part (shards.py)
    check_existing(items, opts)
    check_output_folders(items)
    return items
