"""The run, top to bottom: validate -> plan -> read the inputs -> load the prior -> fit -> batches -> solve ->
save -> summary.

Nothing here parses flags (the CLI and the Python API both fill a ``RunOptions`` and give the task's flag values)
or knows a solver's insides or a task's: the checks before any image live in ``preflight`` (which resolves the
run into a ``Job``), planning in ``plan``, what each input brings in ``inputs``, the restoration of one batch in
``restore``, devices and random streams in ``runtime``, reporters in ``progress``, stop signals in ``interrupts``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import DiffrestoreError, UsageError, short_error
from . import interrupts, plan, scoring, solver_settings, streams
from .inputs import Prepared, batches, check_memory, expand_parts, prepare_input
from .options import RunOptions
from .plan import Item, RunSummary
from .preflight import Job, check_flags, load_registry, make_job, validate
from .progress import Reporter, make_reporter
from .restore import Restored, check_fit, load_prior, ready_prior, restore_batch, stand_in_prior, std_map_image
from .runtime import resolve_device, resolve_dtype

#: Decoded inputs are kept from their first read (before the model loads) to their batch while they fit in this
#: many bytes; a folder larger than that is read again batch by batch instead of held in memory whole.
KEEP_DECODED_BYTES = 512 * 2**20

__all__ = ["check_fit", "load_prior", "load_registry", "restore_batch", "run", "std_map_image", "validate"]


def run(
    inputs: list[str] | list[Path],
    opts: RunOptions,
    task_values: Mapping[str, Any] | None = None,
    *,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Run a whole job: ``opts`` for the run, ``task_values`` the task's flags (name -> value, None = not given).
    Raises DiffrestoreError for problems found before any model loads; per-image failures are recorded on the
    items. A stop signal (KeyboardInterrupt, ``interrupts.Interrupted``) once the items are planned ends the run:
    finished outputs stay, the rest is "not-run", and the summary says which signal.
    """
    t_start = time.perf_counter()
    # 1. Validate everything that needs no image and no model: flags, task, method, prior kind, kernel, outputs;
    # what needs no torch first (flags, then the inputs and outputs), so that those errors come at once.
    checked = check_flags(opts, task_values)
    items = plan.plan_run(inputs, opts, parts=lambda files: expand_parts(files, checked.task.input_parts))
    job = make_job(checked)  # the solver: its module imports torch
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)

    reporter = reporter or make_reporter(opts)
    summary = RunSummary(task=job.task.name, items=items, info={
        "task": job.task.name, "method": job.method, "model": opts.model, "preset": opts.preset,
        "steps": opts.steps or getattr(getattr(job.solver, "config", None), "steps", None),
        "seed": opts.seed, "num_samples": job.num_samples, "simulate": job.simulate, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "operator": job.task.describe(),
        "solver": job.solver.settings(),  # every setting as configured; each item's "resolved" adds the rest
        **solver_settings.recorded(job.solver, opts.solver_options),  # --set values as the solver took them
        **({"metrics": scoring.describe_metrics(job.metrics)} if job.metrics else {})})
    output_like = sum(1 for item in items if item.looks_like_output)
    single = len(items) - output_like == 1 and opts.sharding is None  # a part of one image is no single run
    try:
        # 2. Decode every input and build its mask before any weights load; check the sizes against the metrics'
        # networks and the memory the sizes need.
        prepared = _prepare(items, job, single=single)
        scoring.check_image_sizes(job.metrics, [(p.item.input, p.restored_size) for p in prepared])
        check_memory(job, prepared, device)
        with reporter:
            reporter.start(len(items))
            for item in items:
                if item.status in ("failed", "skipped"):
                    reporter.item_finished(item)
            if output_like:
                reporter.message(f"note: skipped {output_like} file(s) named like outputs of this command "
                                 "(--include-outputs restores them too)")
            if prepared:
                # 3. Load the prior once, 4. check that every image fits it, 5. batches -> solve -> save.
                # The metrics' weights before the prior's: a missing LPIPS network must not cost a restoration.
                scoring.check_metric_weights(job.metrics, registry=job.registry, offline=opts.offline,
                                             echo=reporter.message)
                scorer = None
                if job.metrics:
                    scorer = scoring.make_scorer(job.metrics, registry=job.registry, device=device)
                t_load = time.perf_counter()
                prior = stand_in_prior(job, device)  # fbp, sart, tv: no network, nothing loads
                if prior is None:
                    prior = load_prior(opts.model, device=device, dtype=dtype, offline=opts.offline,
                                       echo=reporter.message, registry=job.registry)
                summary.load_seconds = time.perf_counter() - t_load
                prior = ready_prior(job, prior)
                fitting = _fitting(prepared, prior, job, reporter, single=single)
                _run_batches(fitting, prior, job, reporter, summary, scorer)
    except KeyboardInterrupt as stop:
        summary.interrupted, summary.signal = True, interrupts.signal_name(stop)
        for item in items:
            if item.status == "pending":
                item.status = "not-run"
    summary.seconds = time.perf_counter() - t_start
    reporter.run_finished(summary)  # its last line (a world's rank 0: the whole world's)
    return summary


