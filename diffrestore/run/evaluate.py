"""``diffrestore eval``: a method x metric table from a folder of clean images, or from folders of results.

Mode (a), ``eval TASK CLEAN_DIR ... --method daps,dps -o OUT``: every method is one ordinary run of the task
command with ``--simulate`` into ``OUT/<method>/`` (the CLI hands in ``run_method``, the same split run the task
commands use: shards, Slurm arrays, torchrun), so restoration is never done twice in two ways. Each run's
per-image scores are recorded beside its images (``OUT/<method>/scores.json``, ``scores.shard-I-of-N.json`` for
a part of a split run), merged with what earlier runs recorded, so that a resumed run (``--skip-existing``)
reuses the restored files and their scores. Once every image of every method has its files, the report is
written: per-image scores from the records (an image without a record of its file, e.g. from a run killed before
it wrote one, is scored from its saved file and marked so), set metrics (FID, KID) from the saved files, the
contact sheet. A part of a split run that finds other parts unfinished says so and leaves the report to the last
one (or to the same command without ``--shard``, with ``--skip-existing``).

Mode (b), ``eval --restored DIR --reference DIR``: ``eval_folders`` pairs the files; every score from the files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DiffrestoreError, UsageError
from ..tasks import task_spec
from . import eval_folders, plan
from .eval_report import ImageResult, Report, check_report_files, write_report
from .options import RunOptions
from .preflight import check_flags, load_registry, make_job
from .scoring import check_image_sizes, check_metric_weights

#: a record of one run's scores (a file without it is not ours)
RECORD_KIND = "diffrestore-eval-scores"
#: what must agree between a record and this run for its scores to describe the same restoration
RECORD_SETTINGS = ("task", "method", "model", "preset", "steps", "seed", "num_samples", "operator", "solver",
                   "settings", "dtype")
DEFAULT_CONTACT_ROWS = 4

Say = Callable[[str], None]
RunMethod = Callable[[RunOptions], tuple[dict[str, Any] | None, int]]


@dataclass(frozen=True)
class EvalRequest:
    """What an eval run was asked: the methods side by side, every metric (image and set), where it reports."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    output: Path
    contact_rows: int = DEFAULT_CONTACT_ROWS


def parse_methods(text: str) -> tuple[str, ...]:
    """``"daps, dps"`` -> ``("daps", "dps")``: each once, in order (each is checked by its own run's flags)."""
    methods: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            raise UsageError(f"--method '{text}': an empty method name", hint="e.g. --method daps,dps")
        if name not in methods:
            methods.append(name)
    return tuple(methods)


def image_metric_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    from ..metrics.catalogue import describe

    return tuple(name for name in metrics if describe(name).kind == "image")


def method_options(base: RunOptions, method: str, request: EvalRequest) -> RunOptions:
    """The run of one method: the task command's options with --simulate, -o OUT/<method>/, the image metrics."""
    image_metrics = image_metric_names(request.metrics)
    return dataclasses.replace(base, method=method, simulate=True, output=request.output / method,
                               metrics=image_metrics or None, suffix=None, include_outputs=False,
                               summary_file=None, json_output=True)


def check_set_size(metrics: tuple[str, ...], images: int) -> None:
    """A set metric compares two sets' feature statistics (FID: their covariances): one image is not a set."""
    per_set = [name for name in metrics if name not in image_metric_names(metrics)]
    if per_set and images < 2:
        raise UsageError(f"--metrics {per_set[0]} compares sets of images: {images} image(s) are not enough",
                         hint="give at least 2 images, or leave the set metrics out")


def check_output_folder(output: Path, inputs: list[str]) -> None:
    """-o OUT may not be (inside) a folder of clean images: its files would become inputs of later runs."""
    out = os.path.realpath(output)
    for raw in inputs:
        folder = Path(raw).expanduser()
        if folder.is_dir():
            real = os.path.realpath(folder)
            if out == real or out.startswith(real.rstrip(os.sep) + os.sep):
                raise UsageError(f"-o {output} is inside the folder of clean images {folder}",
                                 hint="write the evaluation to a folder of its own")


# ------------------------------------------------------------------------------------------------ mode (a)


