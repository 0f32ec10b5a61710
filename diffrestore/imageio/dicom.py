"""CT slices in DICOM: read them in Hounsfield units, write a restored slice back with the source's header.

pydicom is an optional extra (``pip install 'diffrestore[dicom]'``); without it a DICOM file is recognised by its
preamble (``DICM`` at byte 128) and refused in one line naming the extra (exit 3, as for any missing extra).

Reading (:func:`read_ct_slice`): one single-frame, single-sample (MONOCHROME1/2) slice; the stored values become
Hounsfield units by ``RescaleSlope`` and ``RescaleIntercept`` (1 and 0 when absent, as the standard says for
images that carry none). A multi-frame file, colour pixels or a compressed transfer syntax pydicom has no decoder
for is refused with what it is; a damaged file is named as such.

Intensities: the restorers work on a linear scale. Hounsfield units are linear in the X-ray attenuation
(HU = 1000 (mu - mu_water) / mu_water, so air is -1000 and mu is proportional to HU + 1000), and a sinogram is a
line integral of mu, so the CT scale keeps that line: ``unit = (HU - HU_AIR) / HU_SPAN`` puts air (and the
zero-padded outside of a scan) at 0 and the 12-bit CT range [-1024, 3071] in [0, 1). Values beyond it (metal)
go above 1 and are kept, not clipped.

Writing (:func:`ct_slice_bytes`): a copy of the source's dataset with the restored pixels stored back in its own
representation (the same bits, sign, slope and intercept; values clipped to what that representation holds), a
new SOPInstanceUID and SeriesInstanceUID (a derived image must never pose as the scanner's original: PACS
systems merge files that share UIDs), ImageType DERIVED\\SECONDARY and a SeriesDescription and
DerivationDescription saying what made it. Always uncompressed (explicit VR little endian): we do not re-encode
a compressed source. The bytes go through the package's atomic writers like every output.

Display (:func:`window_to_unit`): a PNG of a CT slice shows HU through a window (centre, width). The default is
the file's own first window, else soft tissue (centre 40, width 400), the usual reading window for a body slice.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageReadError, import_extra

#: Hounsfield units of the CT scale's zero (air, and the outside of the scanned circle) and its span
HU_AIR = -1024.0
HU_SPAN = 4096.0
#: soft tissue: the window a PNG of a CT slice uses when neither the user nor the file names one
SOFT_TISSUE_WINDOW = (40.0, 400.0)
DICOM_EXTRA_HINT = "pip install 'diffrestore[dicom]' (the pydicom package)"
DICOM_EXTENSIONS = (".dcm", ".dicom")


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """Whether the file is DICOM Part 10 (``DICM`` after the 128-byte preamble), or has a DICOM extension. No
    pydicom needed: this decides which reader (or which missing-extra message) a file gets."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _pydicom() -> Any:
    return import_extra("pydicom", "reading or writing DICOM", DICOM_EXTRA_HINT)


@dataclass(frozen=True)
class CTSlice:
    """A CT slice read from DICOM: Hounsfield units plus the dataset it came from (for writing back)."""

    hu: np.ndarray  # (H, W) float32
    path: Path
    dataset: Any = field(repr=False)  # pydicom.Dataset
    window: tuple[float, float] | None  # the file's first (centre, width), if it names one
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(W, H), as images report it."""
        return int(self.hu.shape[1]), int(self.hu.shape[0])


def _first(value: Any) -> float | None:
    """A DICOM number that may be multi-valued (WindowCenter can list several windows): its first value."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0] if len(value) else None
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rescale(dataset: Any) -> tuple[float, float]:
    slope = _first(dataset.get("RescaleSlope"))
    intercept = _first(dataset.get("RescaleIntercept"))
    return (1.0 if slope is None or slope == 0.0 else slope), (0.0 if intercept is None else intercept)