def _prepare(items: list[Item], job: Job, *, single: bool) -> list[Prepared]:
    """Decode each pending input, find and check its mask, estimate its noise; a failure fails that item (or the
    run when it is the only one, or --fail-fast)."""

    extensions = job.task.input_extensions()
    prepared: list[Prepared] = []
    kept = 0
    for item in items:
        if item.status == "skipped":
            continue
        try:
            loaded = job.task.read_input(item.input, part=item.part)
            # after the read: a file that is no image says so first; the task knows what its outputs can be
            plan.check_output_names(item, lambda out, loaded=loaded: job.task.check_output(out, loaded))
            p = prepare_input(job, loaded.tensor, path=item.input, loaded=loaded, extensions=extensions)
            p.notes = _input_notes(p, loaded)
            info = dict(getattr(loaded, "info", None) or {})  # what the task read (MRI: scale, mask)
            size = loaded.tensor.numel() * loaded.tensor.element_size()
            if kept + size <= KEEP_DECODED_BYTES:
                p.loaded, kept = loaded, kept + size
            del loaded
        except DiffrestoreError as error:
            if single or job.options.fail_fast:
                raise
            item.status, item.error = "failed", str(error)
            continue
        except (OSError, ValueError) as error:
            if single or job.options.fail_fast:
                raise UsageError(f"{item.input}: {short_error(error)}") from error
            item.status, item.error = "failed", short_error(error)
            continue
        p.item = item
        item.size, item.channels, item.mask = p.size, p.channels, p.mask_source
        item.noise_sigma = p.noise_sigma
        item.input_info = info
        prepared.append(p)
    return prepared


def _input_notes(prepared: Prepared, loaded: Any) -> list[str]:
    """What reading the file changed or decided (CMYK converted, transparency used as the mask, the estimated
    noise level), as imageio and the estimator say."""
    notes = list(getattr(loaded, "notes", []) or [])
    if prepared.mask_source.kind == "alpha":
        notes += loaded.alpha_mask_notes()
    if prepared.noise_note:
        notes.append(prepared.noise_note)
    return notes


def _fitting(prepared: list[Prepared], prior: Any, job: Job, reporter: Reporter, *, single: bool) -> list[Prepared]:
    """The prepared images the loaded prior can take (channels and native size are known only now)."""
    fitting = []
    for p in prepared:
        try:
            check_fit(prior, job.solver, job.task, p.size, p.channels, name=job.options.model)
        except DiffrestoreError as error:
            if single or job.options.fail_fast:
                raise
            p.item.status, p.item.error = "failed", str(error)
            reporter.item_finished(p.item)
            continue
        fitting.append(p)
    return fitting


def _run_batches(prepared: list[Prepared], prior: Any, job: Job, reporter: Reporter, summary: RunSummary,
                 scorer: Any = None) -> None:

    opts = job.options
    stop = False
    notes_seen: set[str] = set()

    def note_once(note: str) -> None:
        if note not in notes_seen:
            notes_seen.add(note)
            reporter.message(f"note: {note}")

    from ..imageio.write import ProtectedFiles

    protected = ProtectedFiles(item.input for item in summary.items)  # resolved once: each save is O(1)
    for batch in batches(prepared, opts.batch_size):
        if stop:
            for p in batch:
                p.item.status = "not-run"
            continue
        t0 = time.perf_counter()
        reporter.batch_started([p.item for p in batch])
        loaded = []
        try:
            loaded = [p.loaded if p.loaded is not None else job.task.read_input(p.item.input, part=p.item.part)
                      for p in batch]
            for p in batch:
                p.loaded = None  # this batch holds them now
            _note_tiling(batch, prior, job, note_once)
            for p in batch:
                for note in p.notes:
                    note_once(f"{p.item.input.name}: {note}")
            results = restore_batch(prior, job.solver, job.task.with_noise_sigma(batch[0].noise_sigma),
                                    [x.tensor for x in loaded], mask=batch[0].mask, num_samples=job.num_samples,
                                    seed=opts.seed, progress=reporter.step, scorer=scorer)
        except (DiffrestoreError, RuntimeError, ValueError, OSError) as error:
            message = short_error(error)
            for p in batch:
                p.item.status, p.item.error = "failed", message
                p.item.record_time(len(batch), time.perf_counter() - t0)
                reporter.item_finished(p.item)
            stop = opts.fail_fast
            continue
        batch_seconds = time.perf_counter() - t0
        for p, like, result in zip(batch, loaded, results, strict=True):
            # A stop signal while this image's files are written takes effect once they all are, and the
            # image is reported done: it is complete or absent, never a main output without its samples.
            with interrupts.deferred():
                if not _finish(p.item, like, result, opts, reporter, note_once, protected,
                               (len(batch), batch_seconds), save=job.task.save_output):
                    stop = stop or opts.fail_fast


