"""What every part of image I/O shares: the result types, the format tables and the decompression-bomb guard.

Decompression bombs
    The header's pixel count is checked before any pixel is decoded. The limit is ``max_pixels`` when given,
    else the environment variable ``DIFFRESTORE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS` (Pillow's own
    default, about 179 megapixels: a 16k x 11k image).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile

from ..errors import ImageReadError, UsageError

if TYPE_CHECKING:
    import torch

#: Lower-case suffixes the CLI treats as images when it scans a folder (and the suffixes :func:`save_image` accepts).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

#: Pillow's own default (``Image.MAX_IMAGE_PIXELS``): 178,956,970 pixels, e.g. 16384 x 10922.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "DIFFRESTORE_MAX_PIXELS"

_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
# Phone JPEGs that Pillow reports as "MPO" (a JPEG with an extra preview frame) come through the JPEG opener.
_READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
_SUPPORTED_TEXT = "PNG, JPEG, WebP, TIFF, BMP"
# ITU-R 601 luma, the weights Pillow uses for RGB -> L, so our masks and kernels agree with other tools.
_LUMA = (0.299, 0.587, 0.114)
#: When an image's own transparency is the inpainting mask, a pixel whose alpha is below this fraction of opaque
#: is missing (to be filled); every other pixel is known, semi-transparent ones included.
ALPHA_MISSING_BELOW = 0.5


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says (no pixels decoded)."""

    path: Path
    format: str
    mode: str
    size: tuple[int, int]  # (W, H) as stored, before EXIF orientation


@dataclass(eq=False)
class LoadedImage:
    """A decoded image: the tensor plus everything :func:`save_image` needs to write it back faithfully."""

    tensor: torch.Tensor  # (1, C, H, W) float32 in [-1, 1], C = 1 (gray) or 3 (colour)
    path: Path
    format: str  # Pillow's format name of the file: "PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP"
    mode: str  # the file's mode: Pillow's name, or "RGB;16" / "RGBA;16" / "LA;16" for 16-bit PNGs we decode
    bit_depth: int  # 8 or 16
    size: tuple[int, int]  # (W, H) after EXIF orientation, equals the tensor's
    alpha: np.ndarray | None = None  # (H, W) float32 in [0, 1]; None when the file has no alpha
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied to the pixels and reset to 1 here
    notes: tuple[str, ...] = ()  # what reading changed: CMYK converted to RGB, 16-bit colour TIFF read as 8-bit...

    @property
    def channels(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None

    def alpha_mask_notes(self) -> tuple[str, ...]:
        """What to tell the user when this image's transparency serves as its inpainting mask: how many pixels
        are filled, that the result is saved without alpha, and how semi-transparent pixels were taken. Empty
        when the image has no pixel transparent enough to be missing (then it cannot be its own mask)."""
        if self.alpha is None:
            return ()
        missing = int((self.alpha < ALPHA_MISSING_BELOW).sum())
        if not missing:
            return ()
        percent = f"{ALPHA_MISSING_BELOW:.0%}".replace("%", " %")
        notes = [
            f"its transparency is the inpainting mask: {missing:,} pixels with alpha below {percent} are filled, "
            "and the result is saved opaque (without alpha)"
        ]
        partial = int(((self.alpha > 0) & (self.alpha < 1)).sum())
        if partial:
            notes.append(
                f"{partial:,} pixels are semi-transparent: those with alpha below {percent} count as missing, the "
                "others as known with their stored colour"
            )
        return tuple(notes)


@dataclass(frozen=True)
class SavedImage:
    """What :func:`save_image` wrote, and what the output format could not keep."""

    path: Path
    format: str
    mode: str  # "L", "LA", "RGB", "RGBA"
    bit_depth: int
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------------------------
# Reading guards shared by images, masks and kernels: the pixel limit, Pillow's globals, file and corruption errors


def _limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        if max_pixels <= 0:
            raise UsageError(f"max_pixels must be a positive number of pixels, not {max_pixels}")
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive whole number of pixels",
            hint=f"unset it or give e.g. {MAX_PIXELS_ENV}=400000000",
        )
    return value


# Pillow's decompression-bomb limit and truncated-image switch are process globals; we set them for the duration
# of one read and put them back, under a lock so two threads reading at once do not undo each other.
_PILLOW_LOCK = threading.RLock()


@contextlib.contextmanager
def _pillow_guard() -> Iterator[None]:
    """Our own bomb check replaces Pillow's; truncated files are errors; Pillow's warnings stay inside."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{what} '{path}' does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise ImageReadError(f"{what} '{path}' is a folder, not a file", hint="give an image file") from None
    except PermissionError:
        raise ImageReadError(
            f"{what} '{path}' cannot be read: permission denied", hint="check its permissions"
        ) from None
    except OSError as exc:
        raise ImageReadError(f"{what} '{path}' cannot be read: {exc.strerror or exc}") from None
    if not data:
        raise ImageReadError(f"{what} '{path}' is empty (0 bytes)", hint="re-export or re-download it")
    return data


def _corrupt(path: Path, what: str, detail: object) -> ImageReadError:
    """The one-line refusal of a damaged file; ``detail`` is the decoder's exception or our own finding."""
    if isinstance(detail, MemoryError):  # a size within the pixel limit that this machine still cannot hold
        return ImageReadError(f"{what} '{path}' does not fit in the memory available to decode it",
                              hint=f"free memory, or lower {MAX_PIXELS_ENV} to refuse such sizes up front")
    text = " ".join(str(detail).split()) or type(detail).__name__
    if isinstance(detail, Exception) and not isinstance(detail, (OSError, ValueError, SyntaxError, EOFError)):
        # IndexError('list index out of range') or KeyError(273) say little without their type
        text = f"{type(detail).__name__}: {text}"
    if len(text) > 200:
        text = text[:197] + "..."
    return ImageReadError(f"{what} '{path}' is truncated or corrupt ({text})", hint="re-export or re-download it")


def _check_pixels(path: Path, what: str, size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{what} '{path}' claims an empty size of {width} x {height} pixels")
    if width * height > limit:
        raise ImageReadError(
            f"{what} '{path}' claims {width} x {height} = {width * height:,} pixels, above the limit of "
            f"{limit:,} (a guard against decompression bombs)",
            hint=f"if the file is genuine, raise the limit with {MAX_PIXELS_ENV}={width * height}",
        )
