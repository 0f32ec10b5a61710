"""Folders of training images for ``diffrestore train``: found recursively, each read as a (C, H, W) array in
[0, 1] (16-bit and float greys keep their scale, alpha is dropped, grey and colour converted to the channels
asked), the ones smaller than the crop size left out. Torch is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageReadError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pgm", ".ppm")

__all__ = ["IMAGE_SUFFIXES", "check_data_dir", "find_images", "load_training_images"]


def check_data_dir(data_dir: Path) -> None:
    """InputError for a training folder that is missing or a file."""
    if not data_dir.exists():
        raise InputError(f"training data folder '{data_dir}' does not exist")
    if not data_dir.is_dir():
        raise InputError(f"training data path '{data_dir}' is not a folder", hint="pass a folder of images")


def find_images(data_dir: Path) -> list[Path]:
    """Image files directly in ``data_dir`` or below it, sorted (so the order, and thus training, is stable)."""
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path, channels: int | None):
    """(C, H, W) float32 numpy array in [0, 1]; alpha dropped, grey replicated or colour converted as asked."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                arr = np.clip(arr, 0.0, 1.0)[None]
            elif mode == "F":
                arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[None]
            elif mode in ("L", "LA", "1"):
                arr = np.asarray(img.convert("L"), dtype=np.float32)[None] / 255.0
            else:
                arr = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read training image '{path}': {exc}", hint="remove or fix the file") from None
    if channels == 3 and arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    elif channels == 1 and arr.shape[0] == 3:
        arr = (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None].astype(np.float32)
    return np.ascontiguousarray(arr)


def _is_colour(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode not in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F")
    except OSError:
        return False


def load_training_images(data_dir: str | Path, size: int, channels: int | None = None) -> tuple[list, int, list[str]]:
    """Read every image of ``data_dir`` at least ``size`` x ``size``; returns (tensors in [-1, 1], channels, skipped).

    ``channels=None`` picks 3 if any image is colour, else 1. Raises InputError with the reason when nothing is
    usable (missing folder, no images, all images smaller than the crop size).
    """
    import torch

    data_dir = Path(data_dir)
    check_data_dir(data_dir)
    paths = find_images(data_dir)
    if not paths:
        raise InputError(
            f"no images found in '{data_dir}'",
            hint=f"put image files ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:5])}, ...) in the folder",
        )
    if channels is None:
        channels = 3 if any(_is_colour(p) for p in paths) else 1
    images, skipped, largest = [], [], (0, 0)
    for path in paths:
        arr = _read_image(path, channels)
        h, w = arr.shape[1:]
        largest = max(largest, (h, w), key=lambda hw: min(hw))
        if h < size or w < size:
            skipped.append(path.name)
            continue
        images.append(torch.from_numpy(arr) * 2 - 1)
    if not images:
        raise InputError(
            f"all {len(paths)} images in '{data_dir}' are smaller than the crop size {size}x{size} "
            f"(the largest is {largest[1]}x{largest[0]})",
            hint=f"use --size {min(largest)} or smaller, or add larger images",
        )
    return images, channels, skipped
