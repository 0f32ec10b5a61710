"""Reading MRI k-space, coil sensitivity maps and sampling masks for ``diffrestore mri``; writing reconstructions.

Files:

- k-space: a complex ``.npy`` of shape ``(H, W)`` (one coil) or ``(coils, H, W)``; or a fastMRI ``.h5`` file whose
  ``kspace`` dataset is ``(slices, coils, H, W)`` (multi-coil) or ``(slices, H, W)`` (single-coil), complex.
  Unsampled points are zeros: the sampling mask is read from that zero pattern (``mask_from_zeros``) unless a
  mask file is given.
- coil maps: complex ``(coils, H, W)`` in a ``.npy``, or in an ``.h5`` (dataset ``sens_maps``, ``maps`` or the
  file's only dataset; ``(slices, coils, H, W)`` is taken at the slice restored).
- masks: a 2-D 0/1 ``.npy`` ``(H, W)`` or a 1-D one ``(W,)`` of sampled columns, or a black-and-white picture
  (white = sampled).

``.h5`` needs h5py (the ``mri`` extra): without it, ``MissingExtraError`` (exit 3) in one line. No torch here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError, SizeMismatchError, UsageError, import_extra

H5_SUFFIXES = (".h5", ".hdf5")
MRI_EXTRA_HINT = "pip install 'diffrestore[mri]' (h5py)"
#: dataset names a maps file may use, in the order they are looked for
MAP_DATASETS = ("sens_maps", "maps", "coil_maps", "sensitivity_maps")


def _h5py() -> Any:
    return import_extra("h5py", "reading or writing .h5 files", MRI_EXTRA_HINT)


def is_h5(path: Path) -> bool:
    return path.suffix.lower() in H5_SUFFIXES


@dataclass(frozen=True)
class KSpaceFile:
    """What a k-space file holds: ``slices`` slices of ``coils`` coils, ``(height, width)`` each, and whether the
    file stores a coil axis (single-coil files do not)."""

    path: Path
    format: str  # "npy" | "h5"
    slices: int
    coils: int
    size: tuple[int, int]  # (H, W)


def _layout_error(path: Path, shape: tuple[int, ...], where: str) -> UsageError:
    return UsageError(f"{path}: {where} of shape {shape} is not k-space",
                      hint="give complex (H, W) or (coils, H, W) in a .npy, or a fastMRI .h5 whose 'kspace' is "
                      "(slices, coils, H, W) or (slices, H, W)")


def _check_complex(path: Path, dtype: Any, where: str) -> None:
    if not np.issubdtype(dtype, np.complexfloating):
        raise UsageError(f"{path}: {where} holds {dtype} values, not complex k-space",
                         hint="save k-space as a complex array (np.complex64); a magnitude image goes with "
                         "--simulate")


def probe_kspace(path: Path) -> KSpaceFile:
    """The layout of a k-space file, without reading its values (an ``.h5``'s slices are read one at a time)."""
    if is_h5(path):
        h5py = _h5py()
        try:
            with h5py.File(path, "r") as f:
                if "kspace" not in f:
                    raise UsageError(f"{path}: no 'kspace' dataset (found: {', '.join(sorted(f.keys())) or 'none'})",
                                     hint="give a fastMRI .h5 file whose k-space is the dataset 'kspace'")
                data = f["kspace"]
                shape, dtype = tuple(int(v) for v in data.shape), data.dtype
        except OSError as error:
            raise ImageReadError(f"{path}: not a readable HDF5 file ({error})") from None
        _check_complex(path, dtype, "'kspace'")
        if len(shape) == 4:
            slices, coils, height, width = shape
        elif len(shape) == 3:
            (slices, height, width), coils = shape, 1
        else:
            raise _layout_error(path, shape, "'kspace'")
        if min(shape) < 1 or min(height, width) < 2:
            raise _layout_error(path, shape, "'kspace'")
        return KSpaceFile(path, "h5", slices, coils, (height, width))
    array = _load_npy(path)
    _check_complex(path, array.dtype, "the array")
    if array.ndim == 2:
        coils, (height, width) = 1, array.shape
    elif array.ndim == 3:
        coils, height, width = array.shape
    else:
        raise _layout_error(path, tuple(array.shape), "the array")
    if min(height, width) < 2 or coils < 1:
        raise _layout_error(path, tuple(array.shape), "the array")
    return KSpaceFile(path, "npy", 1, int(coils), (int(height), int(width)))


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ImageReadError(f"{path}: not a readable .npy array ({error})") from None


def read_kspace(info: KSpaceFile, slice_index: int | None) -> np.ndarray:
    """One slice as complex64 ``(coils, H, W)``; UsageError for a slice the file does not have."""
    index = 0 if slice_index is None else int(slice_index)
    if not 0 <= index < info.slices:
        raise UsageError(f"--slice {index}: {info.path} has {info.slices} slice(s), 0 to {info.slices - 1}")
    if info.format == "h5":
        with _h5py().File(info.path, "r") as f:
            values = np.asarray(f["kspace"][index])
    else:
        values = _load_npy(info.path)
    values = values.astype(np.complex64, copy=False).reshape(info.coils, *info.size)
    if not np.isfinite(values.view(np.float32)).all():
        raise ImageReadError(f"{info.path}: k-space holds NaN or infinite values")
    return values


def read_coil_maps(path: Path, *, slice_index: int | None = None) -> np.ndarray:
    """Coil maps as complex64 ``(coils, H, W)`` (a ``(slices, coils, H, W)`` file at ``slice_index``)."""
    if not path.is_file():
        raise UsageError(f"--coil-maps file not found: {path}", hint="give a .npy / .h5 file, acs or espirit")
    if is_h5(path):
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            names = [n for n in MAP_DATASETS if n in f] or (list(f.keys()) if len(f.keys()) == 1 else [])
            if not names:
                raise UsageError(f"--coil-maps {path}: no dataset named {', '.join(MAP_DATASETS)}")
            values = np.asarray(f[names[0]])
    elif path.suffix.lower() == ".npy":
        values = _load_npy(path)
    else:
        raise UsageError(f"--coil-maps {path}: unknown format", hint="give complex (coils, H, W) in a .npy or .h5")
    if not np.issubdtype(values.dtype, np.complexfloating) and not np.issubdtype(values.dtype, np.floating):
        raise UsageError(f"--coil-maps {path}: {values.dtype} values are not coil maps",
                         hint="give complex (coils, H, W)")
    if values.ndim == 4:
        values = values[0 if slice_index is None else min(int(slice_index), values.shape[0] - 1)]
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise UsageError(f"--coil-maps {path}: shape {tuple(values.shape)} is not (coils, H, W)")
    values = values.astype(np.complex64)
    if not np.isfinite(values.view(np.float32)).all():
        raise UsageError(f"--coil-maps {path}: the maps hold NaN or infinite values")
    return values


def check_maps(maps: np.ndarray, kspace: np.ndarray, maps_name: str, kspace_path: Path) -> None:
    """SizeMismatchError (exit 2) when the maps do not have the k-space's coils and size."""
    if maps.shape != kspace.shape:
        raise SizeMismatchError(f"--coil-maps {maps_name}: maps of shape {tuple(maps.shape)} do not fit "
                                f"{kspace_path.name}'s k-space of shape {tuple(kspace.shape)} (coils, H, W)",
                                hint="give one map per coil at the k-space's size")


def read_mask_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A sampling mask for k-space of ``size`` = (H, W): bool (H, W), True = sampled."""
    if not path.is_file():
        raise UsageError(f"--mask file not found: {path}")
    if path.suffix.lower() == ".npy":
        values = _load_npy(path)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                values = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as error:
            raise UsageError(f"--mask {path}: not a readable image or .npy ({error})") from None
        values = (values > 0.5).astype(np.float32)
    height, width = size
    if values.ndim == 1 and values.shape[0] == width:
        values = np.broadcast_to(values[None, :], (height, width))
    if values.shape != (height, width):
        raise SizeMismatchError(f"--mask {path}: a mask of shape {tuple(values.shape)} does not fit k-space of "
                                f"(H, W) = ({height}, {width})",
                                hint=f"give (H, W) = ({height}, {width}) of 0/1, or ({width},) for sampled columns")
    if values.dtype != bool:
        numbers = values.astype(np.float64)
        if not np.isin(numbers, (0.0, 1.0)).all():
            raise UsageError(f"--mask {path}: a sampling mask holds only 0 (skipped) and 1 (sampled)")
        values = numbers == 1.0
    if not values.any():
        raise UsageError(f"--mask {path}: the mask samples no k-space point", hint="1 (white) = sampled")
    return np.ascontiguousarray(values, dtype=bool)


def mask_from_zeros(kspace: np.ndarray) -> np.ndarray:
    """The sampling pattern of zero-filled k-space ``(coils, H, W)``: whole columns (or rows) where every sample
    of a line is zero or nonzero in the main, else the points where any coil is nonzero. Bool (H, W)."""
    nonzero = (kspace != 0).any(axis=0)
    columns = nonzero.mean(axis=0) > 0.5
    rows = nonzero.mean(axis=1) > 0.5
    as_columns = np.broadcast_to(columns[None, :], nonzero.shape)
    as_rows = np.broadcast_to(rows[:, None], nonzero.shape)
    for lines in (as_columns, as_rows):
        if (lines == nonzero).mean() > 0.995 and 0 < lines.mean() < 1:
            return np.ascontiguousarray(lines)
    return nonzero


def reconstruction_h5_bytes(magnitude: np.ndarray) -> bytes:
    """A fastMRI reconstruction file: dataset ``reconstruction`` (1, H, W) float32, the magnitude."""
    h5py = _h5py()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("reconstruction", data=np.asarray(magnitude, np.float32)[None])
    return buffer.getvalue()


def complex_npy_bytes(image: np.ndarray) -> bytes:
    """A complex64 (H, W) image as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(image, dtype=np.complex64), allow_pickle=False)
    return buffer.getvalue()


