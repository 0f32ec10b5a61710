"""Folders of training images for ``diffrestore train``: found recursively, each read as a (C, H, W) array in
[0, 1] (16-bit and float greys keep their scale, alpha is dropped, grey and colour converted to the channels
asked), the ones smaller than the crop size left out. Torch is imported inside functions.

DICOM slices (``.dcm``/``.dicom``, or any file without a suffix that starts with DICOM's preamble) are grey
images on the CT scale ``(HU + 1024) / 4096`` (``imageio.dicom.hu_to_unit``: air 0, water 0.25), clipped to
[0, 1]; reading them needs the optional ``dicom`` extra (pydicom), else MissingExtraError (exit 3).

Complex images (``channels=2``, for MRI priors): ``.npy`` files holding one (H, W) complex array (real ``.npy``
arrays are magnitudes), and any image above as a magnitude. Each is divided by the 99th percentile of its
magnitude (``operators.mri_phase``: the mapping the ``mri`` task uses at inference) and kept as (2, H, W)
channels (real, imaginary), or (1, H, W) for a magnitude, to which training gives a smooth random phase per crop.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageReadError, InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pgm", ".ppm")

COMPLEX_SUFFIXES = (".npy",)

__all__ = ["COMPLEX_SUFFIXES", "IMAGE_SUFFIXES", "check_data_dir", "find_images", "load_training_images"]


def check_data_dir(data_dir: Path) -> None:
    """InputError for a training folder that is missing or a file."""
    if not data_dir.exists():
        raise InputError(f"training data folder '{data_dir}' does not exist")
    if not data_dir.is_dir():
        raise InputError(f"training data path '{data_dir}' is not a folder", hint="pass a folder of images")


def find_images(data_dir: Path, *, complex_files: bool = False) -> list[Path]:
    """Image and DICOM files directly in ``data_dir`` or below it (and ``.npy`` arrays if ``complex_files``),
    sorted (so the order, and thus training, is stable). Hidden files are skipped."""
    from .dicom import DICOM_EXTENSIONS, is_dicom

    suffixes = IMAGE_SUFFIXES + DICOM_EXTENSIONS + (COMPLEX_SUFFIXES if complex_files else ())
    found = []
    for path in data_dir.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in suffixes or (not suffix and is_dicom(path)):
            found.append(path)
    return sorted(found)


def _read_dicom(path: Path):
    """(1, H, W) float32 on the CT scale, clipped to [0, 1]."""
    import numpy as np

    from .dicom import hu_to_unit, read_ct_slice

    return np.clip(hu_to_unit(read_ct_slice(path).hu), 0.0, 1.0)[None].astype(np.float32)


def _read_npy(path: Path):
    """(2, H, W) real/imaginary channels of a complex array, or (1, H, W) for a real one (a magnitude)."""
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read training array '{path}': {exc}", hint="remove or fix the file") from None
    arr = np.squeeze(arr)
    if arr.ndim != 2 or not (np.iscomplexobj(arr) or np.issubdtype(arr.dtype, np.number)):
        raise ImageReadError(f"training array '{path}' has shape {arr.shape} and type {arr.dtype}; one (H, W) "
                             "complex image is expected", hint="save each image as its own .npy file")
    if not np.all(np.isfinite(arr)):
        raise ImageReadError(f"training array '{path}' holds NaN or infinite values", hint="remove or fix the file")
    if np.iscomplexobj(arr):
        return np.stack([arr.real, arr.imag]).astype(np.float32)
    return np.abs(arr).astype(np.float32)[None]


def _complex_scaled(arr):
    """Divide by the 99th percentile of the magnitude (``operators.mri_phase.scale_from_image``)."""
    import torch

    from ..operators.mri_phase import scale_from_image

    tensor = torch.from_numpy(arr)
    magnitude = tensor[0].abs() if tensor.shape[0] == 1 else torch.sqrt(tensor[0] ** 2 + tensor[1] ** 2)
    return tensor / scale_from_image(magnitude)


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
    """Read every image of ``data_dir`` at least ``size`` x ``size``; returns (tensors, channels, skipped).

    Tensors are in [-1, 1] for 1 and 3 channels; for 2 (complex) channels they are scaled by the 99th percentile
    of their magnitude (module doc), (2, H, W) for complex arrays and (1, H, W) for magnitudes.
    ``channels=None`` picks 2 if the folder holds ``.npy`` arrays, else 3 if any image is colour, else 1. Raises
    InputError with the reason when nothing is usable (missing folder, no images, all smaller than the crop size).
    """
    import torch

    from .dicom import is_dicom

    data_dir = Path(data_dir)
    check_data_dir(data_dir)
    paths = find_images(data_dir, complex_files=channels in (None, 2))
    if not paths:
        raise InputError(
            f"no images found in '{data_dir}'",
            hint=f"put image files ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:5])}, ..., DICOM slices"
            + (", complex .npy arrays" if channels == 2 else "") + ") in the folder",
        )
    if channels is None:
        if any(p.suffix.lower() in COMPLEX_SUFFIXES for p in paths):
            channels = 2
        else:
            channels = 3 if any(_is_colour(p) for p in paths if not is_dicom(p)) else 1
    images, skipped, largest = [], [], (0, 0)
    for path in paths:
        if path.suffix.lower() in COMPLEX_SUFFIXES:
            arr = _read_npy(path)
        elif is_dicom(path):
            arr = _read_dicom(path)
            if channels == 3:
                arr = arr.repeat(3, axis=0)
        else:
            arr = _read_image(path, 1 if channels == 2 else channels)
        h, w = arr.shape[1:]
        largest = max(largest, (h, w), key=lambda hw: min(hw))
        if h < size or w < size:
            skipped.append(path.name)
            continue
        images.append(_complex_scaled(arr) if channels == 2 else torch.from_numpy(arr) * 2 - 1)
    if not images:
        raise InputError(
            f"all {len(paths)} images in '{data_dir}' are smaller than the crop size {size}x{size} "
            f"(the largest is {largest[1]}x{largest[0]})",
            hint=f"use --size {min(largest)} or smaller, or add larger images",
        )
    return images, channels, skipped
