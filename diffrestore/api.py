"""The Python API: ``diffrestore.restore(image_or_path, task=..., **options)``, with the reach of the CLI.

    import diffrestore
    result = diffrestore.restore("photo.png", task="inpaint", mask="holes.png", steps=20, seed=1)
    result.save("photo_inpaint.png")              # keeps bit depth, ICC profile, EXIF like the CLI
    result.image                                  # (1, C, H, W) float32 tensor in [-1, 1]
    result.to_numpy()                             # (H, W, C) float32 in [0, 1]

Options have the CLI's names with underscores (``num_samples``, ``noise_sigma``, ``random_fraction``...). Images
can be a path, a ``LoadedImage``, a PIL image, a numpy array ((H, W) or (H, W, C); uint8, uint16, or float in
[0, 1]) or a torch tensor ((C, H, W) or (1, C, H, W) in [-1, 1], the package's tensor units). ``mask`` can be a
path or an array / tensor of shape (H, W) that is True (or 1) where pixels are missing. Pass ``prior=`` to reuse a
loaded prior across calls; otherwise the prior for ``model`` is loaded once and kept for later calls with the
same model, device and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .solvers.base import ProgressCallback

_PRIOR_CACHE: dict[tuple[str, str, str, str], Any] = {}


@dataclass
class Restoration:
    """The result of :func:`restore`. Tensors are float32 on the CPU, in tensor units unless said otherwise."""

    image: torch.Tensor  # (1, C, H, W): the restored image (the mean of the samples when num_samples > 1)
    samples: torch.Tensor  # (K, C, H, W): every posterior sample
    std: torch.Tensor | None  # (1, 1, H, W): per-pixel std of the samples on the [0, 1] scale; None for K = 1
    measurement: torch.Tensor  # y, as the solver saw it
    reference: torch.Tensor | None  # the clean input when simulating
    metrics: dict[str, float] = field(default_factory=dict)  # psnr (dB) and ssim when simulating
    #: the method's settings as configured and what it derived for this image (the CLI's "solver" and "resolved")
    settings: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    noise_sigma: float | None = None  # the Gaussian noise std on [0, 1] assumed (estimated for real inputs)
    source: Any = None  # the LoadedImage the input came from, when it came from a file

    def to_numpy(self) -> np.ndarray:
        """(H, W, C) float32 in [0, 1] ((H, W) for grayscale)."""
        array = ((self.image[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        return array[:, :, 0] if array.shape[2] == 1 else array

    def to_pil(self):
        """An 8-bit PIL image (mode L or RGB)."""
        import numpy as np
        from PIL import Image

        return Image.fromarray(np.round(self.to_numpy() * 255).astype(np.uint8))

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the image atomically (keeping the source file's bit depth, alpha, ICC and EXIF when known)."""
        from . import imageio

        return imageio.save_image(self.image, path, like=self.source, overwrite=overwrite).path

    def save_std_map(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the uncertainty map (white = std of 0.25 or more on the [0, 1] scale); needs num_samples > 1."""
        from . import imageio
        from .run.restore import std_map_image

        if self.std is None:
            raise UsageError("no uncertainty map: restore with num_samples of 2 or more")
        return imageio.save_image(std_map_image(self.std), path, overwrite=overwrite).path


def _as_loaded(image: Any) -> tuple[torch.Tensor, Any]:
    """(tensor (1, C, H, W) in [-1, 1], LoadedImage or None)."""
    import numpy as np
    import torch

    from . import imageio

    if isinstance(image, (str, Path)):
        loaded = imageio.load_image(image)
        return loaded.tensor, loaded
    if isinstance(image, imageio.LoadedImage):
        return image.tensor, image
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
            raise UsageError(
                f"a tensor image must be (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(image.shape)}"
            )
        return t, None
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        mode = "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"
        image = np.asarray(image.convert(mode))
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype == np.uint8:
            values = array.astype(np.float32) / np.float32(255)
        elif array.dtype == np.uint16:
            values = array.astype(np.float32) / np.float32(65535)
        elif np.issubdtype(array.dtype, np.floating):
            values = array.astype(np.float32)
        else:
            raise UsageError(f"unsupported array dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
        if values.ndim == 2:
            values = values[:, :, None]
        if values.ndim != 3 or values.shape[2] not in (1, 3):
            raise UsageError(f"an array image must be (H, W) or (H, W, 1|3), got {array.shape}")
        t = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))[None] * 2.0 - 1.0
        return t.to(torch.float32), None
    raise UsageError(f"cannot restore an object of type {type(image).__name__}",
                     hint="pass a path, PIL image, numpy array or torch tensor")


def _get_prior(job: Any) -> Any:
    """The prior of ``job``'s model, loaded through the engine's loader once and kept for later calls with the
    same model, device, dtype and registry (one model in memory, not every one ever used)."""
    from .run import restore as restoring
    from .run.runtime import resolve_device, resolve_dtype

    opts = job.options
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    key = (opts.model, str(device), str(dtype), str(opts.registry or ""))
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()
        _PRIOR_CACHE[key] = restoring.load_prior(opts.model, device=device, dtype=dtype, offline=opts.offline,
                                                 registry=job.registry)
    return _PRIOR_CACHE[key]


def restore(
    image: Any,
    task: str = "inpaint",
    *,
    method: str = "daps",
    model: str = "builtin",
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
    **task_options: Any,
) -> Restoration:
    """Restore one image with the given task; the options are the CLI's flags (see ``diffrestore TASK --help``).
    ``registry``: a models.toml to look ``model`` up in (the CLI's ``--registry``). ``prompt``,
    ``negative_prompt``, ``guidance``: for text-conditioned latent priors (``method="daps"`` runs LatentDAPS on
    a latent prior). ``solver_options``: the method's hyper-parameters on top of ``preset`` (the CLI's
    ``--set KEY=VALUE``), e.g. ``{"inner_spread": 1.0}``; strings are parsed as on the command line.

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
                          solver_options=dict(solver_options or {}))
    job = validate(run_opts, task_options, prior=prior)  # the CLI's checks and messages

    tensor, loaded = _as_loaded(image)
    path = Path(getattr(loaded, "path", None) or "image")
    prepared = inputs.prepare_input(job, tensor, path=path, loaded=loaded, extensions=job.task.input_extensions())
    run_device = prior.device if prior is not None else None
    if run_device is None:
        from .run.runtime import resolve_device

        run_device = resolve_device(device)
    inputs.check_memory(job, [prepared], run_device)
    prior = restoring.ready_prior(job, prior if prior is not None else _get_prior(job))
    task_now = job.task.with_noise_sigma(prepared.noise_sigma)
    [result] = restoring.restore_batch(prior, job.solver, task_now, [tensor], mask=prepared.mask,
                                       num_samples=job.num_samples, seed=seed, progress=progress)
    assumed = task_now.noise_sigma if task_now.noise == "gaussian" else None
    return Restoration(image=result.image, samples=result.samples, std=result.std, measurement=result.measurement,
                       reference=result.reference, metrics=result.metrics, source=loaded, noise_sigma=assumed,
                       settings=job.solver.settings(), resolved=result.resolved)
