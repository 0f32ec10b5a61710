"""Scoring saved images against their references (``diffrestore eval --restored DIR --reference DIR``, and the
set metrics of an eval run, which are computed from its saved files).

The matching rule, one for every folder: a restored file matches the reference whose stem is its own stem, or the
longest reference stem it starts with followed by an underscore: ``photo_inpaint.png`` and ``photo_daps.jpg``
match ``photo.png``, ``photo_2_sr.png`` matches ``photo_2.png`` rather than ``photo.png``. diffrestore's own
extra files (``_std``, ``_s1`` ... ``_sK``) are left out. ``--suffix TEXT`` makes the rule exact instead: the
restored stem is the reference stem followed by TEXT (``--suffix ''``: the same stem). Every restored file needs
a reference and every reference a restored file, of the same size: otherwise one line names the file, exit 2,
before any network loads (sizes are read from the files' headers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiffrestoreError, InputError, SizeMismatchError, UsageError, short_error

#: diffrestore's per-sample files and std maps, which are not restorations to score
_EXTRAS = re.compile(r"_(std|s\d+)$")


@dataclass(frozen=True)
class Pair:
    """A restored file, the reference it is scored against, and the column (method or folder) it belongs to."""

    method: str
    restored: Path
    reference: Path
    size: tuple[int, int] | None = None  # (width, height) from the files' headers, when pairing read them


def _image_extensions() -> tuple[str, ...]:
    from ..imageio import IMAGE_EXTENSIONS

    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in IMAGE_EXTENSIONS)


def list_images(folder: Path, flag: str) -> list[Path]:
    """The visible images directly in ``folder``, sorted by name; UsageError naming ``flag`` when it is missing,
    not a folder, or holds no image."""
    if not folder.exists():
        raise UsageError(f"{flag} {folder}: no such folder")
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder} is not a folder")
    extensions = _image_extensions()
    found = sorted(folder / name for name in os.listdir(folder)
                   if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions
                   and (folder / name).is_file())
    if not found:
        raise UsageError(f"{flag} {folder}: no images in the folder", hint=f"looked for {', '.join(extensions)}")
    return found


def match_reference(stem: str, references: dict[str, Path], suffix: str | None) -> Path | None:
    """The reference of a restored file's ``stem`` under the module's rule (None: no match)."""
    if suffix is not None:
        return references.get(stem[: len(stem) - len(suffix)]) if stem.endswith(suffix) else None
    if stem in references:
        return references[stem]
    candidates = [ref for ref in references if stem.startswith(ref + "_")]
    return references[max(candidates, key=len)] if candidates else None


def pair_folders(restored_dirs: list[Path], reference_dir: Path, *, suffix: str | None = None,
                 note: Callable[[str], None] | None = None) -> tuple[list[str], list[Pair]]:
    """(the column labels, every pair in reference order per folder), every file matched and its size checked
    against its reference's. UsageError / InputError naming the first file that does not fit."""
    from ..imageio import probe_image

    references: dict[str, Path] = {}
    for path in list_images(reference_dir, "--reference"):
        if path.stem in references:
            raise InputError(f"--reference {reference_dir}: {references[path.stem].name} and {path.name} share the "
                             "name stem, so restored files cannot tell them apart", hint="rename one of them")
        references[path.stem] = path
    labels = _labels(restored_dirs)
    pairs: list[Pair] = []
    for folder, label in zip(restored_dirs, labels, strict=True):
        matched: dict[Path, Path] = {}
        left_out = 0
        for path in list_images(folder, "--restored"):
            if suffix is None and path.stem not in references and _EXTRAS.search(path.stem):
                left_out += 1
                continue
            reference = match_reference(path.stem, references, suffix)
            if reference is None:
                rule = (f"its name is not <reference stem>{suffix}" if suffix is not None
                        else "no reference stem is its stem or begins it followed by '_'")
                raise UsageError(f"{path}: no reference in {reference_dir} matches it ({rule})",
                                 hint="move it out of the folder" + ("" if suffix is not None else
                                                                     ", or name the match with --suffix TEXT"))
            if reference in matched:
                raise UsageError(f"{matched[reference]} and {path} both match the reference {reference}",
                                 hint="keep one restoration per reference in a folder (give each method a folder)")
            matched[reference] = path
        for reference in references.values():
            restored = matched.get(reference)
            if restored is None:
                raise UsageError(f"{reference}: no restored image in {folder} matches this reference",
                                 hint="every reference needs one restored file, named <stem> or <stem>_<tag>"
                                 if suffix is None else f"every reference needs <stem>{suffix}")
            pairs.append(Pair(label, restored, reference, _check_size(restored, reference, probe_image)))
        if left_out and note is not None:
            note(f"note: left out {left_out} file(s) of {folder} named like per-sample outputs (_std, _sK)")
    return labels, pairs


def _labels(folders: list[Path]) -> list[str]:
    """A column label per folder: its name, or its path where two folders share a name."""
    names = [folder.resolve().name or str(folder) for folder in folders]
    labels = [name if names.count(name) == 1 else str(folder) for name, folder in zip(names, folders, strict=True)]
    if len(set(labels)) != len(labels):
        raise UsageError("a --restored folder is given twice")
    return labels


def _check_size(restored: Path, reference: Path, probe: Any) -> tuple[int, int]:
    """The pair's (width, height); SizeMismatchError when the two differ."""
    a, b = probe(restored).size, probe(reference).size
    if a != b:
        raise SizeMismatchError(f"{restored} is {a[0]} x {a[1]} but its reference {reference} is {b[0]} x {b[1]}",
                                hint="score restorations of the references' size")
    return int(a[0]), int(a[1])


def load_pair(restored: Path, reference: Path) -> tuple[Any, Any]:
    """Both files as (1, C, H, W) tensors in tensor units, the reference given the restored file's channels
    (a gray restoration of a colour reference is scored on its luminance)."""
    from .. import imageio

    x = imageio.load_image(restored).tensor
    ref = imageio.load_image(reference).tensor
    if ref.shape[1] != x.shape[1]:
        ref = imageio.to_channels(ref, int(x.shape[1]))
    return x, ref


def score_files(pairs: list[Pair], names: tuple[str, ...], *, registry: Any = None, device: Any = "cpu",
                with_sets: bool = True) -> tuple[list[dict[str, float]], dict[str, dict[str, Any]]]:
    """The image metrics of each pair and (``with_sets``) the set metrics over all of them, from the files; the
    pairs are of one column. Set metrics need at least two images (FID's covariance): fewer is a UsageError."""
    from .scoring import make_scorer

    scorer = make_scorer(names, registry=registry, device=device)
    if not with_sets:
        scorer = make_scorer(scorer.image_names, registry=registry, device=device)
    scores = []
    for pair in pairs:
        x, ref = load_pair(pair.restored, pair.reference)
        try:
            scored = scorer.score_images(x, ref)
        except (RuntimeError, ValueError) as error:  # e.g. an image too small for a metric's network
            raise DiffrestoreError(f"{pair.restored}: cannot score it against {pair.reference}: "
                                   f"{short_error(error)}") from error
        scores.append({name: float(values[0]) for name, values in scored.items()})
    sets: dict[str, dict[str, Any]] = {}
    if with_sets and scorer.set_names and pairs:
        try:
            sets = scorer.set_scores()
        except ValueError as error:
            raise UsageError(f"{pairs[0].method}: {error}", hint="score at least 2 images for set metrics") from None
    return scores, sets
