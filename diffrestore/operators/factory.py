"""Operators by name: ``build_operator`` turns a task's name and parameters (as flags deliver them) into an
operator for one image shape, checking every parameter with a one-line ``UsageError``; and
``image_shape_for_measurement`` says which image shape a user's measurement file belongs to.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import UsageError
from .base import Operator, OperatorKind
from .bkse import BkseBlur
from .blur import BLUR_BOUNDARIES, BlurOperator
from .colour import Colorize
from .identity import Identity
from .inpaint import Inpaint, box_mask, random_mask
from .kernel_fields import defocus_field, shake_field
from .kernels import gaussian_kernel, motion_blur_kernel
from .mri import MultiCoilMRI, simulated_maps
from .mri_masks import MASK_KINDS, build_mask, mask_from_array
from .nonlinear import HighDynamicRange, PhaseRetrieval
from .radon import ParallelBeamCT
from .resample import SR_KERNELS, SuperResolution
from .varying_blur import VaryingBlurOperator

#: Every name ``build_operator`` accepts; the tests are parametrised over this tuple.
OPERATOR_NAMES: tuple[str, ...] = (
    "identity",
    "inpaint",
    "sr",
    "gaussian_blur",
    "motion_blur",
    "kernel_blur",
    "varying_blur",
    "colorize",
    "phase_retrieval",
    "hdr",
    "bkse",
    "ct",
    "mri",
)
#: The parameters each operator accepts; any other is refused with the accepted list, so typos do not pass.
_PARAMS: dict[str, tuple[str, ...]] = {
    "identity": (),
    "inpaint": ("mask", "box", "fraction"),
    "sr": ("factor", "kernel"),
    "gaussian_blur": ("kernel_size", "sigma", "boundary"),
    "motion_blur": ("kernel_size", "intensity", "boundary"),
    "kernel_blur": ("kernel", "kernel_path", "boundary"),
    "varying_blur": ("kernels", "field", "grid", "kernel_size", "boundary"),
    "colorize": (),
    "phase_retrieval": ("oversampling",),
    "hdr": ("scale",),
    "bkse": ("weights", "code"),
    "ct": ("views", "angles_deg", "detectors"),
    "mri": ("mask", "sampling", "acceleration", "center_fraction", "coils", "coil_maps"),
}


def _int_param(op: str, key: str, value: Any, low: int, high: int | None = None, odd: bool = False) -> int:
    # Numbers and numeric strings (as flags arrive) are accepted; 4.0 is 4, 2.5 and True are not integers.
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and number == int(number)
    if ok:
        value = int(number)
        ok = value >= low and (high is None or value <= high) and (not odd or value % 2 == 1)
    if not ok:
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise UsageError(f"{op}: {key} must be an {'odd ' if odd else ''}integer in {span}, got {value!r}")
    return int(value)


def _float_param(op: str, key: str, value: Any, low: float, high: float | None = None, low_open: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    below = number <= low if low_open else number < low
    if isinstance(value, bool) or not math.isfinite(number) or below or (high is not None and number > high):
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise UsageError(f"{op}: {key} must be a number {bound}, got {value!r}")
    return number


def _boundary(op: str, params: dict[str, Any]) -> str:
    boundary = params.get("boundary", "reflect")
    if boundary not in BLUR_BOUNDARIES:
        raise UsageError(f"{op}: boundary must be one of {', '.join(BLUR_BOUNDARIES)}, got {boundary!r}")
    return boundary


#: the generated kernel fields of ``varying_blur`` and their default kernel sizes
KERNEL_FIELDS: dict[str, int] = {"shake": 31, "defocus": 15}


def _kernel_grid(params: dict[str, Any], size: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
    """``varying_blur``'s kernels: the given grid, or a field drawn once from ``generator``."""
    has_kernels, field = params.get("kernels") is not None, params.get("field")
    if has_kernels == (field is not None):
        raise UsageError("varying_blur: give exactly one of kernels (a grid array) or field (shake or defocus)")
    if has_kernels:
        if params.get("grid") is not None or params.get("kernel_size") is not None:
            raise UsageError("varying_blur: grid and kernel_size apply to a generated field, not to given kernels")
        return torch.as_tensor(params["kernels"])
    if field not in KERNEL_FIELDS:
        raise UsageError(f"varying_blur: field must be one of {', '.join(KERNEL_FIELDS)}, got {field!r}")
    nodes = _int_param("varying_blur", "grid", params.get("grid", 4) or 4, 1, 64)
    kernel_size = _int_param("varying_blur", "kernel_size", params.get("kernel_size") or KERNEL_FIELDS[field], 3,
                             odd=True)
    if nodes > min(size):
        raise UsageError(f"varying_blur: a {nodes} x {nodes} grid is finer than the {size[0]} x {size[1]} image")
    make = shake_field if field == "shake" else defocus_field
    return make(nodes, nodes, size, kernel_size, generator)


