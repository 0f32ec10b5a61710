"""The Python API: ``diffrestore.restore(image_or_path, task=..., **options)``, with the reach of the CLI.

    import diffrestore
    result = diffrestore.restore("photo.png", task="inpaint", mask="holes.png", steps=20, seed=1)
    result.save("photo_inpaint.png")              # keeps bit depth, ICC profile, EXIF like the CLI
    result.image                                  # (1, C, H, W) float32 tensor in [-1, 1]
    result.to_numpy()                             # (H, W, C) float32 in [0, 1]

    diffrestore.score(restored, clean, metrics="psnr,lpips")          # {"psnr": 27.1, "lpips": 0.12}
    diffrestore.score_folders("out/daps", "clean/", metrics="fid,kid")  # what `diffrestore eval --restored` reports

Options have the CLI's names with underscores (``num_samples``, ``noise_sigma``, ``random_fraction``...).

Images can be a path, a ``LoadedImage``, a PIL image, a numpy array or a torch tensor, read as the CLI reads files:

- numpy arrays, (H, W) or (H, W, C) with C = 1 or 3 (2 or 4: the last channel is alpha): uint8 on 0..255, uint16
  on 0..65535, floats on [0, 1];
- PIL images in any mode the CLI reads: I;16 and I (within 0..65535) on the 16-bit range, as the CLI reads a
  16-bit PNG; F as floats on [0, 1], palette images with transparency as RGBA, CMYK and other colour modes as RGB;
- torch tensors, (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3: floats in [-1, 1] (the package's tensor
  units), uint8 and uint16 on their type's range like arrays.

NaN or infinite values are refused, and so are floats outside their range by more than rounding (half an 8-bit
step; closer ones are clipped): ``InputError``. A wrong type, dtype or shape is a ``UsageError``. An image's
transparency (a PIL image or array with alpha, or a file) is, as in the CLI, the inpainting mask when ``inpaint``
gets no other mask source (alpha below 50 % = missing; the result is saved opaque); for other tasks, or with
another mask, it is put back by ``save``. ``save`` keeps the input's bit depth: 16 bits for 16-bit inputs, 8 for
8-bit ones and for floats (``save(path, bit_depth=16)`` to keep more).

``mask`` can be a path or an array / tensor of shape (H, W) that is True (or 1, or above 0.5) where pixels are
missing; a mask with NaN, or with no missing pixel, is refused. Pass ``prior=`` to reuse a loaded prior across
calls; otherwise the prior for ``model`` is loaded once and kept for later calls with the same model, device and
dtype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .solvers.base import ProgressCallback

_PRIOR_CACHE: dict[tuple[str, str, str, str], Any] = {}
_SCORER_CACHE: dict[tuple[tuple[str, ...], str, str], Any] = {}


@dataclass
class Restoration:
    """The result of :func:`restore`. Tensors are float32 on the CPU, in tensor units unless said otherwise."""

    image: torch.Tensor  # (1, C, H, W): the restored image (the mean of the samples when num_samples > 1)
    samples: torch.Tensor  # (K, C, H, W): every posterior sample
    std: torch.Tensor | None  # (1, 1, H, W): per-pixel std of the samples on the [0, 1] scale; None for K = 1
    measurement: torch.Tensor  # y, as the solver saw it
    reference: torch.Tensor | None  # the clean input when simulating
    #: when simulating: the scores against the clean input, {name: value} (psnr in dB, ssim, or ``metrics=``)
    metrics: dict[str, float] = field(default_factory=dict)
    #: the method's settings as configured and what it derived for this image (the CLI's "solver" and "resolved")
    settings: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    noise_sigma: float | None = None  # the Gaussian noise std on [0, 1] assumed (estimated for real inputs)
    source: Any = None  # the LoadedImage the input came from, when it came from a file
    #: what reading the input changed or decided, as the CLI's "note:" lines (transparency used as the mask...)
    notes: list[str] = field(default_factory=list)
    _like: Any = field(default=None, repr=False)  # what save() keeps: bit depth, alpha (unless it was the mask)
    _task: Any = field(default=None, repr=False)  # the resolved task: save() writes what its CLI run writes

    def to_numpy(self) -> np.ndarray:
        """(H, W, C) float32 in [0, 1] ((H, W) for grayscale); for MRI the complex image (H, W) in the data's units."""
        from .tasks.spec import TaskSpec

        spec = self._task.spec if self._task is not None else TaskSpec()
        return spec.as_array(self.image, self._like if self._like is not None else self.source)

    def to_pil(self):
        """An 8-bit PIL image (mode L or RGB)."""
        import numpy as np
        from PIL import Image

        return Image.fromarray(np.round(self.to_numpy() * 255).astype(np.uint8))

    def save(self, path: str | Path, *, overwrite: bool = False, bit_depth: int | None = None) -> Path:
        """Write the image atomically, keeping the input's bit depth (16 for 16-bit files, PIL modes I;16 / I and
        uint16 arrays or tensors; 8 for 8-bit ones and for floats), alpha (unless it was the inpainting mask),
        ICC profile and EXIF where known; ``bit_depth`` (8 or 16) overrides the depth. Otherwise the file is what
        the CLI writes for this task and suffix (ct: a DICOM slice with its source's header in HU, ``.npy``)."""
        from . import imageio

        if bit_depth not in (None, 8, 16):
            raise UsageError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        like = self._like if self._like is not None else self.source
        if bit_depth is None and self._task is not None:
            protected = (self.source.path,) if self.source is not None and self.source.path else ()
            self._task.save_output(self.image, Path(path), like=like, overwrite=overwrite, protected=protected)
            return Path(path)
        return imageio.save_image(self.image, path, like=like, overwrite=overwrite, bit_depth=bit_depth).path

    def save_std_map(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the uncertainty map (white = std of 0.25 or more on the [0, 1] scale); needs num_samples > 1."""
        from . import imageio
        from .run.restore import std_map_image

        if self.std is None:
            raise UsageError("no uncertainty map: restore with num_samples of 2 or more")
        return imageio.save_image(std_map_image(self.std), path, overwrite=overwrite).path


#: A float image may stray outside its range by rounding (a float32 resize or colour conversion leaves 1.0000001):
#: up to half an 8-bit step (0.5 / 255 on the [0, 1] scale) is clipped; anything further out is refused, since no
#: white level can be guessed for it.
FLOAT_TOLERANCE = 0.5 / 255

#: PIL modes converted to another before reading, as the CLI's file reader converts them (imageio/read.py);
#: palette images and colour modes other than L, LA, RGB, RGBA are handled in _from_pil.
_PIL_CONVERT = {"1": "L", "La": "LA", "RGBa": "RGBA"}


def _as_loaded(image: Any, task: Any = None) -> tuple[Any, bool]:
    """(LoadedImage, whether it came from a file). A file is read as ``task`` reads its inputs (a sinogram for
    ct, as the CLI). Images given as objects become a LoadedImage too, so that their alpha can be the inpainting
    mask and ``save`` keeps their bit depth, as for a file."""
    import torch

    from . import imageio

    if isinstance(image, (str, Path)):
        return (task.read_input(Path(image)) if task is not None else imageio.load_image(image)), True
    if isinstance(image, imageio.LoadedImage):
        return image, True
    if isinstance(image, torch.Tensor):
        tensor, depth = _tensor_units(image)
        return _in_memory(tensor, None, depth, mode=f"tensor {str(image.dtype).removeprefix('torch.')}"), False
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        return _from_pil(image), False
    import numpy as np

    if isinstance(image, np.ndarray):
        tensor, alpha, depth = _array_units(image, "the image array")
        return _in_memory(tensor, alpha, depth, mode=f"array {image.dtype}"), False
    raise UsageError(f"cannot restore an object of type {type(image).__name__}",
                     hint="pass a path, PIL image, numpy array or torch tensor")


def _in_memory(tensor: torch.Tensor, alpha: Any, depth: int, *, mode: str, icc: bytes | None = None) -> Any:
    from . import imageio

    size = (int(tensor.shape[-1]), int(tensor.shape[-2]))
    return imageio.LoadedImage(tensor=tensor, path=Path("image"), format="PNG", mode=mode, bit_depth=depth,
                               size=size, alpha=alpha, icc_profile=icc)


def _from_pil(image: Any) -> Any:
    """A PIL image read with the file reader's conventions: 16-bit gray (I;16*, and I within 0..65535) on the
    16-bit range, F as floats in [0, 1], palette with transparency as RGBA, other colour modes as RGB."""
    import numpy as np

    mode = image.mode
    what = f"the PIL image (mode {mode})"
    if mode.startswith("I"):  # I;16, I;16B, I;16L and I (32-bit integers)
        values = np.asarray(image)
        if values.size and (int(values.min()) < 0 or int(values.max()) > 65535):
            raise InputError(f"{what} holds integer pixels outside 0..65535, which this tool cannot use",
                             hint="convert it to 16-bit (values 0..65535)")
        array = values.astype(np.uint16)
    elif mode == "F":
        array = np.asarray(image, dtype=np.float32)
    else:
        if mode in ("P", "PA"):
            target = "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
        else:
            target = _PIL_CONVERT.get(mode, mode if mode in ("L", "LA", "RGB", "RGBA") else "RGB")
        if target != mode:
            try:
                image = image.convert(target)  # CMYK, YCbCr, RGBX, HSV, LAB... -> RGB
            except (ValueError, OSError):
                raise InputError(f"{what} uses a colour mode this tool cannot convert",
                                 hint="convert it to RGB first: image.convert('RGB')") from None
        array = np.asarray(image)
    tensor, alpha, depth = _array_units(array, what)
    return _in_memory(tensor, alpha, depth, mode=mode, icc=image.info.get("icc_profile") or None)


def _array_units(array: Any, what: str) -> tuple[torch.Tensor, Any, int]:
    """(tensor (1, C, H, W) in tensor units, alpha (H, W) in [0, 1] or None, bit depth) of an (H, W) or (H, W, C)
    array, C = 1 or 3 (2 or 4 with alpha): uint8 on 0..255, uint16 on 0..65535, floats on [0, 1]."""
    import numpy as np
    import torch

    if array.dtype.kind == "u" and array.dtype.itemsize <= 2:  # uint8, uint16 (either byte order)
        top, depth = float(np.iinfo(array.dtype).max), 8 * array.dtype.itemsize
    elif array.dtype.kind == "f":
        top, depth = 1.0, 8  # no bit depth of its own: saved at 8 bits unless save(bit_depth=16) asks for more
    else:
        raise UsageError(f"{what} has dtype {array.dtype}, which has no defined white level",
                         hint="use uint8 (0..255), uint16 (0..65535) or float in [0, 1]")
    values = array[:, :, None] if array.ndim == 2 else array
    if values.ndim != 3 or values.shape[2] not in (1, 2, 3, 4) or 0 in values.shape:
        raise UsageError(f"{what} must be (H, W) or (H, W, C) with C = 1 or 3 (2 or 4 with alpha), "
                         f"got shape {array.shape}")
    values = values.astype(np.float32) * np.float32(1.0 / top)
    if array.dtype.kind == "f":
        values = _check_floats(values, what, low=0.0, units="[0, 1]", tolerance=FLOAT_TOLERANCE, hint=(
            "floats are read as 0 = black, 1 = white: scale them into [0, 1], or pass uint8 (0..255) or "
            "uint16 (0..65535) values as such"))
    alpha = None
    if values.shape[2] in (2, 4):
        alpha, values = np.ascontiguousarray(values[:, :, -1]), values[:, :, :-1]
    tensor = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))[None] * 2.0 - 1.0
    return tensor.to(torch.float32), alpha, depth


def _tensor_units(image: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(tensor (1, C, H, W) in tensor units, bit depth) of a (H, W), (C, H, W) or (1, C, H, W) tensor: floats in
    tensor units [-1, 1]; integers, like arrays, on their type's range (uint8 0..255, uint16 0..65535)."""
    import torch

    what = "the image tensor"
    t = image.detach().to("cpu")
    if t.dim() in (2, 3):
        t = t[(None,) * (4 - t.dim())]
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3) or 0 in t.shape:
        raise UsageError(
            f"a tensor image must be (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(image.shape)}"
        )
    if t.dtype in (torch.uint8, torch.uint16):
        top = 255.0 if t.dtype == torch.uint8 else 65535.0
        depth = 8 if t.dtype == torch.uint8 else 16
        t = t.to(torch.float32) * (2.0 / top) - 1.0
    elif t.is_floating_point():
        depth = 8
        t = _check_floats(t.to(torch.float32), what, low=-1.0, units="[-1, 1] (the package's tensor units)",
                          tolerance=2 * FLOAT_TOLERANCE, hint=(
                              "pass x * 2 - 1 for values in [0, 1], a uint8 tensor for 0..255, or "
                              "x.clamp(-1, 1) if the excess is noise"))
    else:
        raise UsageError(f"{what} has dtype {str(image.dtype).removeprefix('torch.')}, which has no defined "
                         "white level", hint="use float in [-1, 1], uint8 (0..255) or uint16 (0..65535)")
    return t.contiguous(), depth


