"""Inpainting masks: where a job's mask comes from (a file, a folder of masks matched by stem, a box, random
pixels, or the input's own transparency) and the mask itself for one image size. True = missing (white in a
mask file); ``--invert-mask`` flips it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import torch

#: --blend feathers the inpainting seam over at most this many pixels
MAX_BLEND = 256


def parse_box(value: Any) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` (pixels) or a sequence of four numbers -> a tuple; UsageError naming the value otherwise."""
    text = ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0 or values[0] < 0 or values[1] < 0:
        raise UsageError(f"invalid --box '{text}'", hint="give X,Y,WIDTH,HEIGHT in pixels, e.g. --box 8,8,16,12")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class MaskSource:
    """Where an inpainting mask comes from: a file, a box, random pixels, or the input's own alpha channel."""

    kind: str  # "file" | "box" | "random" | "alpha" | "array" (the Python API's) | "none"
    path: Path | None = None

    def key(self, input_path: Path) -> tuple:
        """Images sharing a key (and a size) share one operator, so they can go through the solver together."""
        if self.kind == "alpha":
            return ("alpha", str(input_path))
        return (self.kind, str(self.path) if self.path else None)


def mask_value(value: Any) -> Any:
    """A mask flag's value: a path (a file name), or an array / tensor of shape (H, W) that is True (or 1) where
    pixels are missing (the Python API's ``mask=``)."""
    if isinstance(value, (str, Path)):
        return Path(value)
    if not hasattr(value, "shape"):
        raise UsageError(f"invalid mask {type(value).__name__}", hint="give a file path or an (H, W) array")
    return value


def _array_mask(value: Any, size: tuple[int, int]) -> torch.Tensor:
    import numpy as np
    import torch

    array = value if isinstance(value, torch.Tensor) else np.asarray(value)
    numeric = not array.dtype.is_complex if isinstance(array, torch.Tensor) else array.dtype.kind in "biuf"
    if not numeric:  # strings, objects, complex numbers: no reading of them as missing / known
        raise UsageError(f"a mask array of dtype {array.dtype} cannot be used",
                         hint="give bool (True = missing) or numbers (1 = missing, 0 = known)")
    t = torch.as_tensor(array).to("cpu")
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    w, h = size
    if t.dim() != 2 or tuple(t.shape) != (h, w):
        raise UsageError(f"mask of shape {tuple(t.shape)} does not fit a {w}x{h} image (need (H, W) = ({h}, {w}))")
    if t.is_floating_point() and not bool(t.isfinite().all()):
        # NaN compares False, so it would silently mean "known" (an all-NaN mask "nothing missing").
        bad = int((~t.isfinite()).sum())
        raise UsageError(f"the mask contains NaN or infinite values ({bad:,} of {t.numel():,})",
                         hint="give True (or 1) where pixels are missing, False (or 0) where they are known")
    return (t > 0.5 if t.is_floating_point() else t.bool())[None, None]


def find_mask_in_dir(mask_dir: Path, stem: str, extensions: tuple[str, ...]) -> Path | None:
    """The mask for an input with this stem: ``<stem>.<ext>`` or ``<stem>_mask.<ext>`` in ``mask_dir``."""
    for name in (stem, f"{stem}_mask"):
        for ext in extensions:
            for candidate in (mask_dir / f"{name}{ext}", mask_dir / f"{name}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def build_mask(
    source: MaskSource,
    params: Mapping[str, Any],
    size: tuple[int, int],
    *,
    seed: int,
    loaded: Any = None,
) -> torch.Tensor:
    """A bool tensor (1, 1, H, W), True = missing, for an image of ``size`` = (width, height)."""
    import torch

    from .. import imageio, operators
    from ..run.runtime import make_generator

    w, h = size
    if source.kind == "file":
        mask = imageio.load_mask(source.path, (w, h))
    elif source.kind == "array":
        mask = _array_mask(params["mask"], (w, h))
    elif source.kind == "box":
        x0, y0, bw, bh = params["box"]  # type: ignore[misc]
        if x0 + bw > w or y0 + bh > h:
            raise UsageError(f"--box {x0},{y0},{bw},{bh} does not fit in a {w}x{h} image")
        mask = operators.box_mask((h, w), y0, x0, bh, bw)
    elif source.kind == "random":
        # Drawn from the run's seed only, so the same seed gives the same holes whatever the batching.
        mask = operators.random_mask((h, w), float(params["random_fraction"]), make_generator(seed))  # type: ignore[arg-type]
    elif source.kind == "alpha":
        mask = imageio.mask_from_alpha(loaded) if loaded is not None else None
        if mask is None or not bool(mask.any()):
            raise UsageError(
                "inpaint needs a mask",
                hint="give --mask FILE, --mask-dir DIR, --box X,Y,W,H or --random-fraction F, "
                "or an input whose transparent pixels mark the holes",
            )
    else:
        raise ValueError(f"no mask for source {source.kind}")
    mask = mask.to(torch.bool)
    if params["invert_mask"]:
        mask = ~mask
    if not bool(mask.any()):
        raise UsageError("the mask marks no missing pixel", hint=_empty_mask_hint(source, params, w * h))
    return mask


def _empty_mask_hint(source: MaskSource, params: Mapping[str, Any], pixels: int) -> str:
    """How to get holes from a source that gave none: a random fraction rounds to whole pixels, so a tiny one
    picks none (inverting cannot help there); a file or box may have its colours the other way round."""
    if source.kind != "random":
        return "white = missing; try --invert-mask"
    if params["invert_mask"]:  # the fraction then names the known pixels, and it took them all
        return "with --invert-mask, F is the share of known pixels: give a smaller --random-fraction"
    return (f"{params['random_fraction']:g} of {pixels} pixels rounds to none: give a larger --random-fraction, "
            f"at least {1 / pixels:.2g}")
