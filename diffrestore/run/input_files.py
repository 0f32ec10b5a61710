"""The inputs of a run, without torch: files, folders (recursively on request) and globs expanded into
``InputFile`` values, each found once, in a stable order, with what was found in a folder but named like this
command's outputs marked to be skipped. ``plan.py`` names their outputs.
"""

from __future__ import annotations

import glob as _glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

_GLOB_CHARS = re.compile(r"[*?\[]")


#: why a folder's file named like this command's outputs is skipped (unless --include-outputs)
LOOKS_LIKE_OUTPUT = "looks like an output of this command"


@dataclass(frozen=True)
class InputFile:
    path: Path
    root: Path | None  # the folder it was found in (outputs in -o DIR mirror the layout below it)
    looks_like_output: bool = False  # found in a folder and named like this command's outputs: skipped
    key: str = ""  # its resolved path (symlinks followed), found once while scanning
    part: int | None = None  # one of several images the file holds (an MRI .h5's slice), restored on its own


def _looks_like_output(path: Path, suffix: str) -> bool:
    """A file an earlier run of this command wrote (so a folder run does not restore its own outputs)."""
    return re.search(re.escape(suffix) + r"(_(std|s\d+))?$", path.stem) is not None  # (re caches the pattern)


real_path = os.path.realpath  # a resolved path as a string: cheaper to build, hash and compare than a Path


def _scan_folder(folder: Path, *, recursive: bool, extensions: tuple[str, ...],
                 skip: str | None) -> list[tuple[Path, str]]:
    """A folder's images (visible files with one of ``extensions``; subfolders when ``recursive``, not through
    links to folders, as ``Path.glob('**/*')``), sorted by their path below ``folder``, with their resolved paths.
    One ``scandir`` per folder and no ``stat`` per file (a file's resolved path is its folder's, found once, plus
    its name, unless it is a link): 100 000 files plan in seconds. ``skip``: a resolved folder (-o) left out."""
    found: list[tuple[str, Path, str]] = []
    pending: list[tuple[str, Path, str]] = [("", folder, real_path(folder))]
    while pending:
        relative, here, real = pending.pop()
        if skip is not None and real == skip:
            continue
        try:
            with os.scandir(here) as scan:
                entries = list(scan)
        except OSError:  # an unreadable subfolder is passed over, as glob does
            continue
        for entry in entries:
            name = entry.name
            try:
                if recursive and entry.is_dir(follow_symlinks=False):
                    pending.append((f"{relative}{name}/", here / name, os.path.join(real, name)))
                    continue
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions or not entry.is_file():
                    continue
                link = entry.is_symlink()
            except OSError:
                continue
            key = real_path(os.path.join(here, name)) if link else os.path.join(real, name)
            if skip is None or not key.startswith(skip + os.sep):
                found.append((relative + name, here / name, key))
    found.sort(key=lambda entry: entry[0])
    return [(path, key) for _, path, key in found]


def expand_inputs(
    inputs: list[str] | list[Path], *, recursive: bool, extensions: tuple[str, ...], skip_suffix: str | None = None,
    output_folder: Path | None = None,
) -> list[InputFile]:
    """Files as given; folders -> their images (sorted, by extension, ``recursive`` descends); globs expanded.
    A folder's files named like outputs of ``skip_suffix`` are marked ``looks_like_output``. A folder's files
    inside ``output_folder`` (-o DIR within the folder scanned) are left out: they are outputs, of this run or
    of another task's, and restoring them would nest out/out/ on every run.

    UsageError for a path that does not exist, a glob without matches, or a folder without images.
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    outputs_at = real_path(output_folder) if output_folder is not None else None

    def add(path: Path, root: Path | None, looks_like_output: bool = False, key: str | None = None) -> None:
        key = key or real_path(path)
        if key not in seen:
            seen.add(key)
            found.append(InputFile(path, root, looks_like_output, key))

    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")

    if not inputs:
        raise UsageError("no input given", hint="pass image files, folders or globs")
    for raw in inputs:
        text = str(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            # -o DIR strictly inside this folder: its files are outputs, not inputs (-o DIR = the folder itself
            # writes beside the inputs, where the output names tell them apart)
            scanned = real_path(path)
            inside = outputs_at is not None and outputs_at.startswith(scanned.rstrip(os.sep) + os.sep)
            files = _scan_folder(path, recursive=recursive, extensions=extensions,
                                 skip=outputs_at if inside else None)
            if not files:
                raise UsageError(
                    f"no images in folder {path}",
                    hint=f"looked for {', '.join(extensions)}"
                    + ("" if recursive else "; add --recursive for subfolders"),
                )
            for p, key in files:  # earlier outputs are kept as items, to be counted and named as skipped
                add(p, path, bool(skip_suffix) and _looks_like_output(p, skip_suffix), key)
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