def read_magnitude(path: Path) -> tuple[np.ndarray, str, int, tuple[str, ...]]:
    """A magnitude image for ``mri --simulate``: (values (H, W) float32 >= 0, format, bit depth, notes). A picture
    (grey; colour as its channel mean) or an 8/16-bit TIFF on [0, 1]; a float ``.npy`` / TIFF as stored; an MR
    DICOM's stored values, rescaled when the file says so."""
    from . import dicom

    notes: list[str] = []
    if dicom.is_dicom(path):
        dataset = dicom._pydicom().dcmread(path)
        values = np.asarray(dataset.pixel_array, dtype=np.float32)
        slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
        values = values * slope + float(getattr(dataset, "RescaleIntercept", 0) or 0)
        fmt, depth = "dicom", 32
    elif path.suffix.lower() in (".npy", ".tif", ".tiff"):
        array = dicom.read_ct_array(path)
        values, fmt, depth = array.values, array.format, array.bit_depth
    else:
        from .read import load_image

        image = load_image(path)
        values = ((image.tensor[0].mean(dim=0) + 1) / 2).numpy()
        fmt, depth = str(image.format).lower(), image.bit_depth
        if image.tensor.shape[1] == 3:
            notes.append("a colour picture: its channel mean is the magnitude")
    if values.ndim != 2 or min(values.shape) < 2:
        raise ImageReadError(f"{path}: shape {tuple(values.shape)} is not a 2-D image")
    if not np.isfinite(values).all():
        raise ImageReadError(f"{path}: holds NaN or infinite values")
    if values.min() < 0:
        notes.append("negative values taken as magnitudes (absolute value)")
        values = np.abs(values)
    if not values.any():
        raise UsageError(f"{path}: the image is black: nothing to simulate")
    return values.astype(np.float32), fmt, depth, tuple(notes)


def sigpy_module() -> Any:
    """sigpy (for ESPIRiT), or MissingExtraError (exit 3) in one line."""
    import_extra("sigpy.mri", "--coil-maps espirit", "pip install sigpy, or give --coil-maps FILE")
    import sigpy

    return sigpy


def espirit_maps(kspace: np.ndarray) -> np.ndarray:
    """ESPIRiT maps of ``kspace`` (coils, H, W) by sigpy's ``EspiritCalib`` (calibration width 24, threshold
    0.02, kernel 6, crop 0.95: InverseBench's settings)."""
    sigpy = sigpy_module()
    maps = sigpy.mri.app.EspiritCalib(kspace, calib_width=24, thresh=0.02, kernel_width=6, crop=0.95,
                                      show_pbar=False).run()
    return np.asarray(maps, dtype=np.complex64)
