"""Run summaries as documents (the ``--json`` object): their one-line form and exit code, the ``--summary FILE``
they are written to, and the merge of a split run's parts into the summary of the whole (no torch here).

A split run (``shards.py``) has parts: the ranks of one torchrun world, gathered by rank 0 (``distributed.py``),
and the outer shards (``--shard``, Slurm arrays), which each write their own summary and
``diffrestore summary merge`` joins. Both go through ``merge_parts``: the parts must come from one run (the same
settings), name every image at most once, and together hold ``items_total`` images.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, OutputError, UsageError

#: the settings every part of one run shares (a device may differ: cuda:0, cuda:1)
RUN_SETTINGS = ("task", "method", "model", "preset", "steps", "seed", "num_samples", "simulate", "dtype", "operator",
                "solver", "settings", "metrics")
_STATUS_COUNTS = {"done": "done", "skipped": "skipped", "failed": "failed", "not_run": "not-run"}
_PART_FIELDS = ("device", "seconds", "load_seconds", "interrupted", "signal", "error")


def summary_line(doc: dict[str, Any]) -> str:
    """``6 done, 0 skipped, 1 failed (b.png) in 3.2 s``: the last line a run prints."""
    items = doc.get("items", [])
    failed = [Path(item["input"]).name for item in items if item.get("status") == "failed"]
    done = sum(1 for item in items if item.get("status") == "done")
    skipped = sum(1 for item in items if item.get("status") == "skipped")
    text = f"{done} done, {skipped} skipped, {len(failed)} failed"
    if failed:
        text += " (" + ", ".join(failed[:5]) + (f", and {len(failed) - 5} more" if len(failed) > 5 else "") + ")"
    not_run = sum(1 for item in items if item.get("status") == "not-run")
    if not_run:
        text += f", {not_run} not run"
    missing = doc.get("missing_items")
    if missing:
        text += f", {missing} unaccounted for ({', '.join(doc.get('missing_parts', []))} did not report)"
    text += f" in {float(doc.get('seconds', 0.0)):.1f} s"
    return ("interrupted: " if doc.get("interrupted") else "") + text


def summary_exit_code(doc: dict[str, Any]) -> int:
    """0 all done; 1 some failed, not run or unaccounted for; 128 + the signal's number when interrupted."""
    if doc.get("interrupted"):  # as a shell reports a process the signal killed
        name = doc.get("signal")
        return 128 + signal.Signals[name].value if name else EXIT_INTERRUPTED
    bad = any(item.get("status") in ("failed", "not-run") for item in doc.get("items", []))
    return EXIT_SOME_FAILED if bad or doc.get("missing_items") else EXIT_OK


# ---------------------------------------------------------------------------------------- the summary file


def _is_summary(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("items"), list) and "task" in doc


def is_stream(path: Path) -> bool:
    """A FIFO, the pipe of a process substitution (``--summary >(jq . > f)`` names ``/dev/fd/63``) or a device
    (``/dev/stdout``): written once at the end like a stream, never read, never replaced through a temp file."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_summary_file(path: Path) -> None:
    """``--summary FILE`` before a run: an existing file is replaced only when it is a diffrestore summary (a
    rerun's), never another file; its folder must exist. A stream is accepted as it is: reading it to see what it
    holds would wait for a writer that never comes."""
    if is_stream(path):
        return
    if path.is_dir():
        raise OutputError(f"--summary {path} is a folder", hint="name a file, e.g. --summary run.json")
    if not path.parent.is_dir():
        raise OutputError(f"--summary {path}: the folder {path.parent} does not exist", hint="create it first")
    if path.exists():
        try:
            ours = _is_summary(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError):
            ours = False
        if not ours:
            raise OutputError(f"--summary {path} exists and is not a diffrestore summary",
                              hint="choose another file name: only an earlier run's summary is replaced")


def write_summary(path: Path, doc: dict[str, Any], *, overwrite: bool = True) -> None:
    """The document as JSON, written atomically (a reader never sees half a summary); to a stream (``is_stream``)
    in one go, as ``> FILE`` would."""
    from ..imageio.write import write_atomic

    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    if is_stream(path):
        _write_stream(path, data)
        return
    write_atomic(path, data, overwrite=overwrite)


def _write_stream(path: Path, data: bytes) -> None:
    """Open a FIFO without blocking first: with no reader yet, say that the run waits for one, then wait (what
    ``echo > FIFO`` does; Ctrl-C stops it)."""
    from ..run.streams import write_err

    nonblock = getattr(os, "O_NONBLOCK", 0)  # Windows has no FIFOs to wait for
    try:
        try:
            fd = os.open(path, os.O_WRONLY | nonblock)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: a FIFO nobody reads yet
                raise
            write_err(f"note: waiting for a reader of the FIFO {path} to write the summary")
            fd = os.open(path, os.O_WRONLY)
        else:
            if nonblock:
                os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise OutputError(f"--summary {path} cannot be written: {error.strerror or error}") from None


def read_summary(path: Path) -> dict[str, Any]:
    """A summary file; UsageError naming it when it cannot be read or is not a diffrestore summary."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"summary not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"cannot read the summary {path}: {error}",
                         hint="pass the JSON written by --summary or --json") from None
    if not _is_summary(doc):
        raise UsageError(f"{path} is not a diffrestore summary", hint="pass the JSON written by --summary or --json")
    return doc


