"""Restoration tasks: a task name plus its flags -> a measurement operator and a noise model for one image size.

The CLI and the Python API both describe a job as ``(task, TaskOptions)``. This module checks those options
without torch (so bad flags fail before anything heavy loads), then builds the operator and noise model from
``diffrestore.operators`` once the image size is known, and turns the user's file into the measurement ``y``.

What the user's file is, per task (outside ``--simulate``, where the file is always the clean image ``x``):
    inpaint          the picture with holes (pixels under the mask are ignored)
    superres         the low-resolution picture; the result is ``scale`` times larger
    deblur           the blurred picture
    denoise          the noisy picture
    colorize         a grayscale picture (an RGB file is first reduced to its luminance)
    phase-retrieval  always simulated: a Fourier magnitude is not a picture, so the file is the clean object
    hdr              the clipped (over-exposed) picture; the result recovers ``scale`` times the range
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import torch

TASK_NAMES = ("inpaint", "superres", "deblur", "denoise", "colorize", "phase-retrieval", "hdr")
TASK_ALIASES = {"sr": "superres", "phase": "phase-retrieval", "phase_retrieval": "phase-retrieval"}
SR_SCALES = (2, 3, 4, 8)
DOWNSAMPLE_KERNELS = ("bicubic", "box")
BLUR_KINDS = ("gaussian", "motion")
NOISE_KINDS = ("gaussian", "poisson", "none")

#: Defaults in the user's [0, 1] intensity scale. 0.025 is the papers' sigma_y = 0.05 on the [-1, 1] scale.
DEFAULT_NOISE_SIGMA = {"denoise": 0.1}
DEFAULT_NOISE_SIGMA_OTHER = 0.025
DEFAULT_POISSON_RATE = 100.0
DEFAULT_SR_SCALE = 4
DEFAULT_HDR_SCALE = 2.0
#: Blur defaults of the DPS / DAPS papers (61x61 kernels; gaussian sigma 3.0, motion intensity 0.5).
DEFAULT_KERNEL_SIZE = 61
DEFAULT_BLUR_SIGMA = 3.0
DEFAULT_MOTION_INTENSITY = 0.5
DEFAULT_OVERSAMPLING = 2.0
#: --blend feathers the inpainting seam over at most this many pixels
MAX_BLEND = 256

#: Tasks whose measurement lives in image space, so ``y = A(file)`` is well defined and simply drops what the
#: operator discards (the pixels under an inpainting mask, the colour of an RGB file given to colorize).
_APPLY_OPERATOR_TO_FILE = ("inpaint", "colorize")
#: Tasks that always treat the input as the clean image.
ALWAYS_SIMULATED = ("phase-retrieval",)


@dataclass
class TaskOptions:
    """Task flags, with the CLI's names. ``None`` means "the task's default"."""

    mask: Path | None = None
    mask_dir: Path | None = None
    box: tuple[int, int, int, int] | None = None  # x, y, width, height in pixels of the restored image
    random_fraction: float | None = None
    invert_mask: bool = False
    scale: float | None = None  # superres: integer factor; hdr: gain of the clipping operator
    downsample: str = "bicubic"
    blur: str = "gaussian"
    kernel: Path | None = None
    kernel_size: int | None = None
    sigma: float | None = None
    intensity: float | None = None
    oversampling: float | None = None
    noise: str = "gaussian"
    #: [0, 1] scale; "auto" estimates it from each input; None = "auto" for real inputs, the default for --simulate
    noise_sigma: float | str | None = None
    poisson_rate: float | None = None
    blend: int = 0  # inpaint: feather the seam over this many pixels inside the hole (0: keep the known pixels hard)
    #: the --kernel file's kernel once the engine has read it (validation reads it once; no image reads it again)
    loaded_kernel: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TaskOptions:
        """Build from keyword options, refusing names that are not task options (typos must not pass)."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown option(s): {', '.join(unknown)}",
                             hint=f"task options are {', '.join(sorted(known))}")
        opts = cls(**values)
        for name in ("mask", "mask_dir", "kernel"):
            value = getattr(opts, name)
            if value is not None and not isinstance(value, Path):
                setattr(opts, name, Path(value))
        if opts.box is not None and isinstance(opts.box, str):
            opts.box = parse_box(opts.box)
        return opts


def canonical_task(name: str) -> str:
    """The task's canonical name, accepting aliases (``sr``); UsageError for an unknown one."""
    key = name.strip().lower()
    key = TASK_ALIASES.get(key, key)
    if key not in TASK_NAMES:
        raise UsageError(f"unknown task '{name}'", hint=f"use one of {', '.join(TASK_NAMES)}")
    return key


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` (pixels) -> a tuple; UsageError naming the value otherwise."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or values[0] < 0 or values[1] < 0:
        raise UsageError(f"invalid --box '{text}'", hint="give X,Y,WIDTH,HEIGHT in pixels, e.g. --box 8,8,16,12")
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------------
# Validation (no torch)


def _mask_sources(opts: TaskOptions) -> list[str]:
    return [
        flag
        for flag, value in (
            ("--mask", opts.mask),
            ("--mask-dir", opts.mask_dir),
            ("--box", opts.box),
            ("--random-fraction", opts.random_fraction),
        )
        if value is not None
    ]


def validate_options(task: str, opts: TaskOptions, *, simulate: bool = False) -> None:
    """Every check that needs no image: flag ranges and combinations. Raises UsageError."""
    task = canonical_task(task)
    _validate_real_input_options(task, opts, simulate=is_simulated(task, simulate))
    sources = _mask_sources(opts)
    if task != "inpaint":
        if sources or opts.invert_mask:
            raise UsageError(f"{(sources or ['--invert-mask'])[0]} only applies to inpaint, not to {task}")
    elif len(sources) > 1:
        raise UsageError(f"{' and '.join(sources)} cannot be combined", hint="give one mask source")
    if opts.mask is not None and not opts.mask.is_file():
        raise UsageError(f"mask file not found: {opts.mask}")
    if opts.mask_dir is not None and not opts.mask_dir.is_dir():
        raise UsageError(f"mask folder not found: {opts.mask_dir}")
    if opts.random_fraction is not None and not 0.0 < opts.random_fraction < 1.0:
        raise UsageError(f"--random-fraction must be between 0 and 1 (exclusive), got {opts.random_fraction}")
    if opts.box is not None:
        parse_box(",".join(str(v) for v in opts.box))

    if opts.scale is not None:
        if task == "superres":
            if float(opts.scale) not in SR_SCALES:
                raise UsageError(f"--scale {opts.scale:g} is not supported", hint="use 2, 3, 4 or 8")
        elif task == "hdr":
            if not (math.isfinite(opts.scale) and opts.scale > 1.0):
                raise UsageError(f"--scale for hdr must be a number above 1, got {opts.scale:g}")
        else:
            raise UsageError(f"--scale only applies to superres and hdr, not to {task}")
    if opts.downsample not in DOWNSAMPLE_KERNELS:
        raise UsageError(f"unknown --downsample '{opts.downsample}'", hint="use bicubic or box")
    if task != "deblur":
        for flag, value in (("--kernel", opts.kernel), ("--kernel-size", opts.kernel_size), ("--sigma", opts.sigma),
                            ("--intensity", opts.intensity)):
            if value is not None:
                raise UsageError(f"{flag} only applies to deblur, not to {task}")
    if opts.blur not in BLUR_KINDS:
        raise UsageError(f"unknown --blur '{opts.blur}'", hint="use gaussian or motion")
    if opts.kernel is not None:
        if not opts.kernel.is_file():
            raise UsageError(f"kernel file not found: {opts.kernel}")
        if opts.kernel_size is not None or opts.sigma is not None or opts.intensity is not None:
            raise UsageError("--kernel FILE cannot be combined with --kernel-size, --sigma or --intensity",
                             hint="the file defines the kernel")
    if opts.kernel_size is not None and (opts.kernel_size < 1 or opts.kernel_size % 2 == 0):
        raise UsageError(f"--kernel-size must be a positive odd number, got {opts.kernel_size}")
    if opts.sigma is not None and not (math.isfinite(opts.sigma) and opts.sigma > 0):
        raise UsageError(f"--sigma must be positive, got {opts.sigma:g}")
    if opts.sigma is not None and opts.blur != "gaussian":
        raise UsageError("--sigma applies to --blur gaussian", hint="motion blur takes --intensity")
    if opts.intensity is not None:
        if opts.blur != "motion":
            raise UsageError("--intensity applies to --blur motion")
        if not 0.0 < opts.intensity <= 1.0:
            raise UsageError(f"--intensity must be in (0, 1], got {opts.intensity:g}")
    if opts.oversampling is not None:
        if task != "phase-retrieval":
            raise UsageError(f"--oversampling only applies to phase-retrieval, not to {task}")
        if not opts.oversampling >= 1.0:
            raise UsageError(f"--oversampling must be at least 1, got {opts.oversampling:g}")

    if opts.noise not in NOISE_KINDS:
        raise UsageError(f"unknown --noise '{opts.noise}'", hint="use gaussian, poisson or none")
    if opts.noise_sigma is not None:
        if opts.noise != "gaussian":
            raise UsageError(f"--noise-sigma applies to gaussian noise, not to --noise {opts.noise}")
        if opts.noise_sigma != "auto" and not 0.0 <= opts.noise_sigma <= 1.0:
            raise UsageError(
                f"--noise-sigma must be in [0, 1] (intensity scale of a [0, 1] image), got {opts.noise_sigma:g}",
                hint="a paper's sigma on the [-1, 1] scale is halved: 0.05 there is 0.025 here",
            )
    if opts.poisson_rate is not None:
        if opts.noise != "poisson":
            raise UsageError("--poisson-rate applies to --noise poisson")
        if not opts.poisson_rate > 0:
            raise UsageError(f"--poisson-rate must be positive, got {opts.poisson_rate:g}")


def _validate_real_input_options(task: str, opts: TaskOptions, *, simulate: bool) -> None:
    """--noise-sigma auto and --blend are about real inputs; parse "auto" or a number given as text."""
    if isinstance(opts.noise_sigma, str):
        text = opts.noise_sigma.strip().lower()
        if text == "auto":
            opts.noise_sigma = "auto"
        else:
            try:
                opts.noise_sigma = float(text)
            except ValueError:
                raise UsageError(
                    f"invalid --noise-sigma '{opts.noise_sigma}'",
                    hint="give auto (estimate it from the image) or a number on the [0, 1] scale",
                ) from None
    if opts.noise_sigma == "auto" and simulate:
        raise UsageError("--noise-sigma auto estimates a real input's noise; --simulate adds noise of a known level",
                         hint=f"give a number with --simulate (default {DEFAULT_NOISE_SIGMA_OTHER} on [0, 1])")
    if opts.blend:
        if task != "inpaint":
            raise UsageError(f"--blend only applies to inpaint, not to {task}")
        if not 0 <= int(opts.blend) <= MAX_BLEND:
            raise UsageError(f"--blend must be between 0 and {MAX_BLEND} pixels, got {opts.blend}")
        if simulate:
            raise UsageError("--blend applies to real inputs: with --simulate the posterior sample is written as is")


def estimates_noise(task: str, opts: TaskOptions, *, simulate: bool) -> bool:
    """Whether each input's Gaussian noise level is estimated from the image itself (the default for real
    inputs: a file is not the papers' simulation, whose 0.025 would let known pixels move by that much)."""
    if opts.noise != "gaussian" or is_simulated(task, simulate):
        return False
    return opts.noise_sigma is None or opts.noise_sigma == "auto"


def noise_sigma(task: str, opts: TaskOptions) -> float:
    """The Gaussian noise level in [0, 1] intensity units that this run assumes (and simulates): the number given,
    else the task's simulation default. Estimated levels are put into ``opts`` by the engine first."""
    if opts.noise_sigma is not None and opts.noise_sigma != "auto":
        return float(opts.noise_sigma)
    return DEFAULT_NOISE_SIGMA.get(canonical_task(task), DEFAULT_NOISE_SIGMA_OTHER)


def sr_scale(opts: TaskOptions) -> int:
    return int(opts.scale) if opts.scale is not None else DEFAULT_SR_SCALE


def restored_size(task: str, opts: TaskOptions, input_size: tuple[int, int], *, simulate: bool) -> tuple[int, int]:
    """(width, height) of the restored image for an input of ``input_size``."""
    w, h = input_size
    if canonical_task(task) == "superres" and not simulate:
        s = sr_scale(opts)
        return w * s, h * s
    return w, h


def kernel_shape(task: str, opts: TaskOptions) -> tuple[int, int] | None:
    """(kh, kw) of the blur kernel this run uses (the file's once loaded), or None for tasks without one."""
    if canonical_task(task) != "deblur":
        return None
    if opts.loaded_kernel is not None:
        return int(opts.loaded_kernel.shape[0]), int(opts.loaded_kernel.shape[1])
    if opts.kernel is not None:
        return None  # a file not read yet
    size = opts.kernel_size or DEFAULT_KERNEL_SIZE
    return size, size


def is_simulated(task: str, simulate: bool) -> bool:
    return simulate or canonical_task(task) in ALWAYS_SIMULATED


def describe(task: str, opts: TaskOptions, *, simulate: bool = False) -> dict[str, Any]:
    """A JSON-friendly summary of the operator and noise this run uses (for --json and logs)."""
    task = canonical_task(task)
    info: dict[str, Any] = {"task": task}
    if task == "superres":
        info.update(scale=sr_scale(opts), downsample=opts.downsample)
    elif task == "deblur":
        if opts.kernel is not None:
            info.update(kernel=str(opts.kernel))
        else:
            info.update(blur=opts.blur, kernel_size=opts.kernel_size or DEFAULT_KERNEL_SIZE)
            if opts.blur == "gaussian":
                info["sigma"] = opts.sigma or DEFAULT_BLUR_SIGMA
            else:
                info["intensity"] = opts.intensity or DEFAULT_MOTION_INTENSITY
    elif task == "hdr":
        info["scale"] = opts.scale or DEFAULT_HDR_SCALE
    elif task == "phase-retrieval":
        info["oversampling"] = opts.oversampling or DEFAULT_OVERSAMPLING
    info["noise"] = opts.noise
    if opts.noise == "gaussian":
        info["noise_sigma"] = "auto" if estimates_noise(task, opts, simulate=simulate) else noise_sigma(task, opts)
    elif opts.noise == "poisson":
        info["poisson_rate"] = opts.poisson_rate or DEFAULT_POISSON_RATE
    return info


# --------------------------------------------------------------------------------------------------------------
# Operator, noise, measurement (torch)


def build_noise(task: str, opts: TaskOptions):
    """The noise model in tensor units (see operators.GaussianNoise: sigma on the [0, 1] scale)."""
    from . import operators

    sigma = noise_sigma(task, opts)
    kind = "none" if opts.noise == "gaussian" and sigma == 0.0 else opts.noise
    return operators.build_noise(kind, sigma=sigma, rate=float(opts.poisson_rate or DEFAULT_POISSON_RATE))


def operator_spec(task: str, opts: TaskOptions, *, mask: torch.Tensor | None = None) -> tuple[str, dict[str, Any]]:
    """(operator name, parameters) for ``operators.build_operator``."""
    task = canonical_task(task)
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpaint needs a mask")
        return "inpaint", {"mask": mask}
    if task == "superres":
        return "sr", {"factor": sr_scale(opts), "kernel": opts.downsample}
    if task == "deblur":
        if opts.loaded_kernel is not None:
            return "kernel_blur", {"kernel": opts.loaded_kernel}
        if opts.kernel is not None:
            return "kernel_blur", {"kernel_path": str(opts.kernel)}
        size = opts.kernel_size or DEFAULT_KERNEL_SIZE
        if opts.blur == "motion":
            return "motion_blur", {"kernel_size": size, "intensity": opts.intensity or DEFAULT_MOTION_INTENSITY}
        return "gaussian_blur", {"kernel_size": size, "sigma": opts.sigma or DEFAULT_BLUR_SIGMA}
    if task == "denoise":
        return "identity", {}
    if task == "colorize":
        return "colorize", {}
    if task == "phase-retrieval":
        return "phase_retrieval", {"oversampling": opts.oversampling or DEFAULT_OVERSAMPLING}
    return "hdr", {"scale": float(opts.scale or DEFAULT_HDR_SCALE)}


def build_operator(
    task: str,
    opts: TaskOptions,
    x_shape: tuple[int, int, int],
    *,
    seed: int,
    mask: torch.Tensor | None = None,
    input_channels: int | None = None,
):
    """The operator for a restored image of shape ``x_shape`` = (C, H, W) measured by a file of
    ``input_channels`` channels (default: C).

    A gray file restored with an RGB prior is one look at the luminance: the task's operator is built for one
    channel and composed with the BT.601 luminance of the 3-channel x (``Compose(A, Colorize)``), so one noise
    draw counts once in the likelihood (copying the gray file into three channels would count it three times).
    Random operator parts (the motion-blur kernel) come from a generator seeded with ``seed`` alone, so every
    image of a run sees the same kernel and a rerun sees it again.
    """
    from . import operators
    from .runtime import make_generator

    name, params = operator_spec(task, opts, mask=mask)
    channels, height, width = (int(v) for v in x_shape)
    if canonical_task(task) != "colorize" and input_channels == 1 and channels == 3:
        measured = operators.build_operator(name, (1, height, width), generator=make_generator(seed), **params)
        return operators.Compose(measured, operators.Colorize((3, height, width)))
    return operators.build_operator(name, tuple(x_shape), generator=make_generator(seed), **params)


def x_channels(task: str, input_channels: int, prior_channels: int) -> int:
    """How many channels the restored image has while the solver works on it."""
    if canonical_task(task) == "colorize":
        return prior_channels
    return prior_channels if input_channels in (1, prior_channels) else input_channels


def check_channels(task: str, input_channels: int, prior_channels: int, name: str) -> None:
    """UsageError when the prior cannot represent this image."""
    task = canonical_task(task)
    if task == "colorize" and prior_channels != 3:
        raise UsageError(f"colorize needs an RGB model, but {name} has {prior_channels} channel(s)")
    if input_channels != prior_channels and not (input_channels == 1 and prior_channels == 3):
        if task == "colorize" and input_channels in (1, 3):
            return
        raise UsageError(
            f"the image has {input_channels} channel(s) but model {name} has {prior_channels}",
            hint="use a model with matching channels",
        )


def to_output_channels(task: str, x: torch.Tensor, input_channels: int) -> torch.Tensor:
    """Back to the input's channels: a gray input gets the BT.601 luminance of an RGB x (the quantity its
    operator measured); colorize outputs RGB."""
    if canonical_task(task) == "colorize" or x.shape[1] == input_channels:
        return x
    if input_channels == 1:
        from .operators import Colorize  # the luminance the gray file's operator measured

        return Colorize(tuple(x.shape[1:])).to(x.device)(x)
    return x


def measurement(
    task: str,
    operator: Any,
    noise: Any,
    image: torch.Tensor,
    *,
    channels: int,
    simulate: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(y, reference): the measurement for one image (batch 1) and, when simulating, the clean image.

    ``image`` is the loaded file in tensor units (1, C, H, W). Simulating draws the noise from ``generator``.
    """
    import torch

    from . import imageio

    task = canonical_task(task)
    with torch.no_grad():
        if is_simulated(task, simulate):
            x = imageio.to_channels(image, channels)
            y = noise.sample(operator(x), generator)
            return y.to(torch.float32), x
        if task == "colorize":
            # A gray file is the luminance already; an RGB one is reduced by the operator itself.
            y = image if image.shape[1] == 1 else operator(image)
            return y.to(torch.float32), None
        if task in _APPLY_OPERATOR_TO_FILE:
            return operator(imageio.to_channels(image, channels)).to(torch.float32), None
        # The file is y itself (a gray file on an RGB prior is measured through the luminance: see build_operator)
        return image.to(torch.float32), None