def _check_floats(values: Any, what: str, *, low: float, units: str, tolerance: float, hint: str) -> Any:
    """``values`` (numpy or torch) clipped to [low, 1] when they are finite and outside it by rounding only;
    InputError naming the values found otherwise."""
    import numpy as np

    finite = values.isfinite() if hasattr(values, "isfinite") else np.isfinite(values)
    if not bool(finite.all()):
        bad, count = int((~finite).sum()), int(np.prod(values.shape))
        raise InputError(f"{what} contains NaN or infinite values ({bad:,} of {count:,})",
                         hint="replace them before restoring: a single one spreads to the whole result")
    smallest, largest = float(values.min()), float(values.max())
    if smallest < low - tolerance or largest > 1.0 + tolerance:
        raise InputError(f"{what} has values from {smallest:.4g} to {largest:.4g}, outside {units}", hint=hint)
    return values.clip(low, 1.0)


def _get_prior(job: Any) -> Any:
    """The prior of ``job``'s model, loaded through the engine's loader once and kept for later calls with the
    same model, device, dtype and registry (one model in memory, not every one ever used)."""
    from .run import restore as restoring
    from .run.runtime import resolve_device, resolve_dtype

    opts = job.options
    device = resolve_device(opts.device)
    stand_in = restoring.stand_in_prior(job, device)
    if stand_in is not None:  # a classical reconstruction loads no model
        return stand_in
    dtype = resolve_dtype(opts.dtype, device)
    key = (opts.model, str(device), str(dtype), str(opts.registry or ""))
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()
        _PRIOR_CACHE[key] = restoring.load_prior(opts.model, device=device, dtype=dtype, offline=opts.offline,
                                                 registry=job.registry)
    return _PRIOR_CACHE[key]