# ------------------------------------------------------------------------------------------------ merging


def part_label(doc: dict[str, Any], level: str) -> str | None:
    """The part a summary is: its rank (``level`` "rank") or its outer shard "I/N" ("shard")."""
    if level == "rank":
        return None if doc.get("rank") is None else f"rank {doc['rank']}"
    shard = doc.get("shard")
    return None if not isinstance(shard, dict) else f"{shard['index']}/{shard['count']}"


def merge_parts(docs: list[dict[str, Any]], names: list[str], *, level: str, expected: list[str],
                partial: bool = False, expected_items: int | None = None) -> dict[str, Any]:
    """One summary from the parts of a split run.

    ``level`` is "rank" (one world's processes) or "shard" (outer shards); ``expected`` the labels of every part
    ("rank 0", "1/3"), ``expected_items`` how many images they hold together (default: ``items_total``, the whole
    run's); ``names`` say where each document came from, for the errors. UsageError when the parts
    are of different runs, overlap, or (unless ``partial``) some are missing; with ``partial`` the missing parts
    are listed and their images counted as unaccounted for."""
    if not docs:
        raise UsageError("no summaries to merge")
    labels = []
    for doc, name in zip(docs, names, strict=True):
        label = part_label(doc, level)
        if label is None:
            raise UsageError(f"{name} is not the summary of one {'process' if level == 'rank' else 'shard'} of a "
                             "split run", hint="merge the summaries that --shard I/N or Slurm array tasks wrote")
        if label in labels:
            raise UsageError(f"{name} and {names[labels.index(label)]} are both shard {label}")
        labels.append(label)
    first, first_name = docs[0], names[0]
    for doc, name in zip(docs[1:], names[1:], strict=True):
        for key in (*RUN_SETTINGS, "items_total", *(("world_size",) if level == "rank" else ())):
            if doc.get(key) != first.get(key):
                raise UsageError(f"{name} and {first_name} are not parts of one run: {key} "
                                 f"{doc.get(key)!r} vs {first.get(key)!r}")
        if level == "shard" and doc["shard"]["count"] != first["shard"]["count"]:
            raise UsageError(f"{name} and {first_name} split the inputs differently: shard {part_label(doc, level)} "
                             f"vs {part_label(first, level)}")
    unknown = [label for label in labels if label not in expected]
    if unknown:
        raise UsageError(f"unexpected part {unknown[0]} of a run split into {len(expected)}")
    missing = [label for label in expected if label not in labels]
    if missing and not partial:
        raise UsageError(f"the summaries of {', '.join(missing)} are missing",
                         hint="pass the summary of every shard, or --partial to merge what there is")

    items: dict[int, tuple[dict[str, Any], str]] = {}
    for doc, name in zip(docs, names, strict=True):
        for item in doc["items"]:
            index = item.get("index")
            if index is None:
                raise UsageError(f"{name}: an item without its index ({item.get('input')})")
            if index in items:
                raise UsageError(f"{name} and {items[index][1]} both list image {index} ({item.get('input')})")
            items[index] = (item, name)
    total = first.get("items_total") if expected_items is None else expected_items
    merged = {key: value for key, value in first.items() if key not in ("items", "rank", *_PART_FIELDS)}
    if level == "shard":
        merged.pop("shard", None)
        merged["shards"] = len(expected)
    devices = sorted({str(doc.get("device")) for doc in docs})
    merged["device"] = devices[0] if len(devices) == 1 else devices
    merged.update(_counts([entry for entry, _ in items.values()]))
    merged.update(
        interrupted=any(doc.get("interrupted") for doc in docs),
        signal=next((doc.get("signal") for doc in docs if doc.get("signal")), None),
        seconds=max(float(doc.get("seconds", 0.0)) for doc in docs),  # the parts run side by side
        load_seconds=max(float(doc.get("load_seconds", 0.0)) for doc in docs),
    )
    merged["parts"] = [{"part": label, **{k: doc.get(k) for k in _PART_FIELDS if doc.get(k) is not None},
                        **_counts(doc["items"])} for label, doc in sorted(zip(labels, docs, strict=True))]
    if total is not None and len(items) != total:
        merged["missing_items"] = total - len(items)
        merged["missing_parts"] = missing
    merged["items"] = [items[index][0] for index in sorted(items)]
    return merged


def _counts(items: list[dict[str, Any]]) -> dict[str, int]:
    return {key: sum(1 for item in items if item.get("status") == status) for key, status in _STATUS_COUNTS.items()}


def merge_files(paths: list[Path], *, partial: bool = False) -> dict[str, Any]:
    """``diffrestore summary merge``: the summaries of every outer shard of one run -> the run's summary."""
    docs = [read_summary(path) for path in paths]
    counts = {doc["shard"]["count"] for doc in docs if isinstance(doc.get("shard"), dict)}
    count = counts.pop() if len(counts) == 1 else None
    expected = [f"{i}/{count}" for i in range(1, count + 1)] if count else []
    return merge_parts(docs, [str(p) for p in paths], level="shard", expected=expected, partial=partial)
