"""What ``diffrestore eval`` reports: one row per (method, image), the aggregate per method (mean and std of
each image metric, the set metrics, n), and the files that hold them: ``results.csv`` (one line per image),
``results.json`` (everything, with the settings that ran and what each metric means), ``table.md`` (the method x
metric table the way papers print it, arrows for the better direction). No torch here.

The report's files are written as one set (imageio's ``OutputSet``, ``results.json`` last), so a folder holds
either a whole report or an older whole one; an existing report is replaced only with ``--overwrite``, or on a
resumed run (``--skip-existing``) when ``results.json`` is one of ours: a user's file of that name is never
replaced.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError
from .scoring import describe_metrics, format_score, metric_label

#: the marker of our results.json (a file without it is the user's)
REPORT_KIND = "diffrestore-eval"
RESULTS_JSON, RESULTS_CSV, TABLE_MD, CONTACT_SHEET = "results.json", "results.csv", "table.md", "contact_sheet.png"
REPORT_FILES = (RESULTS_CSV, TABLE_MD, CONTACT_SHEET, RESULTS_JSON)


@dataclass
class ImageResult:
    """One image restored by one method (or one restored file of a folder) and its scores."""

    method: str
    image: str  # the clean image / the reference
    restored: str | None
    status: str = "done"  # done | failed | missing
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    std_map: str | None = None
    error: str | None = None
    scored_from: str = "run"  # "run": the engine's float output; "file": the saved image, read back

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"method": self.method, "image": self.image, "restored": self.restored,
                                "status": self.status}
        data.update({name: _finite(value) for name, value in self.scores.items()})
        for key in ("seconds", "std_map", "error"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.status == "done":
            data["scored_from"] = self.scored_from
        return data


@dataclass
class Report:
    """A whole evaluation: the methods (or restored folders) in column order, every image's result, the set
    metrics per method, and the settings that ran."""

    metrics: tuple[str, ...]  # as asked, image and set metrics
    methods: list[str]
    results: list[ImageResult]
    set_scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # method -> metric -> value
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def image_metrics(self) -> tuple[str, ...]:
        from ..metrics.catalogue import describe

        return tuple(name for name in self.metrics if describe(name).kind == "image")

    @property
    def set_metrics(self) -> tuple[str, ...]:
        from ..metrics.catalogue import describe

        return tuple(name for name in self.metrics if describe(name).kind == "set")

    def of(self, method: str) -> list[ImageResult]:
        return [result for result in self.results if result.method == method]

    def aggregate(self) -> dict[str, dict[str, Any]]:
        """Per method: each image metric's mean, std (over images, n - 1) and n; the set metrics; counts."""
        table: dict[str, dict[str, Any]] = {}
        for method in self.methods:
            done = [r for r in self.of(method) if r.status == "done"]
            row: dict[str, Any] = {"n": len(done), "failed": sum(1 for r in self.of(method) if r.status != "done")}
            for name in self.image_metrics:
                row[name] = mean_std([r.scores[name] for r in done if name in r.scores])
            for name in self.set_metrics:
                row[name] = self.set_scores.get(method, {}).get(name)
            table[method] = row
        return table