def read_ct_slice(path: str | os.PathLike[str]) -> CTSlice:
    """One CT slice in Hounsfield units (float32). ImageReadError (exit 2) for what is not one readable slice;
    MissingExtraError (exit 3) without pydicom."""
    path = Path(path)
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError as error:
        raise ImageReadError(f"{path}: not a DICOM file ({error})",
                             hint="give a DICOM CT slice (.dcm), or a PNG / TIFF image") from error
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ImageReadError(f"{path}: truncated or corrupt DICOM file ({type(error).__name__}: {error})",
                             hint="export the slice again from the scanner or viewer") from error
    if "PixelData" not in dataset:
        raise ImageReadError(f"{path}: the DICOM file holds no pixel data (is it a report or a structure set?)",
                             hint="give one image slice")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ImageReadError(f"{path}: a multi-frame DICOM file ({frames} frames); this tool restores one slice",
                             hint="export the frames as single-slice files")
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise ImageReadError(f"{path}: colour DICOM ({dataset.get('PhotometricInterpretation')}); a CT slice has "
                             "one sample per pixel", hint="give a CT slice")
    try:
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for undecodable pixel data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        what = f"transfer syntax {syntax.name}" if syntax is not None else "its pixel data"
        raise ImageReadError(f"{path}: cannot decode {what} ({type(error).__name__}: {error})",
                             hint="save the slice uncompressed (e.g. with dcmdjpeg or gdcmconv --raw)") from error
    if stored.ndim != 2:
        raise ImageReadError(f"{path}: pixel data of shape {tuple(stored.shape)}, not one 2-D slice",
                             hint="give one image slice")
    slope, intercept = _rescale(dataset)
    hu = (stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)
    centre, width = _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    window = (centre, width) if centre is not None and width is not None and width > 0 else None
    notes: list[str] = []
    if dataset.get("Modality") not in (None, "CT"):
        notes.append(f"the file's modality is {dataset.get('Modality')}, not CT: its values are read as "
                     "Hounsfield units all the same")
    return CTSlice(hu=hu, path=path, dataset=dataset, window=window, notes=tuple(notes))


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    """Hounsfield units -> the CT scale (air 0, linear in attenuation), float32."""
    return ((np.asarray(hu, dtype=np.float32) - np.float32(HU_AIR)) / np.float32(HU_SPAN)).astype(np.float32)


def unit_to_hu(unit: np.ndarray) -> np.ndarray:
    """The CT scale -> Hounsfield units, float32 (the inverse of :func:`hu_to_unit`)."""
    return (np.asarray(unit, dtype=np.float32) * np.float32(HU_SPAN) + np.float32(HU_AIR)).astype(np.float32)


def window_to_unit(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """A display window (centre, width) in HU -> [0, 1] grey levels, clipped: what a PNG of the slice shows."""
    centre, width = (float(v) for v in window)
    if not width > 0:
        raise ValueError(f"a display window needs a positive width, got {width}")
    low = centre - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)


def display_window(source: CTSlice | None, override: tuple[float, float] | None = None) -> tuple[float, float]:
    """The window for a PNG: the user's, else the file's own, else soft tissue (``SOFT_TISSUE_WINDOW``)."""
    if override is not None:
        return override
    if source is not None and source.window is not None:
        return source.window
    return SOFT_TISSUE_WINDOW


def _stored_values(dataset: Any, hu: np.ndarray) -> tuple[np.ndarray, int]:
    """HU -> the source's stored integers (its slope, intercept, bits and sign), rounded and clipped to the range
    those bits hold; the number of pixels clipped."""
    slope, intercept = _rescale(dataset)
    bits_allocated = int(dataset.get("BitsAllocated", 16))
    bits_stored = int(dataset.get("BitsStored", bits_allocated))
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    values = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    clipped = int(((values < low) | (values > high)).sum())
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16,
             (32, False): np.uint32, (32, True): np.int32}.get((bits_allocated, signed))
    if dtype is None:
        raise ImageReadError(f"{dataset.filename}: {bits_allocated}-bit pixels cannot be written back",
                             hint="save the restoration as PNG or TIFF instead")
    return np.clip(values, low, high).astype(dtype), clipped


