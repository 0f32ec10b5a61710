"""The memory a run needs, checked before any model loads (the flags' own upper bounds, which stop numbers no
machine can run, are in ``run.options`` and the task table).

``check_memory`` needs the image sizes (after the inputs are decoded): it counts the tensors the solver itself
holds for the largest batch (its working copies of every sample and, for blur, the FFT grid of the extended
image) and compares them with the memory free on the run's device. The network's activations are unknown until
the model is loaded, so the estimate is a floor: what it refuses cannot fit, what it accepts may still not. A
refusal names the flag to change and a value that fits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: Image-sized float32 tensors a solver holds per row: x, x0_hat, x0, the data gradient, a noise draw, y, A(x)
#: and one temporary (DAPS's Langevin loop holds the most). The network's activations come on top.
WORKING_COPIES = 8
#: Grid-sized float32 tensors of one blur application: the extended image, its half spectrum (complex, so as
#: large as one real grid), their product and the inverse transform.
BLUR_GRID_COPIES = 4
FLOAT_BYTES = 4


def run_bytes(*, rows: int, channels: int, size: tuple[int, int], kernel: tuple[int, int] | None = None) -> int:
    """A floor on the bytes the solver holds for ``rows`` samples of a (width, height) = ``size`` image with
    ``channels`` channels, blurred by a ``kernel`` = (kh, kw) when given."""
    width, height = size
    total = WORKING_COPIES * rows * channels * height * width * FLOAT_BYTES
    if kernel is not None:
        kh, kw = kernel
        grid = (height + kh - 1) * (width + kw - 1)  # the linear convolution's grid (the FFT size is this or more)
        total += BLUR_GRID_COPIES * rows * channels * grid * FLOAT_BYTES
        total += (grid + 2 * kh * kw) * FLOAT_BYTES  # the kernel's spectrum, the kernel and its normalised copy
    return total


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _host_available() -> int | None:
    """Free memory of this machine, or of the container when a cgroup limits it to less."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):  # free + reclaimable page cache: what a new allocation can get
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    # A container (docker, Kubernetes) sees the host's MemAvailable but is killed at its own limit.
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        free = min(free, max(limit - used, 0))
    return free


def available_memory(device: Any) -> int | None:
    """Bytes free where the solver's tensors live (the GPU's memory for cuda); None when unknown (mps)."""
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    return _host_available() if kind == "cpu" else None


def _largest(fits: Callable[[int], bool], high: int, *, odd: bool = False) -> int:
    """The largest v in 1..high (odd ones only, if ``odd``) with fits(v), for a fits that fails from some v on;
    0 when none fits."""
    values = range(1, high + 1, 2 if odd else 1)
    low, top, best = 0, len(values) - 1, 0
    while low <= top:
        mid = (low + top) // 2
        if fits(values[mid]):
            best, low = values[mid], mid + 1
        else:
            top = mid - 1
    return best


def _human(n: int) -> str:
    from ..registry.cache import human_bytes

    return human_bytes(n)


def check_memory(
    batches: list[tuple[int, int, tuple[int, int]]],
    *,
    num_samples: int,
    device: Any,
    kernel: tuple[int, int] | None = None,
    kernel_flag: bool = False,
) -> None:
    """UsageError when the largest of ``batches`` = [(images, channels, (width, height))] cannot fit in the
    device's free memory, naming the flag to change and a value that fits. ``kernel``: the blur kernel's
    (kh, kw); ``kernel_flag``: it comes from --kernel-size, so a smaller one can be suggested."""
    free = available_memory(device)
    if free is None or not batches:
        return

    def need_of(batch: tuple[int, int, tuple[int, int]], samples: int, batch_size: int | None = None,
                size: int | None = None) -> int:
        images, channels, image_size = batch
        rows = min(images, batch_size or images) * samples
        return run_bytes(rows=rows, channels=channels, size=image_size, kernel=(size, size) if size else kernel)

    def need(batch_size: int, samples: int, size: int | None = None) -> int:
        return max(need_of(b, samples, batch_size, size) for b in batches)

    images = max(n for n, _, _ in batches)
    total = need(images, num_samples)
    if total <= free:
        return
    # Smaller batches first (same results, only slower), then fewer samples, then a smaller kernel.
    changes: list[str] = []
    batch, samples = images, num_samples
    if batch > 1:
        batch = _largest(lambda b: need(b, samples) <= free, images - 1) or 1
        changes.append(f"--batch-size {batch}")
    if need(batch, samples) > free and samples > 1:
        samples = _largest(lambda n: need(1, n) <= free, num_samples - 1) or 1
        changes.append(f"--num-samples {samples}")
    if need(batch, samples) > free:
        size = _largest(lambda k: need(1, 1, k) <= free, kernel[0] - 2, odd=True) if kernel_flag and kernel else 0
        changes = [*changes, f"--kernel-size {size}"] if size else []
    count, _, (width, height) = max(batches, key=lambda b: need_of(b, num_samples))
    what = f"{count} image(s) of {width}x{height} x {num_samples} sample(s)"
    if kernel is not None:
        what += f" with a {kernel[0]}x{kernel[1]} kernel"
    hint = f"use {' '.join(changes)}" if changes else "restore smaller images, or use a device with more memory"
    raise UsageError(f"restoring {what} at once needs at least {_human(total)} of memory, but {_human(free)} is "
                     f"free on {device}", hint=hint)
