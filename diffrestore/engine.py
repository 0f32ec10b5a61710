"""The run, top to bottom: validate -> load the prior -> fit -> batches -> solve -> save -> summary.

Nothing here parses flags (the CLI and the Python API both fill a ``RunOptions``) or knows a solver's insides:
the checks before any image live in ``preflight``, sizes and memory in ``budget``, planning in ``plan``, devices
and random streams in ``runtime``, reporters in ``progress``, stop signals in ``interrupts``, the problem of one
image (operator, noise, measurement) in ``tasks``. ``restore_batch`` is the one place a batch of images
becomes posterior samples; the Python API calls it too.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import budget, interrupts, masks, plan, solver_settings, tasks
from .errors import DiffrestoreError, ModelError, UsageError
from .plan import Item, RunOptions, RunSummary
from .preflight import load_registry, short_error, validate
from .progress import ProgressCallback, Reporter, make_reporter
from .runtime import image_identity, measurement_generator, resolve_device, resolve_dtype, sample_generators

if TYPE_CHECKING:
    import torch

#: The uncertainty map stores gain * std (std of the samples on the [0, 1] scale), clamped: white = std >= 0.25.
STD_MAP_GAIN = 4.0


# -------------------------------------------------------------------------------------------- model and solver


def load_prior(
    name: str, *, device: torch.device, dtype: torch.dtype, offline: bool | None = None, echo: Any = None,
    registry: Any = None,
) -> Any:
    """The prior for ``--model``: a registry name (of ``registry``, default the shipped models.toml) or a local
    model folder. ModelError when it cannot load."""
    from .priors.load import load_prior as load

    try:
        return load(name, device=device, dtype=dtype, offline=offline, echo=echo, registry=registry)
    except DiffrestoreError:
        raise
    except Exception as error:  # a model folder that is not what it claims to be
        raise ModelError(f"cannot load model '{name}': {error}") from error


def check_fit(prior: Any, solver: Any, task: str, task_opts: tasks.TaskOptions, size: tuple[int, int],
              channels: int, *, simulated: bool, name: str) -> tuple[int, int, int]:
    """The shape (C, H, W) the solver works on; UsageError when the prior or the method cannot take this image
    (channels, a fixed native size)."""
    tasks.check_channels(task, channels, int(prior.channels), name)
    solver.check_channels(channels, int(prior.channels))
    x_channels = tasks.x_channels(task, channels, int(prior.channels))
    w, h = tasks.restored_size(task, task_opts, size, simulate=simulated)
    shape = (x_channels, h, w)
    if hasattr(prior, "check_image_shape"):
        prior.check_image_shape(shape)
    return shape


def fit_any_size(prior: Any, opts: RunOptions, device: Any) -> Any:
    """A fixed-size prior tiled to take any image size (``priors.tiled.tile_prior``); others as they are."""
    from .priors.tiled import tile_prior

    return tile_prior(prior, overlap_px=opts.tile_overlap, batch_size=opts.batch_size, device=device)


# ------------------------------------------------------------------------------ the restoration of one batch


@dataclass
class Restored:
    """What one image's restoration produced (tensor units, CPU, float32, in the input's channels)."""

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
    """Restore same-size images (each (1, C, H, W), tensor units) that share one operator, in one solver call.

    Each image's samples and simulated noise come from its own generators, seeded from ``seed`` and the image's
    pixels, so an image's result does not depend on what else is in the batch."""
    import torch

    from . import metrics
    from .known_pixels import keep_known
    from .operators import Problem
    from .priors.base import PerItemCalls

    task = tasks.canonical_task(task)
    in_c, h, w = (int(v) for v in images[0].shape[1:])
    simulated = tasks.is_simulated(task, simulate)
    name = getattr(prior, "name", None) or "the model"
    x_shape = check_fit(prior, solver, task, task_opts, (w, h), in_c, simulated=simulated, name=name)
    operator = tasks.build_operator(task, task_opts, x_shape, seed=seed, mask=mask, input_channels=in_c)
    noise = tasks.build_noise(task, task_opts)
    identities = [image_identity(image) for image in images]
    ys, refs = [], []
    for image, identity in zip(images, identities, strict=True):
        y, ref = tasks.measurement(task, operator, noise, image.to(torch.float32), channels=x_shape[0],
                                   simulate=simulated, generator=measurement_generator(seed, identity))
        ys.append(y)
        refs.append(ref)
    generators = [g for identity in identities for g in sample_generators(seed, identity, num_samples)]
    device = getattr(prior, "device", torch.device("cpu"))
    if torch.device(device).type == "cpu" and len(generators) > 1:
        prior = PerItemCalls(prior)  # bitwise batch-independent results (see PerItemCalls)
    y_batch = torch.cat([y.expand(num_samples, *y.shape[1:]) for y in ys]).contiguous().to(device)
    problem = Problem(operator=operator.to(device), noise=noise, y=y_batch)
    particles = {"samples_per_image": num_samples} if getattr(solver, "particles_interact", False) else {}
    x = solver.run(prior, problem, generator=generators, progress=progress, **particles)  # (DWGF: one cloud each)
    x = tasks.to_output_channels(task, x.detach().to("cpu", torch.float32).clamp(-1.0, 1.0), in_c)

    keep = task == "inpaint" and not simulated and mask is not None  # a real photo keeps its known pixels
    results = []
    for i in range(len(images)):
        samples = x[i * num_samples : (i + 1) * num_samples]
        if keep:
            samples = keep_known(samples, images[i].to(torch.float32), mask, int(task_opts.blend))
        mean = samples.mean(dim=0, keepdim=True)
        if keep:
            mean = torch.where(mask.to(torch.bool), mean, images[i].to(torch.float32))  # exact, not a mean of copies
        std = None
        if num_samples > 1:
            std = ((samples + 1.0) / 2.0).std(dim=0, keepdim=True).mean(dim=1, keepdim=True)
        ref = None if refs[i] is None else tasks.to_output_channels(task, refs[i], in_c)
        scores: dict[str, float] = {}
        if ref is not None:
            scores = {"psnr": float(metrics.psnr(mean, ref)[0]), "ssim": float(metrics.ssim(mean, ref)[0])}
        results.append(Restored(image=mean, samples=samples, std=std, measurement=ys[i], reference=ref,
                                metrics=scores))
    return results