def evaluate_task(inputs: list[str], base: RunOptions, task_values: Mapping[str, Any], request: EvalRequest,
                  run_method: RunMethod, *, say: Say, split: bool = False) -> tuple[Report | None, int]:
    """Run every method on the clean images and report: (the report, or None while other parts of a split run
    are unfinished or this process is not the one that reports, and the exit code of the runs). ``split``: this
    process runs a part of a split run (--shard, a Slurm array, torchrun), whose other parts' outputs may exist."""
    check_output_folder(request.output, inputs)
    check_report_files(request.output, overwrite=base.overwrite, resuming=base.skip_existing)
    options = [method_options(base, method, request) for method in request.methods]
    checked = [check_flags(opts, task_values) for opts in options]  # every method's flags, torch-free, first
    for opts in options:  # inputs and outputs of every method (the engine plans its own part again)
        planned = plan.plan_run(inputs, dataclasses.replace(opts, sharding=None,
                                                            skip_existing=opts.skip_existing or split,
                                                            overwrite=opts.overwrite and not split))
    check_set_size(request.metrics, sum(1 for item in planned if not item.looks_like_output))
    for opts in options:
        _check_records(Path(opts.output))
    _check_sizes(planned, checked[0].task, request.metrics)
    jobs = [make_job(c) for c in checked]  # every method's settings (--set) before the first one runs
    from .runtime import resolve_device

    device = resolve_device(base.device)
    check_metric_weights(request.metrics, registry=checked[0].registry, offline=base.offline, echo=say)

    docs: dict[str, dict[str, Any]] = {}
    code = 0
    for number, (method, opts) in enumerate(zip(request.methods, options, strict=True), start=1):
        say(f"eval: method {method} ({number} of {len(options)}) -> {opts.output}")
        doc, run_code = run_method(opts)
        code = code or run_code
        if doc is None:  # a torchrun process other than rank 0: rank 0 records and reports
            return None, code
        if doc.get("interrupted"):
            return None, run_code
        write_record(Path(opts.output), doc)
        docs[method] = doc

    report = collect(inputs, options, docs, request, registry=checked[0].registry, device=device, say=say,
                     task_values=task_values)
    if report is None:
        return None, code
    sheet = None
    if request.contact_rows > 0:
        sheet = _task_sheet(inputs, options, jobs[0], report, request.contact_rows)
    from ..imageio.write import ProtectedFiles

    write_report(request.output, report, contact_sheet=sheet, protected=ProtectedFiles(
        item.input for item in _planned(inputs, options[0])))
    return report, code


def _check_sizes(planned: list[plan.Item], task: Any, metrics: tuple[str, ...]) -> None:
    """Every clean photo's restored size against the metrics' networks, from the files' headers, before any weights
    are fetched and any method runs (the engine checks again, from the decoded images, before its prior loads:
    that covers inputs that are not photos, which have no header to read here)."""
    from ..imageio import IMAGE_EXTENSIONS, probe_image

    photos = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in IMAGE_EXTENSIONS}
    sizes = []
    for item in planned:
        if item.looks_like_output or item.input.suffix.lower() not in photos:
            continue
        try:
            size = probe_image(item.input).size
        except (DiffrestoreError, OSError):
            continue  # the method's run names what is wrong with the file
        sizes.append((item.input, task.restored_size((int(size[0]), int(size[1])))))
    check_image_sizes(metrics, sizes)


def _check_records(folder: Path) -> None:
    """A file named like a record that is not one is the user's: refused before anything runs."""
    for path in sorted(folder.glob("scores*.json")) if folder.is_dir() else []:
        if read_record(path) is None:
            raise UsageError(f"{path} exists and is not a record of 'diffrestore eval'",
                             hint="move it away: eval keeps its per-image scores in that folder")


def _record_path(folder: Path, doc: dict[str, Any]) -> Path:
    shard = doc.get("shard")
    if isinstance(shard, dict):
        return folder / f"scores.shard-{shard['index']}-of-{shard['count']}.json"
    return folder / "scores.json"


