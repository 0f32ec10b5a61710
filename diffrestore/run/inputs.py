"""What a run learns from each input before any weights load: its size and channels, its mask, its noise level
(estimated from the image itself for real inputs), the key of the batch it can join, and whether the memory the
largest batch needs is there. The engine calls this for every file; the Python API for its one image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import budget

if TYPE_CHECKING:
    import torch

    from ..tasks import MaskSource
    from .preflight import Job


@dataclass
class Prepared:
    """One input, read: what its restoration needs besides the pixels."""

    size: tuple[int, int]  # (width, height) of the input
    restored_size: tuple[int, int]  # (width, height) of the output
    channels: int
    mask_source: MaskSource
    mask: Any = None  # bool tensor (1, 1, H, W), True = missing; None for tasks without a mask
    noise_sigma: float | None = None  # the estimated Gaussian noise std on [0, 1] (real inputs)
    noise_note: str | None = None  # how it was estimated
    item: Any = None  # the engine's plan.Item (None in the API)
    notes: list[str] = field(default_factory=list)
    loaded: Any = None  # the decoded file, kept until its batch runs when the run's budget for that allows

    @property
    def key(self) -> tuple:
        """Images batch only with their own kind: same size, channels, mask and (estimated) noise level."""
        path = self.item.input if self.item is not None else Path("image")
        part = self.item.part if self.item is not None else None  # a file's images each have their own reading
        return (self.size, self.channels, self.mask_source.key(path), self.noise_sigma, part)


def prepare_input(job: Job, tensor: torch.Tensor, *, path: Path, loaded: Any = None,
                  extensions: tuple[str, ...] = ()) -> Prepared:
    """Size, channels, mask (its source found from ``path``: a --mask-dir file is matched by the input's stem)
    and noise level of one decoded input (``tensor`` (1, C, H, W) in tensor units; ``loaded``: the LoadedImage it
    came from, for its alpha channel and bit depth). UsageError / InputError for a mask that does not fit."""
    task = job.task
    size = (int(tensor.shape[-1]), int(tensor.shape[-2]))
    source = task.mask_source(path, extensions)
    mask = None
    if source.kind != "none":
        mask = task.build_mask(source, task.restored_size(size), seed=job.options.seed, loaded=loaded)
    prepared = Prepared(size=size, restored_size=task.restored_size(size), channels=int(tensor.shape[1]),
                        mask_source=source, mask=mask)
    if task.estimates_noise:
        from ..tasks.noise_estimate import estimate_noise

        estimate = estimate_noise(tensor, known=None if mask is None else ~mask,
                                  bit_depth=getattr(loaded, "bit_depth", 8))
        prepared.noise_sigma, prepared.noise_note = estimate.sigma, estimate.run_note()
    return prepared


def expand_parts(files: list[Any], parts: Any) -> list[Any]:
    """Planned input files (``plan.InputFile``) with a file of several images (``parts(path)`` > 1, an MRI .h5's
    slices: ``Task.input_parts``) as one file per image, ``part`` 0, 1, ...; a file named like an output stays."""
    import dataclasses

    counts = [1 if f.looks_like_output else int(parts(f.path)) for f in files]
    return [f if n == 1 else dataclasses.replace(f, part=i) for f, n in zip(files, counts, strict=True)
            for i in range(n)]


def batches(prepared: list[Prepared], batch_size: int) -> list[list[Prepared]]:
    """Consecutive groups of at most ``batch_size`` images sharing size, channels, mask and noise level, in input
    order."""
    groups: dict[tuple, list[Prepared]] = {}
    for p in prepared:
        groups.setdefault(p.key, []).append(p)
    grouped = [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]
    grouped.sort(key=lambda b: b[0].item.index if b[0].item is not None else 0)
    return grouped


def check_memory(job: Job, prepared: list[Prepared], device: Any) -> None:
    """The solver's memory for the largest batch against the device's free memory (budget.check_memory)."""
    task = job.task
    sizes = [(len(batch), task.x_channels(batch[0].channels), batch[0].restored_size)
             for batch in batches(prepared, job.options.batch_size)]
    budget.check_memory(sizes, num_samples=job.num_samples, device=device, kernel=task.kernel_shape(),
                        kernel_flag=task.kernel_from_flag())