def std_map_image(std: torch.Tensor) -> torch.Tensor:
    """The std map as a gray image in tensor units: value = clamp(STD_MAP_GAIN * std, 0, 1), no rescaling."""
    return (std * STD_MAP_GAIN).clamp(0.0, 1.0) * 2.0 - 1.0


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class _Prepared:
    item: Item
    mask: Any = None  # bool tensor (1, 1, H, W) or None
    key: tuple = ()


def run(
    inputs: list[str] | list[Path],
    opts: RunOptions,
    task_opts: tasks.TaskOptions,
    *,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Run a whole job. Raises DiffrestoreError for problems found before any model loads; per-image failures
    are recorded on the items. A stop signal (KeyboardInterrupt, ``interrupts.Interrupted``) once the items are
    planned ends the run: finished outputs stay, the rest is "not-run", and the summary says which signal.
    """
    t_start = time.perf_counter()
    # 1. Validate everything that needs no image and no model: flags, method, prior kind, kernel, outputs.
    registry = load_registry(opts.registry)
    solver = validate(opts, task_opts, registry=registry)
    task = opts.task
    simulated = tasks.is_simulated(task, opts.simulate)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    items = plan.plan_run(inputs, opts)

    reporter = reporter or make_reporter(opts)
    summary = RunSummary(task=task, items=items, info={
        "task": task, "method": opts.method, "model": opts.model, "preset": opts.preset,
        "steps": opts.steps or getattr(getattr(solver, "config", None), "steps", None),
        "seed": opts.seed, "num_samples": opts.num_samples, "simulate": simulated, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "operator": tasks.describe(task, task_opts, simulate=simulated),
        **solver_settings.recorded(solver, opts.solver_options)})  # --set values as the solver took them
    output_like = sum(1 for item in items if item.error == plan.LOOKS_LIKE_OUTPUT)
    single = len(items) - output_like == 1 and opts.sharding is None  # a part of one image is no single run
    try:
        # 2. Decode every input and build its mask before any weights load; check the memory the sizes need.
        prepared = _prepare(items, task, task_opts, opts, simulated=simulated, single=single)
        _check_memory(prepared, task, task_opts, opts, device, simulated=simulated)
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
                t_load = time.perf_counter()
                prior = load_prior(opts.model, device=device, dtype=dtype, offline=opts.offline,
                                   echo=reporter.message, registry=registry)
                summary.load_seconds = time.perf_counter() - t_load
                solver.prepare(prior)  # e.g. the prompt, encoded once: its errors end the run in one line
                prior = fit_any_size(prior, opts, device)
                fitting = _fitting(prepared, prior, solver, task, task_opts, opts, reporter,
                                   simulated=simulated, single=single)
                _run_batches(fitting, prior, solver, task, task_opts, opts, reporter, summary)
    except KeyboardInterrupt as stop:
        summary.interrupted, summary.signal = True, interrupts.signal_name(stop)
        for item in items:
            if item.status == "pending":
                item.status = "not-run"
    summary.seconds = time.perf_counter() - t_start
    reporter.run_finished(summary)  # its last line (a world's rank 0: the whole world's)
    return summary


def _check_memory(prepared: list[_Prepared], task: str, task_opts: tasks.TaskOptions, opts: RunOptions,
                  device: Any, *, simulated: bool) -> None:
    """The solver's memory for the largest batch against the device's free memory (budget.check_memory)."""
    batches = []
    for batch in _batches(prepared, opts.batch_size):
        item = batch[0].item
        assert item.size is not None and item.channels is not None
        channels = 3 if task == "colorize" else item.channels  # the prior's channels are a floor known later
        batches.append((len(batch), channels, tasks.restored_size(task, task_opts, item.size, simulate=simulated)))
    budget.check_memory(batches, num_samples=opts.num_samples, device=device,
                        kernel=tasks.kernel_shape(task, task_opts), kernel_flag=task_opts.kernel is None)


def _prepare(items: list[Item], task: str, task_opts: tasks.TaskOptions, opts: RunOptions, *, simulated: bool,
             single: bool) -> list[_Prepared]:
    """Decode each pending input, find and check its mask; a failure fails that item (or the run when it is the
    only one, or --fail-fast)."""
    from . import imageio

    extensions = plan.image_extensions()
    prepared: list[_Prepared] = []
    for item in items:
        if item.status == "skipped":
            continue
        try:
            loaded = imageio.load_image(item.input)
            item.size = (int(loaded.tensor.shape[-1]), int(loaded.tensor.shape[-2]))
            item.channels = int(loaded.tensor.shape[1])
            item.mask = masks.mask_source(task, task_opts, item.input, extensions)
            mask = None
            out_size = tasks.restored_size(task, task_opts, item.size, simulate=simulated)
            if item.mask.kind != "none":
                mask = masks.build_mask(item.mask, task_opts, out_size, seed=opts.seed, loaded=loaded)
            if tasks.estimates_noise(task, task_opts, simulate=simulated):
                from .noise_estimate import estimate_noise

                estimate = estimate_noise(loaded.tensor, known=None if mask is None else ~mask,
                                          bit_depth=loaded.bit_depth)
                item.noise_sigma, item.noise_note = estimate.sigma, estimate.run_note()
            del loaded
        except DiffrestoreError as error:
            if single or opts.fail_fast:
                raise
            item.status, item.error = "failed", str(error)
            continue
        except (OSError, ValueError) as error:
            if single or opts.fail_fast:
                raise UsageError(f"{item.input}: {short_error(error)}") from error
            item.status, item.error = "failed", short_error(error)
            continue
        # Images batch only with their own kind: same size, channels, mask and (estimated) noise level.
        key = (item.size, item.channels, item.mask.key(item.input) if item.mask else None, item.noise_sigma)
        prepared.append(_Prepared(item=item, mask=mask, key=key))
    return prepared


def _fitting(prepared: list[_Prepared], prior: Any, solver: Any, task: str, task_opts: tasks.TaskOptions,
             opts: RunOptions, reporter: Reporter, *, simulated: bool, single: bool) -> list[_Prepared]:
    """The prepared images the loaded prior can take (channels and native size are known only now)."""
    fitting = []
    for p in prepared:
        assert p.item.size is not None and p.item.channels is not None
        try:
            check_fit(prior, solver, task, task_opts, p.item.size, p.item.channels, simulated=simulated,
                      name=opts.model)
        except DiffrestoreError as error:
            if single or opts.fail_fast:
                raise
            p.item.status, p.item.error = "failed", str(error)
            reporter.item_finished(p.item)
            continue
        fitting.append(p)
    return fitting


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
            batch_opts = _with_estimated_noise(task_opts, batch[0].item.noise_sigma)
            _note_tiling(batch, prior, task, task_opts, opts, reporter, notes_seen)
            for p, like in zip(batch, loaded, strict=True):
                for note in _input_notes(p.item, like):
                    if note not in notes_seen:
                        notes_seen.add(note)
                        reporter.message(f"note: {p.item.input.name}: {note}")
            results = restore_batch(
                prior, solver, task, batch_opts, [x.tensor for x in loaded], mask=batch[0].mask,
                num_samples=opts.num_samples, seed=opts.seed, simulate=opts.simulate, progress=reporter.step,
            )
        except (DiffrestoreError, RuntimeError, ValueError, OSError) as error:
            message = short_error(error)
            for p in batch:
                p.item.status, p.item.error = "failed", message
                p.item.record_time(len(batch), time.perf_counter() - t0)
                reporter.item_finished(p.item)
            if opts.fail_fast:
                stop = True
            continue
        batch_seconds = time.perf_counter() - t0
        for p, like, result in zip(batch, loaded, results, strict=True):
            item = p.item
            t_save = time.perf_counter()
            # A stop signal while this image's files are written takes effect once they all are, and the
            # image is reported done: it is complete or absent, never a main output without its samples.
            with interrupts.deferred():
                try:
                    for note in _save(item, like, result, overwrite=opts.overwrite, protected=protected):
                        if note not in notes_seen:
                            notes_seen.add(note)
                            reporter.message(f"note: {item.output.name}: {note}")
                except (DiffrestoreError, OSError, ValueError) as error:
                    item.status, item.error = "failed", short_error(error)
                    reporter.item_finished(item)
                    if opts.fail_fast:
                        stop = True
                    continue
                item.status = "done"
                item.metrics = result.metrics
                item.record_time(len(batch), batch_seconds, time.perf_counter() - t_save)
                if not opts.json_output:
                    line = str(item.output)
                    if result.metrics:
                        line += f"\tPSNR {result.metrics['psnr']:.2f} dB\tSSIM {result.metrics['ssim']:.4f}"
                    reporter.result(line)
                    for extra in item.outputs[1:]:
                        reporter.result(str(extra))
                reporter.item_finished(item)


def _note_tiling(batch: list[_Prepared], prior: Any, task: str, task_opts: tasks.TaskOptions, opts: RunOptions,
                 reporter: Reporter, notes_seen: set[str]) -> None:
    """Say once per image size that a fixed-size prior is tiled, and record the windows per call on the items."""
    from .priors.tiled import tiling_note

    item = batch[0].item
    assert item.size is not None and item.channels is not None
    w, h = tasks.restored_size(task, task_opts, item.size, simulate=tasks.is_simulated(task, opts.simulate))
    found = tiling_note(prior, (int(prior.channels), h, w))
    if found is None:
        return
    count, note = found
    for p in batch:
        p.item.tiles = count
    if note not in notes_seen:
        notes_seen.add(note)
        reporter.message(f"note: {note}")


def _input_notes(item: Item, loaded: Any) -> list[str]:
    """What reading the file changed or decided (CMYK converted, transparency used as the mask, the estimated
    noise level), as imageio and the estimator say."""
    notes = list(getattr(loaded, "notes", []) or [])
    if item.mask is not None and item.mask.kind == "alpha":
        notes += loaded.alpha_mask_notes()
    if item.noise_note:
        notes.append(item.noise_note)
    return notes


def _with_estimated_noise(task_opts: tasks.TaskOptions, sigma: float | None) -> tasks.TaskOptions:
    """The task options with an image's estimated noise level in place of "auto" (a copy: the run's stay)."""
    if sigma is None:
        return task_opts
    resolved = copy.copy(task_opts)  # keeps the kernel read at validation (not an init field of the dataclass)
    resolved.noise_sigma = float(sigma)
    return resolved


def _save(item: Item, like: Any, result: Restored, *, overwrite: bool, protected: list[Path]) -> list[str]:
    """Write the outputs of one finished image (each atomically), samples and std map first, the main one last.

    Returns what the output formats could not keep (imageio's notes)."""
    import dataclasses

    from . import imageio

    if item.mask is not None and item.mask.kind == "alpha":
        # The transparency was the hole to fill: the filled result is opaque.
        like = dataclasses.replace(like, alpha=None)
    new = [p for p in item.outputs if not p.exists()]
    notes: list[str] = []
    try:
        for path, sample in zip(item.samples, result.samples if item.samples else [], strict=True):
            notes += imageio.save_image(sample.unsqueeze(0), path, like=like, overwrite=overwrite,
                                        protected=protected).notes
        if item.std_map is not None and result.std is not None:
            imageio.save_image(std_map_image(result.std), item.std_map, like=None, overwrite=overwrite,
                               protected=protected)
        notes += imageio.save_image(result.image, item.output, like=like, overwrite=overwrite,
                                    protected=protected).notes
    except KeyboardInterrupt:  # a second stop signal, mid-save: take back this image's new files (never old ones)
        for path in new:
            path.unlink(missing_ok=True)
        raise
    return notes