def _get_scorer(names: tuple[str, ...], device: Any, registry_file: Any, registry: Any, offline: bool | None) -> Any:
    """A ``Scorer`` for ``names``, its weights in the cache first (downloaded unless offline: ModelError, exit 3,
    naming ``diffrestore models download``), kept for later calls with the same names, device and registry (one
    LPIPS network loaded per loop over images, not one per image)."""
    from .run.scoring import check_metric_weights, make_scorer

    key = (names, str(device), str(registry_file or ""))
    if key not in _SCORER_CACHE:
        check_metric_weights(names, registry=registry, offline=offline)
        _SCORER_CACHE.clear()
        _SCORER_CACHE[key] = make_scorer(names, registry=registry, device=device)
    return _SCORER_CACHE[key]


def score(restored: Any, reference: Any, metrics: str | Sequence[str] = ("psnr", "ssim"), *, device: str = "cpu",
          registry: str | Path | None = None, offline: bool | None = None) -> dict[str, float]:
    """The image metrics of one restored image against its reference, ``{name: value}``: PSNR in dB, SSIM, the
    LPIPS variants (``diffrestore eval``'s names; see docs/metrics.md). Both images are read as ``restore`` reads
    its input (paths, PIL images, arrays, tensors; the same errors for bad ones); a gray restoration of a colour
    reference is scored on the reference's luminance, as eval does. Set metrics (FID, KID) need folders:
    :func:`score_folders`. A network's weights come from the registry (``registry``: another models.toml), and
    an image smaller than a metric's network takes is refused before it loads."""
    from . import imageio
    from .errors import SizeMismatchError
    from .run.flags import parse_metric_list
    from .run.preflight import load_registry
    from .run.runtime import resolve_device
    from .run.scoring import check_image_sizes, describe_metrics

    names = parse_metric_list(metrics, "metrics")
    per_set = [name for name, info in describe_metrics(names).items() if info["kind"] == "set"]
    if per_set:
        raise UsageError(f"metrics: {per_set[0]} is computed over a set of images, not one pair",
                         hint="use diffrestore.score_folders(restored_dir, reference_dir, metrics=...)")
    x, ref = _as_loaded(restored)[0].tensor, _as_loaded(reference)[0].tensor
    if x.shape[-2:] != ref.shape[-2:]:
        raise SizeMismatchError(f"the restored image is {x.shape[-1]} x {x.shape[-2]} but the reference is "
                                f"{ref.shape[-1]} x {ref.shape[-2]}", hint="score images of the same size")
    if ref.shape[1] != x.shape[1]:
        ref = imageio.to_channels(ref, int(x.shape[1]))
    check_image_sizes(names, [("the restored image", (int(x.shape[-1]), int(x.shape[-2])))], flag="metrics")
    scorer = _get_scorer(names, resolve_device(device), registry, load_registry(registry), offline)
    return {name: values[0] for name, values in scorer.score_images(x, ref).items()}