def _finish(item: Item, like: Any, result: Restored, opts: RunOptions, reporter: Reporter, note_once: Any,
            protected: Any, batch: tuple[int, float], *, save: Any = None) -> bool:
    """Save one restored image and report it (``save``: the task's writer, ``Task.save_output``); False when it
    failed."""
    t_save = time.perf_counter()
    try:
        for note in _save(item, like, result, overwrite=opts.overwrite, protected=protected, save=save):
            note_once(f"{item.output.name}: {note}")
    except (DiffrestoreError, OSError, ValueError) as error:
        item.status, item.error = "failed", short_error(error)
        reporter.item_finished(item)
        return False
    item.status = "done"
    item.metrics, item.resolved = result.metrics, result.resolved
    item.record_time(batch[0], batch[1], time.perf_counter() - t_save)
    if not opts.json_output:
        line = streams.shown(item.output)  # a newline in a name must not split the line
        if result.metrics:
            line += scoring.score_text(result.metrics)
        reporter.result(line)
        for extra in item.outputs[1:]:
            reporter.result(streams.shown(extra))
    reporter.item_finished(item)
    return True


def _note_tiling(batch: list[Prepared], prior: Any, job: Job, note_once: Any) -> None:
    """Say once per image size that a fixed-size prior is tiled, and record the windows per call on the items."""
    from ..priors.tiled import tiling_note

    w, h = batch[0].restored_size
    found = tiling_note(prior, (int(prior.channels), h, w))
    if found is None:
        return
    count, note = found
    for p in batch:
        p.item.tiles = count
    note_once(note)


def _save(item: Item, like: Any, result: Restored, *, overwrite: bool, protected: Any, save: Any = None) -> list[str]:
    """Write the outputs of one finished image as a set (imageio's ``OutputSet``): all are written under hidden
    temporary names first, then renamed into place, samples and std map first, the main output last, so that an
    image is complete or absent, whatever stops the run (a full disk, a signal, a kill between two renames
    leaves no main output, and ``--skip-existing`` redoes the image). ``protected``: the run's inputs
    (``ProtectedFiles`` or a list). Files of a partial set found at planning (``item.replace``) are replaced.

    ``save``: the task's writer of the samples and the main output (``Task.save_output``: a CT slice may go back to
    DICOM); None: ``imageio.save_image``. Returns what the output formats could not keep (imageio's notes)."""
    import dataclasses

    from .. import imageio
    from ..imageio.write import OutputSet

    if item.mask is not None and item.mask.kind == "alpha":
        # The transparency was the hole to fill: the filled result is opaque.
        like = dataclasses.replace(like, alpha=None)
    replace = set(item.replace)
    notes: list[str] = []
    if save is None:
        def save(image: Any, path: Any, **options: Any) -> list[str]:
            return list(imageio.save_image(image, path, **options).notes)
    with OutputSet() as files:  # leaving it by any exception takes back this image's files (never old ones)
        for path, sample in zip(item.samples, result.samples if item.samples else [], strict=True):
            notes += save(sample.unsqueeze(0), path, like=like, overwrite=overwrite or path in replace,
                          protected=protected, output_set=files)
        if item.std_map is not None and result.std is not None:
            imageio.save_image(std_map_image(result.std), item.std_map, like=None,
                               overwrite=overwrite or item.std_map in replace, protected=protected, output_set=files)
        notes += save(result.image, item.output, like=like, overwrite=overwrite or item.output in replace,
                      protected=protected, output_set=files)
        files.commit()
    return notes
