"""Load and save images, masks and blur kernels without losing what the user's file had.

Tensors are ``(N, C, H, W)`` float32 in [-1, 1] ("tensor units"); C = 1 for grayscale, 3 for colour. What a
tensor cannot carry (alpha, bit depth, ICC profile, EXIF) travels beside it in :class:`LoadedImage` and is put
back by :func:`save_image`.

The package is split by job; each module's docstring documents its part:

:mod:`.common`
    the result types, the format tables and the decompression-bomb guard (pixel limit);
:mod:`.read`
    the formats and modes read, EXIF orientation, :func:`probe_image` and :func:`load_image`;
:mod:`.masks`
    the mask convention (white = missing), :func:`load_mask`, :func:`mask_from_alpha`, :func:`load_kernel`
    and :func:`to_channels`;
:mod:`.write`
    what each output format keeps or gives up, :func:`check_output_path` and :func:`save_image`;
:mod:`.png`
    the small PNG codec: it decodes the 16-bit colour PNGs Pillow truncates and encodes every 16-bit PNG;
:mod:`.damage`
    tells a damaged file of a supported format (cut, bad checksum) from a file that is no picture at all;
:mod:`.kernel_grid`
    kernel grids for spatially varying blur: a (rows, cols, kh, kw) ``.npy`` array or a folder of ROW_COL files;
:mod:`.dicom`
    CT slices in DICOM (the optional ``dicom`` extra): Hounsfield units in, the source's header out with new
    UIDs, the linear CT scale and display windows.

Import the public names from here; the submodules' private helpers are not an API.
"""

from __future__ import annotations

from .common import (
    ALPHA_MISSING_BELOW,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV,
    ImageInfo,
    LoadedImage,
    SavedImage,
)
from .masks import load_kernel, load_mask, mask_from_alpha, to_channels
from .read import load_image, probe_image
from .write import check_output_path, save_image

__all__ = [
    "ALPHA_MISSING_BELOW",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "ImageInfo",
    "LoadedImage",
    "SavedImage",
    "check_output_path",
    "load_image",
    "load_kernel",
    "load_mask",
    "mask_from_alpha",
    "probe_image",
    "save_image",
    "to_channels",
]