def score_folders(restored: str | Path | Sequence[str | Path], reference: str | Path,
                  metrics: str | Sequence[str] = ("psnr", "ssim"), *, suffix: str | None = None,
                  output: str | Path | None = None, overwrite: bool = False, contact_rows: int = 4,
                  device: str = "auto", registry: str | Path | None = None,
                  offline: bool | None = None) -> dict[str, Any]:
    """``diffrestore eval --restored DIR --reference DIR`` from Python: every metric, FID and KID included, of one
    or more folders of restored images against a folder of references, files matched by name (``suffix``: the
    exact rule, as ``--suffix``). Returns the document ``results.json`` holds: ``aggregate[folder][metric]`` is
    ``{"mean", "std", "n"}`` for an image metric and ``{"value", "n", ...}`` for a set metric, ``images`` every
    pair's scores (an identical image's PSNR is None, JSON having no inf). ``output``: a folder to write the
    report files into too (``overwrite`` to replace a report). The same checks and errors as the command."""
    from .run.eval_report import results_json
    from .run.evaluate import evaluate_folders
    from .run.flags import parse_metric_list

    folders = [Path(restored)] if isinstance(restored, (str, Path)) else [Path(folder) for folder in restored]
    report = evaluate_folders(folders, Path(reference), parse_metric_list(metrics, "metrics"),
                              output=Path(output) if output is not None else None, suffix=suffix,
                              overwrite=overwrite, registry_file=Path(registry) if registry is not None else None,
                              offline=offline, device=device, contact_rows=contact_rows, say=lambda text: None)
    return results_json(report)


