"""Inpainting masks: where a job's mask comes from (a file, a folder of masks matched by stem, a box, random
pixels, or the input's own transparency) and the mask itself for one image size. True = missing (white in a
mask file); ``--invert-mask`` flips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import torch

    from .tasks import TaskOptions


@dataclass(frozen=True)
class MaskSource:
    """Where an inpainting mask comes from: a file, a box, random pixels, or the input's own alpha channel."""

    kind: str  # "file" | "box" | "random" | "alpha" | "none"
    path: Path | None = None

    def key(self, input_path: Path) -> tuple:
        """Images sharing a key (and a size) share one operator, so they can go through the solver together."""
        if self.kind == "alpha":
            return ("alpha", str(input_path))
        return (self.kind, str(self.path) if self.path else None)


def find_mask_in_dir(mask_dir: Path, stem: str, extensions: tuple[str, ...]) -> Path | None:
    """The mask for an input with this stem: ``<stem>.<ext>`` or ``<stem>_mask.<ext>`` in ``mask_dir``."""
    for name in (stem, f"{stem}_mask"):
        for ext in extensions:
            for candidate in (mask_dir / f"{name}{ext}", mask_dir / f"{name}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def mask_source(task: str, opts: TaskOptions, input_path: Path, extensions: tuple[str, ...]) -> MaskSource:
    """The mask source for one input; UsageError when --mask-dir has no mask for it."""
    from .tasks import canonical_task

    if canonical_task(task) != "inpaint":
        return MaskSource("none")
    if opts.mask is not None:
        return MaskSource("file", opts.mask)
    if opts.mask_dir is not None:
        found = find_mask_in_dir(opts.mask_dir, input_path.stem, extensions)
        if found is None:
            raise UsageError(f"no mask for {input_path.name} in {opts.mask_dir}",
                             hint=f"expected {input_path.stem}.png (same stem as the image)")
        return MaskSource("file", found)
    if opts.box is not None:
        return MaskSource("box")
    if opts.random_fraction is not None:
        return MaskSource("random")
    return MaskSource("alpha")


def build_mask(
    source: MaskSource,
    opts: TaskOptions,
    size: tuple[int, int],
    *,
    seed: int,
    loaded: Any = None,
) -> torch.Tensor:
    """A bool tensor (1, 1, H, W), True = missing, for an image of ``size`` = (width, height)."""
    import torch

    from . import imageio, operators
    from .runtime import make_generator

    w, h = size
    if source.kind == "file":
        mask = imageio.load_mask(source.path, (w, h))
    elif source.kind == "box":
        x0, y0, bw, bh = opts.box  # type: ignore[misc]
        if x0 + bw > w or y0 + bh > h:
            raise UsageError(f"--box {x0},{y0},{bw},{bh} does not fit in a {w}x{h} image")
        mask = operators.box_mask((h, w), y0, x0, bh, bw)
    elif source.kind == "random":
        # Drawn from the run's seed only, so the same seed gives the same holes whatever the batching.
        mask = operators.random_mask((h, w), float(opts.random_fraction), make_generator(seed))  # type: ignore[arg-type]
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
    if opts.invert_mask:
        mask = ~mask
    if not bool(mask.any()):
        raise UsageError("the mask marks no missing pixel", hint=_empty_mask_hint(source, opts, w * h))
    return mask


def _empty_mask_hint(source: MaskSource, opts: TaskOptions, pixels: int) -> str:
    """How to get holes from a source that gave none: a random fraction rounds to whole pixels, so a tiny one
    picks none (inverting cannot help there); a file or box may have its colours the other way round."""
    if source.kind != "random":
        return "white = missing; try --invert-mask"
    if opts.invert_mask:  # the fraction then names the known pixels, and it took them all
        return "with --invert-mask, F is the share of known pixels: give a smaller --random-fraction"
    return (f"{opts.random_fraction:g} of {pixels} pixels rounds to none: give a larger --random-fraction, "
            f"at least {1 / pixels:.2g}")