def build_operator(
    name: str, image_shape: tuple[int, int, int], *, generator: torch.Generator | None = None, **params: Any
) -> Operator:
    """Build operator ``name`` for images of shape ``image_shape = (C, H, W)``.

    Parameters per operator (defaults are the papers' settings where they have one):

    - ``identity``: none (denoising).
    - ``inpaint``: one of ``mask`` (bool tensor/array ``(H, W)`` or ``(1|N, 1, H, W)``, True = missing),
      ``box = (x, y, width, height)`` in pixels (left, top, width, height: the CLI's ``--box X,Y,W,H``),
      ``fraction`` (share of pixels missing at random, drawn from ``generator``); none given: a centred box of
      half the height and width (128 x 128 on 256 x 256).
    - ``sr``: ``factor`` integer 2..16 (papers: 2, 3, 4, 8; default 4), ``kernel`` ``"bicubic"`` (default) or
      ``"box"``. Output ``ceil(H / factor) x ceil(W / factor)``.
    - ``gaussian_blur``: ``kernel_size`` odd (default 61), ``sigma`` in pixels (default 3.0), ``boundary``.
    - ``motion_blur``: ``kernel_size`` odd (default 61), ``intensity`` in [0, 1] (default 0.5), ``boundary``;
      the kernel is drawn once from ``generator`` (None: seed 0).
    - ``kernel_blur``: ``kernel`` (2-D tensor/array) or ``kernel_path`` (``.npy`` or an image), normalised to sum 1;
      ``boundary``.
    - ``varying_blur``: ``kernels`` (a (rows, cols, kh, kw) grid, each normalised to sum 1), or ``field``
      ``"shake"`` / ``"defocus"`` drawn once from ``generator`` on a ``grid`` x ``grid`` grid (default 4) of
      ``kernel_size`` kernels (default 31 / 15; see ``operators.kernel_fields``); ``boundary``.
    - ``colorize``: none; needs 3 channels; output has 1 channel.
    - ``phase_retrieval``: ``oversampling`` >= 1 (default 2.0).
    - ``hdr``: ``scale`` > 0 (default 2.0).
    - ``bkse``: bkse's learned nonlinear blur (``operators.bkse.BkseBlur``): ``weights`` (required: a
      checkpoint path, a state dict or a ``BkseGenerator``), ``code`` (a kernel code (1, 512, H'/128, W'/128);
      default: drawn once from ``generator``, N(0, 1.2^2)).
    - ``ct``: parallel-beam projections (``operators.radon``): ``views`` equally spaced angles over [0, 180)
      degrees (integer >= 1, default 30) or ``angles_deg`` (a sequence of degrees, then ``views`` may only
      repeat its length); ``detectors`` bins (default ``ceil(sqrt(2) * max(H, W))``). Output ``(C, D, V)``.
    - ``mri``: multi-coil Cartesian k-space of a complex image (``operators.mri``; needs 2 channels, real and
      imaginary): ``mask`` (a 2-D 0/1 array, 1 = sampled) or ``sampling`` ``"random"`` (default),
      ``"equispaced"``, ``"gaussian"`` (lines) or ``"poisson"`` (2-D) at ``acceleration`` >= 1 (default 4) with
      ``center_fraction`` (default InverseBench's: 0.08 up to 6x, else 0.04), drawn once from ``generator``;
      ``coil_maps`` (complex (C, H, W)) or ``coils`` simulated birdcage maps (default 1: single coil, maps of
      ones). Output ``(2C, H, W)``.

    Blur ``boundary`` is ``"reflect"`` (default), ``"replicate"`` or ``"circular"`` (see ``operators.blur``).
    Bad names or parameters raise ``UsageError`` with a one-line message.
    """
    if name not in OPERATOR_NAMES:
        raise UsageError(f"unknown operator '{name}' (choose one of: {', '.join(OPERATOR_NAMES)})")
    try:
        channels, height, width = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise UsageError(f"image_shape must be (C, H, W), got {image_shape!r}") from None
    if min(channels, height, width) < 1:
        raise UsageError(f"image_shape must be positive (C, H, W), got {tuple(image_shape)}")
    shape = (channels, height, width)
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        accepted = ", ".join(_PARAMS[name]) or "none"
        raise UsageError(f"unknown parameter(s) {', '.join(unknown)} for operator '{name}' (accepted: {accepted})")

    if name == "identity":
        return Identity(shape)
    if name == "inpaint":
        given = [key for key in ("mask", "box", "fraction") if params.get(key) is not None]
        if len(given) > 1:
            raise UsageError(f"inpaint: give only one of mask, box, fraction (got {', '.join(given)})")
        if "mask" in given:
            return Inpaint(shape, torch.as_tensor(params["mask"]))
        if "box" in given:
            box = params["box"]
            if isinstance(box, str):  # "x,y,width,height" as typed on a command line
                box = box.replace(" ", "").split(",")
            try:
                left, top, box_w, box_h = (_int_param(name, "box", v, 0) for v in box)
            except (TypeError, ValueError, UsageError):
                raise UsageError(
                    f"inpaint: box must be four integers (x, y, width, height), got {params['box']!r}"
                ) from None
            return Inpaint(shape, box_mask((height, width), top, left, box_h, box_w))
        if "fraction" in given:
            fraction = _float_param(name, "fraction", params["fraction"], 0.0, 1.0, low_open=False)
            if fraction >= 1.0:
                raise UsageError(f"inpaint: fraction must be below 1 (some pixels must be known), got {fraction}")
            return Inpaint(shape, random_mask((height, width), fraction, generator))
        box_h, box_w = max(1, height // 2), max(1, width // 2)
        return Inpaint(shape, box_mask((height, width), (height - box_h) // 2, (width - box_w) // 2, box_h, box_w))
    if name == "sr":
        factor = _int_param(name, "factor", params.get("factor", 4), 2, 16)
        kernel = params.get("kernel", "bicubic")
        if kernel not in SR_KERNELS:
            raise UsageError(f"sr: kernel must be one of {', '.join(SR_KERNELS)}, got {kernel!r}")
        return SuperResolution(shape, factor, kernel)
    if name == "gaussian_blur":
        size = _int_param(name, "kernel_size", params.get("kernel_size", 61), 1, odd=True)
        sigma = _float_param(name, "sigma", params.get("sigma", 3.0), 0.0)
        operator = BlurOperator(
            shape, gaussian_kernel(size, sigma), _boundary(name, params), kind=OperatorKind.GAUSSIAN_BLUR
        )
    elif name == "motion_blur":
        size = _int_param(name, "kernel_size", params.get("kernel_size", 61), 3, odd=True)
        intensity = _float_param(name, "intensity", params.get("intensity", 0.5), 0.0, 1.0, low_open=False)
        kernel = motion_blur_kernel(size, intensity, generator)
        operator = BlurOperator(shape, kernel, _boundary(name, params), kind=OperatorKind.MOTION_BLUR)
    elif name == "kernel_blur":
        has_kernel, has_path = params.get("kernel") is not None, params.get("kernel_path") is not None
        if has_kernel == has_path:
            raise UsageError("kernel_blur: give exactly one of kernel (an array) or kernel_path (a .npy or image file)")
        if has_path:  # file reading (formats, checks, bomb guard) belongs to imageio
            from ..imageio import load_kernel

            kernel = load_kernel(params["kernel_path"])
        else:
            kernel = torch.as_tensor(params["kernel"])
        operator = BlurOperator(shape, kernel, _boundary(name, params), kind=OperatorKind.KERNEL_BLUR)
    elif name == "varying_blur":
        operator = VaryingBlurOperator(shape, _kernel_grid(params, (height, width), generator),
                                       _boundary(name, params))
        operator.kind = OperatorKind.VARYING_BLUR
    elif name == "colorize":
        return Colorize(shape)
    elif name == "phase_retrieval":
        oversampling = _float_param(name, "oversampling", params.get("oversampling", 2.0), 1.0, low_open=False)
        return PhaseRetrieval(shape, oversampling)
    elif name == "bkse":
        if params.get("weights") is None:
            raise UsageError("bkse: weights are required (bkse's GOPRO_wVAE.pth: a path, a state dict or a generator)")
        return BkseBlur(shape, params["weights"], code=params.get("code"), generator=generator)
    elif name == "ct":
        return _ct_operator(shape, params)
    elif name == "mri":
        return _mri_operator(shape, params, generator)
    else:  # hdr
        return HighDynamicRange(shape, _float_param(name, "scale", params.get("scale", 2.0), 0.0))
    operator.name = name
    return operator


def _ct_angles(params: dict[str, Any]) -> tuple[float, ...]:
    """``ct``'s view angles in degrees: ``angles_deg`` as given, else ``views`` equally spaced (default 30)."""
    from .radon import view_angles

    angles = params.get("angles_deg")
    views = params.get("views")
    if angles is None:
        return view_angles(_int_param("ct", "views", 30 if views is None else views, 1))
    try:
        angles = tuple(float(a) for a in (angles.tolist() if hasattr(angles, "tolist") else angles))
    except (TypeError, ValueError):
        raise UsageError(f"ct: angles_deg must be a sequence of numbers in degrees, got {angles!r}") from None
    if not angles or not all(math.isfinite(a) for a in angles):
        raise UsageError(f"ct: angles_deg must be a non-empty sequence of finite degrees, got {angles!r}")
    if views is not None and _int_param("ct", "views", views, 1) != len(angles):
        raise UsageError(f"ct: views={views} but angles_deg lists {len(angles)} angles")
    return angles


def _ct_operator(shape: tuple[int, int, int], params: dict[str, Any]) -> ParallelBeamCT:
    detectors = params.get("detectors")
    detectors = None if detectors is None else _int_param("ct", "detectors", detectors, 1)
    return ParallelBeamCT(shape, _ct_angles(params), detectors=detectors)


def _mri_operator(shape: tuple[int, int, int], params: dict[str, Any],
                  generator: torch.Generator | None) -> MultiCoilMRI:
    channels, height, width = shape
    if channels != 2:
        raise UsageError(f"mri needs complex images as 2 channels (real, imaginary), got {channels} channel(s)")
    if params.get("mask") is not None:
        extra = [k for k in ("sampling", "acceleration", "center_fraction") if params.get(k) is not None]
        if extra:
            raise UsageError(f"mri: a given mask takes no {', '.join(extra)}")
        mask = mask_from_array(params["mask"], (height, width))
    else:
        sampling = params.get("sampling") or "random"
        if sampling not in MASK_KINDS:
            raise UsageError(f"mri: sampling must be one of {', '.join(MASK_KINDS)}, got {sampling!r}")
        acceleration = _float_param("mri", "acceleration", params.get("acceleration", 4.0), 1.0, 64.0,
                                    low_open=False)
        fraction = params.get("center_fraction")
        fraction = None if fraction is None else _float_param("mri", "center_fraction", fraction, 0.0, 1.0,
                                                              low_open=False)
        mask = build_mask(sampling, (height, width), acceleration, center_fraction=fraction, generator=generator)
    if params.get("coil_maps") is not None:
        if params.get("coils") is not None:
            raise UsageError("mri: give coils (simulated maps) or coil_maps, not both")
        return MultiCoilMRI(shape, mask, torch.as_tensor(params["coil_maps"]))
    coils = _int_param("mri", "coils", params.get("coils", 1) or 1, 1, 64)
    return MultiCoilMRI(shape, mask, None if coils == 1 else simulated_maps(coils, (height, width)))


def ct_image_side(detectors: int) -> int | None:
    """The side N of the square image whose default detector count ``ceil(sqrt(2) N)`` is ``detectors``, or None
    when no N has that count. ``floor(D / sqrt(2))`` inverts ``ceil(sqrt(2) N)``: ``sqrt(2) N`` is irrational
    for N >= 1, so ``D - 1 < sqrt(2) N < D`` and ``N < D / sqrt(2) < N + 1 / sqrt(2)``."""
    side = math.floor(detectors / math.sqrt(2))
    return side if side >= 1 and math.ceil(math.sqrt(2) * side) == detectors else None


def image_shape_for_measurement(
    name: str, measurement_shape: tuple[int, int, int], **params: Any
) -> tuple[int, int, int]:
    """The image shape ``(C, H, W)`` to restore when the user's file is the measurement ``y`` of ``name``.

    ``sr`` multiplies the size by ``factor`` (a ``ceil``-sized ``y`` came from exactly ``f`` times its size or a
    little less; we restore the full multiple); ``colorize`` gives 3 channels; ``phase_retrieval`` divides by
    ``oversampling``; ``ct`` maps a sinogram ``(C, D, V)`` to the square image of side ``floor(D / sqrt(2))``
    (the inverse of the default detector count ``ceil(sqrt(2) N)``; ``ct_image_side``) and checks ``V`` against
    the views; every other operator keeps the shape. ``params`` are those of ``build_operator``.
    """
    if name not in OPERATOR_NAMES:
        raise UsageError(f"unknown operator '{name}' (choose one of: {', '.join(OPERATOR_NAMES)})")
    channels, height, width = (int(v) for v in measurement_shape)
    if name == "sr":
        factor = _int_param(name, "factor", params.get("factor", 4), 2, 16)
        return (channels, height * factor, width * factor)
    if name == "colorize":
        if channels != 1:
            raise UsageError(f"colorize needs a 1-channel (grayscale) measurement, got {channels} channels")
        return (3, height, width)
    if name == "phase_retrieval":
        oversampling = _float_param(name, "oversampling", params.get("oversampling", 2.0), 1.0, low_open=False)
        image_h, image_w = math.floor(height / oversampling), math.floor(width / oversampling)
        if math.ceil(oversampling * image_h) != height or math.ceil(oversampling * image_w) != width:
            raise UsageError(
                f"phase_retrieval: a {width}x{height} measurement is not an oversampling-{oversampling:g} canvas"
            )
        return (channels, image_h, image_w)
    if name == "ct":
        return (channels, *_ct_image_size(height, width, params))
    if name == "mri":  # every coil's k-space as (real, imaginary) pairs -> one complex image
        if channels % 2:
            raise UsageError(f"mri: k-space comes as (real, imaginary) channel pairs, got {channels} channels")
        return (2, height, width)
    return (channels, height, width)


def _ct_image_size(detectors: int, views: int, params: dict[str, Any]) -> tuple[int, int]:
    """(N, N) for a sinogram of ``detectors`` x ``views``; UsageError naming the expected shape otherwise."""
    angles = _ct_angles(params)
    if params.get("detectors") is not None:
        raise UsageError("ct: the image size of a sinogram is known only for the default detector count "
                         "ceil(sqrt(2) N); leave detectors unset")
    side = ct_image_side(detectors)
    if side is None:
        below = math.floor(detectors / math.sqrt(2))
        near = [(n, math.ceil(math.sqrt(2) * n)) for n in (below, below + 1) if n >= 1]
        shown = " or ".join(f"{d} (a {n} x {n} image)" for n, d in near)
        raise UsageError(f"ct: a sinogram with {detectors} detector rows fits no square image (an N x N "
                         f"image has ceil(sqrt(2) N)): expected e.g. {shown}, by {views} views")
    if views != len(angles):
        raise UsageError(f"ct: the sinogram has {views} view columns but {len(angles)} view angles were given: "
                         f"expected shape ({detectors}, {len(angles)}) (detectors, views)")
    return side, side