def restore(
    image: Any,
    task: str = "inpaint",
    *,
    method: str = "daps",
    model: str | None = None,
    prior: Any = None,
    preset: str = "fast",
    steps: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    simulate: bool = False,
    offline: bool | None = None,
    registry: str | Path | None = None,
    progress: ProgressCallback | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    guidance: float | None = None,
    tile_overlap: int | None = None,
    solver_options: Mapping[str, Any] | None = None,
    metrics: str | Sequence[str] | None = None,
    **task_options: Any,
) -> Restoration:
    """Restore one image with the given task; the options are the CLI's flags (see ``diffrestore TASK --help``).
    ``registry``: a models.toml to look ``model`` up in (the CLI's ``--registry``). ``prompt``,
    ``negative_prompt``, ``guidance``: for text-conditioned latent priors (``method="daps"`` runs LatentDAPS on
    a latent prior). ``solver_options``: the method's hyper-parameters on top of ``preset`` (the CLI's
    ``--set KEY=VALUE``), e.g. ``{"inner_spread": 1.0}``; strings are parsed as on the command line.
    ``metrics``: with ``simulate=True``, the scores in ``Restoration.metrics`` (the CLI's ``--metrics``, as
    ``"psnr,lpips"`` or a list; default PSNR and SSIM); their weights are fetched and the image's size checked
    against their networks before the prior loads.

    The image takes the CLI's path: the same checks (``run.preflight.validate``), the same reading of the input
    (mask, noise estimate, memory: ``run.inputs``), the same restoration (``run.restore``). Raises the same
    errors as the CLI (``diffrestore.errors``), with the same messages.
    """
    from .run import inputs
    from .run import restore as restoring
    from .run.options import RunOptions
    from .run.preflight import validate

    run_opts = RunOptions(task=task, method=method, model=model, preset=preset, steps=steps, seed=seed,
                          num_samples=num_samples, device=device, dtype=dtype, simulate=simulate, offline=offline,
                          registry=Path(registry) if registry is not None else None, prompt=prompt,
                          negative_prompt=negative_prompt, guidance=guidance, tile_overlap=tile_overlap,
                          solver_options=dict(solver_options or {}),
                          metrics=metrics if metrics is None or isinstance(metrics, str) else tuple(metrics))
    job = validate(run_opts, task_options, prior=prior)  # the CLI's checks and messages

    loaded, from_file = _as_loaded(image, job.task)
    tensor = loaded.tensor
    prepared = inputs.prepare_input(job, tensor, path=loaded.path, loaded=loaded,
                                    extensions=job.task.input_extensions())
    run_device = prior.device if prior is not None else None
    if run_device is None:
        from .run.runtime import resolve_device

        run_device = resolve_device(device)
    inputs.check_memory(job, [prepared], run_device)
    scorer = None
    if job.metrics:  # as the engine: sizes, then the metrics' weights, before the prior loads
        from .run.scoring import check_image_sizes

        check_image_sizes(job.metrics, [(loaded.path if from_file else "the image", prepared.restored_size)],
                          flag="metrics")
        scorer = _get_scorer(job.metrics, run_device, registry, job.registry, offline)
    prior = restoring.ready_prior(job, prior if prior is not None else _get_prior(job))
    task_now = job.task.with_noise_sigma(prepared.noise_sigma)
    [result] = restoring.restore_batch(prior, job.solver, task_now, [tensor], mask=prepared.mask,
                                       num_samples=job.num_samples, seed=seed, progress=progress, scorer=scorer)
    assumed = task_now.noise_sigma if task_now.noise == "gaussian" else None
    # As the CLI: the notes it would print for this input, and an image whose transparency was the hole to fill
    # is saved opaque; any other alpha is put back by save().
    notes = list(loaded.notes)
    like = loaded
    if prepared.mask_source.kind == "alpha":
        notes += loaded.alpha_mask_notes()
        like = dataclasses.replace(loaded, alpha=None)
    if prepared.noise_note:
        notes.append(prepared.noise_note)
    return Restoration(image=result.image, samples=result.samples, std=result.std, measurement=result.measurement,
                       reference=result.reference, metrics=result.metrics, source=loaded if from_file else None,
                       noise_sigma=assumed, settings=job.solver.settings(), resolved=result.resolved,
                       notes=notes, _like=like, _task=task_now)