def _stamp(path: Path) -> list[int] | None:
    """What tells a file apart from the one a record was made of (size and modification time)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [int(info.st_size), int(info.st_mtime_ns)]


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("diffrestore") == RECORD_KIND else None


def write_record(folder: Path, doc: dict[str, Any]) -> Path:
    """This run's per-image scores, merged into the record of the same part: an image restored now gets its new
    scores, a skipped one keeps those recorded when it was restored, a failed one loses its record."""
    from ..imageio.write import write_atomic

    path = _record_path(folder, doc)
    settings = {key: doc.get(key) for key in RECORD_SETTINGS}
    old = read_record(path) if path.exists() else None
    items: dict[str, Any] = dict(old["items"]) if old else {}
    for item in doc.get("items", []):
        key = os.path.realpath(item["input"])
        if item.get("status") == "done":
            items[key] = {"output": item["output"], "stamp": _stamp(Path(item["output"])), "settings": settings,
                          "metrics": {k: v for k, v in item.items() if k in _metric_keys(doc)},
                          "seconds": item.get("seconds"), "std_map": item.get("std_map")}
        elif item.get("status") == "failed":
            items.pop(key, None)
    record = {"diffrestore": RECORD_KIND, "items": items}
    write_atomic(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"), overwrite=True)
    return path


def _metric_keys(doc: dict[str, Any]) -> set[str]:
    return set((doc.get("metrics") or {"psnr": None, "ssim": None}).keys())


def _planned(inputs: list[str], opts: RunOptions) -> list[plan.Item]:
    """Every clean image of the whole run (all parts) and its outputs, as the task command plans them."""
    extensions = task_spec(opts.task).input_extensions()
    suffix = plan.default_suffix(opts.task)
    files = plan.expand_inputs(inputs, recursive=opts.recursive, extensions=extensions, skip_suffix=suffix,
                               output_folder=Path(opts.output) if opts.output else None)
    items = plan.plan_outputs(files, dataclasses.replace(opts, sharding=None), extensions)
    return [item for item in items if not item.looks_like_output]


def _records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every part's recorded scores in a method's folder, by the clean image's resolved path."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("scores*.json")):
        record = read_record(path)
        if record:
            found.update(record.get("items", {}))
    return found


def collect(inputs: list[str], options: list[RunOptions], docs: dict[str, dict[str, Any]], request: EvalRequest,
            *, registry: Any, device: Any, say: Say, task_values: Mapping[str, Any] | None = None) -> Report | None:
    """The report of a finished evaluation, or None while some image of some method has no files yet (another
    part of a split run is still running)."""
    image_metrics = image_metric_names(request.metrics)
    results: list[ImageResult] = []
    rescore: list[tuple[ImageResult, eval_folders.Pair]] = []
    pairs: dict[str, list[eval_folders.Pair]] = {}
    unfinished: list[str] = []
    other_settings: dict[str, int] = {}
    for method, opts in zip(request.methods, options, strict=True):
        doc = docs[method]
        failed = {os.path.realpath(i["input"]): i.get("error") for i in doc["items"] if i.get("status") == "failed"}
        records = _records(Path(opts.output))
        current = {key: doc.get(key) for key in RECORD_SETTINGS}
        for item in _planned(inputs, opts):
            key = os.path.realpath(item.input)
            result = ImageResult(method, str(item.input), str(item.output))
            results.append(result)
            if key in failed:
                result.status, result.error = "failed", failed[key]
                continue
            if not all(p.exists() for p in item.outputs):
                result.status = "missing"
                unfinished.append(f"{method}: {item.input}")
                continue
            pair = eval_folders.Pair(method, item.output, item.input)
            pairs.setdefault(method, []).append(pair)
            result.std_map = str(item.std_map) if item.std_map else None
            record = records.get(key)
            usable = (record is not None and record.get("stamp") == _stamp(item.output)
                      and set(image_metrics) <= set(record.get("metrics", {})))
            if usable:
                result.scores = {name: _number(record["metrics"][name]) for name in image_metrics}
                result.seconds = record.get("seconds")
                if record.get("settings") != current:
                    other_settings[method] = other_settings.get(method, 0) + 1
            else:
                result.scored_from = "file"
                rescore.append((result, pair))
    if unfinished:
        say(f"eval: {len(unfinished)} image(s) have no results yet ({unfinished[0]}, ...): the report is written "
            "when every part of the split run has finished, or by the same command without --shard and with "
            "--skip-existing")
        return None
    notes = []
    if rescore and image_metrics:
        for method in request.methods:
            mine = [(r, p) for r, p in rescore if r.method == method]
            if mine:
                scores, _ = eval_folders.score_files([p for _, p in mine], image_metrics, registry=registry,
                                                     device=device, with_sets=False)
                for (result, _), values in zip(mine, scores, strict=True):
                    result.scores = values
        notes.append(f"{len(rescore)} image(s) had no record of their file and were scored from the saved file "
                     "(scored_from: file).")
    for method, count in other_settings.items():
        notes.append(f"{method}: {count} image(s) were restored by an earlier run with other settings "
                     "(--overwrite restores them again).")
    set_scores = {}
    set_names = tuple(n for n in request.metrics if n not in image_metrics)
    if set_names:
        for method in request.methods:
            _, set_scores[method] = eval_folders.score_files(pairs.get(method, []), set_names, registry=registry,
                                                             device=device)
    return Report(metrics=request.metrics, methods=list(request.methods), results=results, set_scores=set_scores,
                  settings=_settings(inputs, request, docs, task_values), notes=notes)


def _number(value: Any) -> float:
    return float("inf") if value is None else float(value)  # an identical image's PSNR is recorded as null


def _settings(inputs: list[str], request: EvalRequest, docs: dict[str, dict[str, Any]],
              task_values: Mapping[str, Any] | None) -> dict[str, Any]:
    first = next(iter(docs.values()))
    operator = first.get("operator") or {}
    # the task flags the user gave (an off switch is typer's default, not something said)
    given = {key: value for key, value in (task_values or {}).items() if value is not None and value is not False}
    # the flags as given first (a box or a mask file says more than the operator's description), then the rest
    shown = ", ".join([*(f"--{k.replace('_', '-')} {v}" for k, v in given.items()),
                       *(f"{k} {v}" for k, v in operator.items() if k != "task" and k not in given)])
    steps = ", ".join(f"{m} {doc.get('steps')}" for m, doc in docs.items())
    described = (f"Task {first.get('task')} ({shown}) simulated on the clean images; model {first.get('model')}, "
                 f"preset {first.get('preset')}, steps: {steps}; seed {first.get('seed')}, "
                 f"{first.get('num_samples')} sample(s) per image (the output is their mean).")
    return {"mode": "simulate", "inputs": [str(i) for i in inputs], "output": str(request.output),
            "task": first.get("task"), "task_flags": given, "operator": operator, "model": first.get("model"),
            "preset": first.get("preset"), "seed": first.get("seed"), "num_samples": first.get("num_samples"),
            "device": first.get("device"), "dtype": first.get("dtype"),
            "methods": {m: {"runs": doc.get("method"), "steps": doc.get("steps"), "solver": doc.get("solver"),
                            "folder": str(request.output / m)} for m, doc in docs.items()},
            "described": described}


def _task_sheet(inputs: list[str], options: list[RunOptions], job: Any, report: Report, rows: int) -> Any:
    """Degraded input | each method | reference | each method's std map, for the first ``rows`` images that
    every method restored. The degraded input is made again as the run made it (same operator, mask and noise
    stream), not saved by the run."""
    from .. import imageio
    from .contact_sheet import SheetRow, contact_sheet, measurement_picture
    from .inputs import prepare_input
    from .runtime import image_identity, measurement_generator

    task, seed = job.task, job.options.seed
    methods = report.methods
    done = {(r.method, r.image) for r in report.results if r.status == "done"}
    planned = {m: {str(i.input): i for i in _planned(inputs, o)} for m, o in zip(methods, options, strict=True)}
    with_std = [m for m in methods if any(i.std_map for i in planned[m].values())]
    labels = ["input", *methods, "reference", *(f"std {m}" for m in with_std)]
    sheet_rows = []
    for image in planned[methods[0]]:
        if len(sheet_rows) >= rows:
            break
        if not all((m, image) in done for m in methods):
            continue
        loaded = task.read_input(Path(image))
        prepared = prepare_input(job, loaded.tensor, path=Path(image), loaded=loaded,
                                 extensions=task.input_extensions())
        width, height = prepared.restored_size
        channels = prepared.channels
        x_shape = (task.x_channels(channels), height, width)
        operator = task.operator(x_shape, seed=seed, mask=prepared.mask, input_channels=channels)
        y, _ = task.measurement(operator, task.noise_model(), loaded.tensor, channels=x_shape[0],
                                generator=measurement_generator(seed, image_identity(loaded.tensor)))
        cells = [measurement_picture(y, (width, height))]
        cells += [imageio.load_image(planned[m][image].output).tensor for m in methods]
        cells.append(task.spec.picture(loaded.tensor))  # MRI: the magnitude of the complex reference
        cells += [imageio.load_image(planned[m][image].std_map).tensor for m in with_std]
        sheet_rows.append(SheetRow(cells))
    return contact_sheet(labels, sheet_rows) if sheet_rows else None


# ------------------------------------------------------------------------------------------------ mode (b)


def evaluate_folders(restored: list[Path], reference: Path, metrics: tuple[str, ...], *, output: Path | None,
                     suffix: str | None = None, overwrite: bool = False, registry_file: Path | None = None,
                     offline: bool | None = None, device: str = "auto", contact_rows: int = DEFAULT_CONTACT_ROWS,
                     say: Say) -> Report:
    """Score folders of restored images against a folder of references (one column per folder). Every file
    is matched and its size checked, and the report's files too, before any network loads."""
    labels, pairs = eval_folders.pair_folders(restored, reference, suffix=suffix, note=say)
    check_set_size(metrics, len(pairs) // len(labels))  # every folder has one file per reference
    check_image_sizes(metrics, [(pair.restored, pair.size) for pair in pairs if pair.size is not None])
    if output is not None:
        real = os.path.realpath(output)
        if real in {os.path.realpath(folder) for folder in [*restored, reference]}:
            raise UsageError(f"-o {output} is one of the folders being scored", hint="give the report its own folder")
        check_report_files(output, overwrite=overwrite, resuming=False)
    registry = load_registry(registry_file)
    check_metric_weights(metrics, registry=registry, offline=offline, echo=say)
    from .runtime import resolve_device

    where = resolve_device(device)
    results: list[ImageResult] = []
    set_scores = {}
    for label in labels:
        mine = [pair for pair in pairs if pair.method == label]
        scores, set_scores[label] = eval_folders.score_files(mine, metrics, registry=registry, device=where)
        for pair, values in zip(mine, scores, strict=True):
            results.append(ImageResult(label, str(pair.reference), str(pair.restored), scores=values,
                                       scored_from="file"))
    rule = f"<reference stem>{suffix}" if suffix is not None else "<reference stem>[_<tag>]"
    settings = {"mode": "folders", "restored": {label: str(folder) for label, folder in zip(labels, restored,
                                                                                            strict=True)},
                "reference": str(reference), "match": rule,
                "described": f"Restored folders scored against {reference} (files matched as {rule})."}
    report = Report(metrics=metrics, methods=labels, results=results, set_scores=set_scores, settings=settings)
    if output is not None:
        sheet = None
        if contact_rows > 0:
            sheet = _folder_sheet(labels, pairs, contact_rows)
        write_report(output, report, contact_sheet=sheet, protected=[p.reference for p in pairs])
    return report


def _folder_sheet(labels: list[str], pairs: list[eval_folders.Pair], rows: int) -> Any:
    """Each folder's restoration | the reference, for the first ``rows`` references."""
    from .contact_sheet import SheetRow, contact_sheet

    references = list(dict.fromkeys(pair.reference for pair in pairs))[:rows]
    by_key = {(pair.method, pair.reference): pair for pair in pairs}
    sheet_rows = []
    for ref in references:
        cells = []
        for label in labels:
            x, reference = eval_folders.load_pair(by_key[(label, ref)].restored, ref)
            cells.append(x)
        cells.append(reference)
        sheet_rows.append(SheetRow(cells))
    return contact_sheet([*labels, "reference"], sheet_rows)