def mean_std(values: list[float]) -> dict[str, Any]:
    """{"mean", "std", "n"}: the sample std (n - 1; 0 for one value); inf when an image scored inf (identical)."""
    if not values:
        return {"mean": None, "std": None, "n": 0}
    if any(math.isinf(v) for v in values):
        return {"mean": math.inf, "std": None, "n": len(values)}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _finite(value: Any) -> Any:
    """JSON has no inf: an identical image's PSNR is written as null (and "inf" in the CSV and the table)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_ready(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return _finite(value)


# ------------------------------------------------------------------------------------------------ the table


def _cell(name: str, entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean", entry.get("value")) is None:
        return "-"
    if "mean" in entry:  # an image metric over the images
        text = format_score(name, entry["mean"], unit=False)
        return text if entry.get("std") is None else f"{text} ± {format_score(name, entry['std'], unit=False)}"
    digits = 4 if name == "kid" else 2  # a set metric: one value (KID with its std over subsets)
    text = f"{entry['value']:.{digits}f}"
    return f"{text} ± {entry['std']:.{digits}f}" if entry.get("std") is not None else text


def _header(name: str) -> str:
    from ..metrics.catalogue import describe

    arrow = "↑" if describe(name).higher_is_better else "↓"
    unit = " (dB)" if name == "psnr" else ""
    return f"{metric_label(name)}{unit} {arrow}"


def table_markdown(report: Report) -> str:
    """The method x metric table as papers print it (mean ± std over the images, arrows for the better
    direction), then what ran and how to read it."""
    aggregate = report.aggregate()
    names = [*report.image_metrics, *report.set_metrics]
    lines = ["| method | " + " | ".join(_header(n) for n in names) + " | n |",
             "|---|" + "---:|" * len(names) + "---:|"]
    for method in report.methods:
        row = aggregate[method]
        cells = [_cell(n, row.get(n)) for n in names]
        count = str(row["n"]) + (f" ({row['failed']} failed)" if row["failed"] else "")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {count} |")
    lines.append("")
    lines.append("Mean ± std over the n images (std with n - 1); ↑ higher is better, ↓ lower is better.")
    for name in report.set_metrics:
        lines.append(f"{metric_label(name)} is computed over the whole set of saved images"
                     + (" (± its std over subsets)." if name == "kid" else "."))
    warnings = {entry.get("warning") for scores in report.set_scores.values() for entry in scores.values()}
    lines += sorted(str(w) for w in warnings if w)
    if report.settings.get("described"):
        lines.append(str(report.settings["described"]))
    lines += report.notes
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- the files


def results_csv(report: Report) -> str:
    """One line per (method, image): the image metrics, time, where its scores came from."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = report.image_metrics
    writer.writerow(["method", "image", "restored", "status", *names, "seconds", "scored_from", "error"])
    for r in report.results:
        scores = [("inf" if math.isinf(r.scores[n]) else repr(r.scores[n])) if n in r.scores else "" for n in names]
        seconds = "" if r.seconds is None else f"{r.seconds:.3f}"
        writer.writerow([r.method, r.image, r.restored or "", r.status, *scores, seconds,
                         r.scored_from if r.status == "done" else "", r.error or ""])
    return buffer.getvalue()


def results_json(report: Report) -> dict[str, Any]:
    """Everything: settings, what each metric means, the aggregate table, every image."""
    return _json_ready({
        "diffrestore": REPORT_KIND,
        "settings": report.settings,
        "metrics": describe_metrics(report.metrics),
        "methods": report.methods,
        "aggregate": report.aggregate(),
        "notes": report.notes,
        "images": [r.to_json() for r in report.results],
    })


def is_our_report(folder: Path) -> bool:
    """Whether ``folder/results.json`` is a report of ``diffrestore eval``."""
    try:
        doc = json.loads((folder / RESULTS_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("diffrestore") == REPORT_KIND


def check_report_files(folder: Path, *, overwrite: bool, resuming: bool) -> None:
    """OutputError, before anything runs, when the report would replace a file that is not ours to replace:
    ``--overwrite`` replaces a report, a resumed run (``--skip-existing``) one that ``results.json`` marks as a
    report of ``diffrestore eval``; any other existing file of those names is left alone."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"-o {folder} is a file, not a folder", hint="give a folder for the report")
    existing = [folder / name for name in REPORT_FILES if (folder / name).exists() or (folder / name).is_symlink()]
    if not existing or overwrite:
        return
    if resuming and is_our_report(folder):
        return
    more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
    why = ("is not a report of 'diffrestore eval'" if resuming and (folder / RESULTS_JSON).exists()
           else "already exist" if more else "already exists")
    raise OutputError(f"{existing[0]}{more} {why}",
                      hint="use --overwrite to replace the report, --skip-existing to resume it, or another -o")


def write_report(folder: Path, report: Report, *, contact_sheet: Any = None, protected: Any = ()) -> list[Path]:
    """results.csv, table.md, the contact sheet (a tensor in tensor units, or None) and results.json, as one set
    (results.json last). Returns the paths written."""
    from .. import imageio
    from ..imageio.write import OutputSet

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with OutputSet() as files:
        for name, text in ((RESULTS_CSV, results_csv(report)), (TABLE_MD, table_markdown(report))):
            files.add(folder / name, text.encode("utf-8"), overwrite=True)
            written.append(folder / name)
        if contact_sheet is not None:
            imageio.save_image(contact_sheet, folder / CONTACT_SHEET, overwrite=True, protected=protected,
                               output_set=files)
            written.append(folder / CONTACT_SHEET)
        document = json.dumps(results_json(report), indent=2, ensure_ascii=False) + "\n"
        files.add(folder / RESULTS_JSON, document.encode("utf-8"), overwrite=True)
        written.append(folder / RESULTS_JSON)
        files.commit()
    return written
