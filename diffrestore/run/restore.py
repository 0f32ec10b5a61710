"""From a loaded prior and a batch of same-size images to posterior samples: the prior made ready for a job
(``ready_prior``: the solver's own set-up, tiling), the fit of an image to it (``check_fit``), and
``restore_batch``, the one place a batch of images becomes posterior samples. The engine (files) and the Python
API (arrays, tensors) both call these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DiffrestoreError, ModelError
from .runtime import image_identity, measurement_generator, sample_generators

if TYPE_CHECKING:
    import torch

    from ..solvers.base import ProgressCallback
    from ..tasks import Task
    from .preflight import Job

#: The uncertainty map stores gain * std (std of the samples on the [0, 1] scale), clamped: white = std >= 0.25.
STD_MAP_GAIN = 4.0


def load_prior(
    name: str, *, device: torch.device, dtype: torch.dtype, offline: bool | None = None, echo: Any = None,
    registry: Any = None,
) -> Any:
    """The prior for ``--model``: a registry name (of ``registry``, default the shipped models.toml) or a local
    model folder. ModelError when it cannot load."""
    from ..priors.load import load_prior as load

    try:
        return load(name, device=device, dtype=dtype, offline=offline, echo=echo, registry=registry)
    except DiffrestoreError:
        raise
    except Exception as error:  # a model folder that is not what it claims to be
        raise ModelError(f"cannot load model '{name}': {error}") from error


def stand_in_prior(job: Job, device: Any) -> Any:
    """The stand-in of a classical reconstruction (fbp, sart, tv: no network, nothing loads), else None."""
    stand_in = getattr(job.solver, "stand_in_prior", None)
    return stand_in(device) if stand_in is not None else None


def ready_prior(job: Job, prior: Any) -> Any:
    """The loaded prior made ready for ``job``: the solver's set-up that depends on it (e.g. the prompt, encoded
    once: its errors end the run in one line), and a fixed-size prior tiled to take any image size."""
    from ..priors.tiled import tile_prior

    job.solver.prepare(prior)
    opts = job.options
    return tile_prior(prior, overlap_px=opts.tile_overlap, batch_size=opts.batch_size,
                      device=getattr(prior, "device", "cpu"))


def check_fit(prior: Any, solver: Any, task: Task, size: tuple[int, int], channels: int, *,
              name: str) -> tuple[int, int, int]:
    """The shape (C, H, W) the solver works on for an input of ``size`` = (width, height) and ``channels``;
    UsageError when the prior or the method cannot take this image (channels, a fixed native size)."""
    prior_channels = int(prior.channels)
    task.check_channels(channels, prior_channels, name)
    solver.check_channels(channels, prior_channels)
    w, h = task.restored_size(size)
    shape = (task.x_channels(channels, prior_channels), h, w)
    if hasattr(prior, "check_image_shape"):
        prior.check_image_shape(shape)
    return shape


@dataclass
class Restored:
    """What one image's restoration produced (tensor units, CPU, float32, in the input's channels)."""

    image: torch.Tensor  # (1, C, H, W): the output (the sample mean when there are several samples)
    samples: torch.Tensor  # (K, C, H, W)
    std: torch.Tensor | None  # (1, 1, H, W) per-pixel std of the samples on the [0, 1] scale, mean over channels
    measurement: torch.Tensor  # (1, ...) y
    reference: torch.Tensor | None  # the clean image when simulating
    metrics: dict[str, float]
    resolved: dict[str, Any] = field(default_factory=dict)  # what the solver derived for this image (Solver.resolved)


def restore_batch(
    prior: Any,
    solver: Any,
    task: Task,
    images: list[torch.Tensor],
    *,
    mask: torch.Tensor | None,
    num_samples: int = 1,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    scorer: Any = None,
) -> list[Restored]:
    """Restore same-size images (each (1, C, H, W), tensor units) that share one operator, in one solver call:
    ``num_samples`` posterior samples each. ``task``: as these images need it (with their estimated noise level).

    Each image's samples and simulated noise come from its own generators, seeded from ``seed`` and the image's
    pixels, so an image's result does not depend on what else is in the batch. ``scorer``: the metrics' ``Scorer``
    (``run/scoring``) that scores a simulated image's output against its clean image; None scores PSNR and SSIM."""
    import torch

    from .. import metrics
    from ..operators import Problem
    from ..priors.base import PerItemCalls
    from ..tasks.known_pixels import keep_known

    in_c, h, w = (int(v) for v in images[0].shape[1:])
    name = getattr(prior, "name", None) or "the model"
    x_shape = check_fit(prior, solver, task, (w, h), in_c, name=name)
    operator = task.operator(x_shape, seed=seed, mask=mask, input_channels=in_c)
    noise = task.noise_model()
    identities = [image_identity(image) for image in images]
    ys, refs = [], []
    for image, identity in zip(images, identities, strict=True):
        y, ref = task.measurement(operator, noise, image.to(torch.float32), channels=x_shape[0],
                                  generator=measurement_generator(seed, identity))
        ys.append(y)
        refs.append(ref)
    generators = [g for identity in identities for g in sample_generators(seed, identity, num_samples)]
    device = getattr(prior, "device", torch.device("cpu"))
    y_batch = torch.cat([y.expand(num_samples, *y.shape[1:]) for y in ys]).contiguous().to(device)
    problem = Problem(operator=operator.to(device), noise=noise, y=y_batch)
    resolved = solver.resolved(prior, x_shape, problem)  # what it derives from the prior and the problem
    if torch.device(device).type == "cpu" and len(generators) > 1:
        prior = PerItemCalls(prior)  # bitwise batch-independent results (see PerItemCalls)
    particles = {"samples_per_image": num_samples} if getattr(solver, "particles_interact", False) else {}
    x = solver.run(prior, problem, generator=generators, progress=progress, **particles)  # (DWGF: one cloud each)
    x = task.to_output(task.spec.clamp_output(x.detach().to("cpu", torch.float32)), in_c)

    keep = task.spec.keeps_known_pixels and not task.simulate and mask is not None  # a real photo keeps its own
    results = []
    for i in range(len(images)):
        samples = x[i * num_samples : (i + 1) * num_samples]
        if keep:
            samples = keep_known(samples, images[i].to(torch.float32), mask, int(task.params["blend"]))
        mean = samples.mean(dim=0, keepdim=True)
        if keep:
            mean = torch.where(mask.to(torch.bool), mean, images[i].to(torch.float32))  # exact, not a mean of copies
        std = None
        if num_samples > 1:
            std = ((samples + 1.0) / 2.0).std(dim=0, keepdim=True).mean(dim=1, keepdim=True)
        ref = None if refs[i] is None else task.to_output(refs[i], in_c)
        scores: dict[str, float] = {}
        if ref is not None:
            scored, scored_ref = task.spec.scored(mean, ref)  # MRI: magnitudes on the reference's maximum
        if ref is not None and scorer is not None:
            scores = {name: float(values[0]) for name, values in scorer.score_images(scored, scored_ref).items()}
        elif ref is not None:
            scores = {"psnr": float(metrics.psnr(scored, scored_ref)[0]),
                      "ssim": float(metrics.ssim(scored, scored_ref)[0])}
        results.append(Restored(image=mean, samples=samples, std=std, measurement=ys[i], reference=ref,
                                metrics=scores, resolved=resolved))
    return results


def std_map_image(std: torch.Tensor) -> torch.Tensor:
    """The std map as a gray image in tensor units: value = clamp(STD_MAP_GAIN * std, 0, 1), no rescaling."""
    return (std * STD_MAP_GAIN).clamp(0.0, 1.0) * 2.0 - 1.0