def ct_slice_bytes(source: CTSlice, hu: np.ndarray, *, description: str = "restored by diffrestore") -> bytes:
    """The restored slice ``hu`` ((H, W) Hounsfield units, the source's size) as a DICOM file: the source's
    header, new SOP and series UIDs, DERIVED\\SECONDARY, pixels in the source's representation."""
    pydicom = _pydicom()
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    hu = np.asarray(hu)
    if hu.shape != source.hu.shape:
        raise ValueError(f"restored slice of shape {hu.shape} does not match the source's {source.hu.shape}")
    # A deep copy: pydicom sets an existing element's value in place, so a shallow copy would rewrite the
    # source's UIDs too (and a second output from the same source would share them).
    dataset = copy.deepcopy(source.dataset)
    if getattr(dataset, "file_meta", None) is None:
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
    stored, _ = _stored_values(source.dataset, hu)
    sop_uid = generate_uid()
    dataset.SOPInstanceUID = sop_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    dataset.SeriesInstanceUID = generate_uid()
    dataset.ImageType = ["DERIVED", "SECONDARY"]
    dataset.SeriesDescription = f"{source.dataset.get('SeriesDescription', '')} ({description})".strip()
    dataset.DerivationDescription = description[:1024]
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.PixelData = stored.tobytes()
    dataset.Rows, dataset.Columns = int(stored.shape[0]), int(stored.shape[1])
    if "NumberOfFrames" in dataset:
        del dataset.NumberOfFrames
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def clipped_on_write(source: CTSlice, hu: np.ndarray) -> int:
    """How many pixels of ``hu`` the source's pixel representation cannot hold (they are clipped on write)."""
    return _stored_values(source.dataset, hu)[1]


# ------------------------------------------------------------------------------ CT arrays: .npy, PNG, TIFF

#: files a CT command reads besides DICOM: arrays of the CT scale (or sinograms) and grey images of it
CT_ARRAY_EXTENSIONS = (".npy", ".tif", ".tiff", ".png")


@dataclass(frozen=True)
class CTArray:
    """A 2-D array read from .npy, PNG or TIFF: a slice on the CT scale or a sinogram, as stored (no windowing)."""

    values: np.ndarray  # (rows, cols) float32: integer images divided by their white level, floats as they are
    path: Path
    format: str  # "npy", "png", "tiff"
    bit_depth: int  # 8 or 16 for integer images, 32 for floats
    notes: tuple[str, ...] = ()


def read_ct_array(path: str | os.PathLike[str]) -> CTArray:
    """One 2-D array: ``.npy`` of shape (rows, cols) or (1, rows, cols), any real dtype (no pickle is loaded);
    an 8- or 16-bit grey PNG / TIFF (values / white level, so 0..1) or a 32-bit float TIFF (values as stored).
    ImageReadError (exit 2) for anything else."""
    from .common import _limit
    from .read import _decode

    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ImageReadError(f"{path}: not a readable NumPy .npy array ({error})",
                                 hint="save it with numpy.save(path, array)") from error
        if array.dtype.kind not in "biuf":
            raise ImageReadError(f"{path}: holds values of dtype {array.dtype}, not real numbers")
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ImageReadError(f"{path}: an array of shape {tuple(array.shape)}; expected one 2-D array "
                                 "(rows, cols) or (1, rows, cols)")
        values = array.astype(np.float32)
        fmt, depth = "npy", 32
    else:
        decoded = _decode(path, "CT image", _limit(None), allow_float=True)
        if decoded.pixels.shape[2] != 1:
            raise ImageReadError(f"{path}: a colour image; a CT slice or sinogram has one grey channel",
                                 hint="save it as a grey (mode L or I;16) image or a float TIFF")
        values = decoded.pixels[:, :, 0].astype(np.float32) / np.float32(decoded.max_value)
        fmt, depth = ("tiff" if decoded.format == "TIFF" else decoded.format.lower()), decoded.bit_depth
    if not np.isfinite(values).all():
        raise ImageReadError(f"{path}: holds NaN or infinite values")
    return CTArray(values=values, path=path, format=fmt, bit_depth=depth)


def array_file_bytes(values: np.ndarray, suffix: str) -> bytes:
    """A 2-D float32 array as the bytes of a ``.npy`` file or a 32-bit float TIFF (``suffix``), values unchanged."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    buffer = io.BytesIO()
    if suffix.lower() == ".npy":
        np.save(buffer, values, allow_pickle=False)
    else:
        from PIL import Image

        Image.fromarray(values).save(buffer, format="TIFF")  # float32 -> mode F
    return buffer.getvalue()
