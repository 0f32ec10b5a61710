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

from . import budget, masks, tasks
from .errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .progress import ProgressCallback

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
        from . import engine, imageio

        if self.std is None:
            raise UsageError("no uncertainty map: restore with num_samples of 2 or more")
        return imageio.save_image(engine.std_map_image(self.std), path, overwrite=overwrite).path


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


def _mask_tensor(mask: Any, size: tuple[int, int]) -> torch.Tensor:
    import numpy as np
    import torch

    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).to("cpu")
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    w, h = size
    if t.dim() != 2 or tuple(t.shape) != (h, w):
        raise UsageError(f"mask of shape {tuple(t.shape)} does not fit a {w}x{h} image (need (H, W) = ({h}, {w}))")
    return (t > 0.5 if t.is_floating_point() else t.bool())[None, None]


def _get_prior(model: str, device: str, dtype: str, offline: bool | None, registry: str | Path | None) -> Any:
    from . import engine

    dev = engine.resolve_device(device)
    dt = engine.resolve_dtype(dtype, dev)
    key = (model, str(dev), str(dt), str(registry or ""))
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()  # keep one model in memory, not every one ever used
        _PRIOR_CACHE[key] = engine.load_prior(model, device=dev, dtype=dt, offline=offline,
                                              registry=engine.load_registry(registry))
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

    Raises the same errors as the CLI (``diffrestore.errors``), with the same messages.
    """
    from . import engine
    from .plan import RunOptions

    task = tasks.canonical_task(task)
    mask_value = task_options.pop("mask", None)
    mask_is_path = isinstance(mask_value, (str, Path))
    if mask_value is not None and mask_is_path:
        task_options["mask"] = Path(mask_value)
    if task_options.get("box") is not None and isinstance(task_options["box"], (list, tuple)):
        task_options["box"] = tasks.parse_box(",".join(str(int(v)) for v in task_options["box"]))
    opts = tasks.TaskOptions.from_mapping(task_options)
    if mask_value is not None and not mask_is_path:
        if task != "inpaint":
            raise UsageError(f"mask only applies to inpaint, not to {task}")
        if opts.box is not None or opts.random_fraction is not None or opts.mask_dir is not None:
            raise UsageError("give one mask source: mask, mask_dir, box or random_fraction")
    run_opts = RunOptions(task=task, method=method, model=model, preset=preset, steps=steps, seed=seed,
                          num_samples=num_samples, device=device, dtype=dtype, simulate=simulate, offline=offline,
                          registry=Path(registry) if registry is not None else None, prompt=prompt,
                          negative_prompt=negative_prompt, guidance=guidance, tile_overlap=tile_overlap,
                          solver_options=dict(solver_options or {}))
    solver = engine.validate(run_opts, opts, prior=prior)  # the CLI's checks and messages
    if opts.mask_dir is not None:
        raise UsageError("mask_dir is for folders of images (the CLI); pass mask= for one image")

    tensor, loaded = _as_loaded(image)
    simulated = tasks.is_simulated(task, simulate)
    size = (int(tensor.shape[-1]), int(tensor.shape[-2]))
    out_size = tasks.restored_size(task, opts, size, simulate=simulated)
    mask = None
    if task == "inpaint":
        if mask_value is not None and not mask_is_path:
            mask = _mask_tensor(mask_value, out_size)
            if opts.invert_mask:
                mask = ~mask
        else:
            source = masks.mask_source(task, opts, Path(getattr(loaded, "path", "image")), ())
            mask = masks.build_mask(source, opts, out_size, seed=seed, loaded=loaded)

    channels = 3 if task == "colorize" else int(tensor.shape[1])  # a floor: the prior's channels come later
    num_samples = int(run_opts.num_samples)  # the method's default filled in by validate
    budget.check_memory([(1, channels, out_size)], num_samples=num_samples, kernel=tasks.kernel_shape(task, opts),
                        device=prior.device if prior is not None else engine.resolve_device(device),
                        kernel_flag=opts.kernel is None)
    if prior is None:
        prior = _get_prior(model, device, dtype, offline, registry)
    solver.prepare(prior)
    prior = engine.fit_any_size(prior, run_opts, getattr(prior, "device", "cpu"))
    if tasks.estimates_noise(task, opts, simulate=simulate):
        from .noise_estimate import estimate_noise_sigma

        bit_depth = getattr(loaded, "bit_depth", 8)
        opts.noise_sigma = estimate_noise_sigma(tensor, known=None if mask is None else ~mask, bit_depth=bit_depth)
    [result] = engine.restore_batch(prior, solver, task, opts, [tensor], mask=mask, num_samples=num_samples,
                                    seed=seed, simulate=simulate, progress=progress)
    assumed = tasks.noise_sigma(task, opts) if opts.noise == "gaussian" else None
    return Restoration(image=result.image, samples=result.samples, std=result.std, measurement=result.measurement,
                       reference=result.reference, metrics=result.metrics, source=loaded, noise_sigma=assumed)
