"""Masks and blur kernels read from files, and the gray <-> RGB channel conversion that priors need.

Masks
    White = missing (to be filled), black = known; any mode, thresholded at 50 % of the mode's range (a value
    counts as missing when it is strictly above half, so 128 of 255 and 32768 of 65535 are missing). Colour masks
    use luminance (ITU-R 601). A mask file with alpha is composited onto black first: transparent pixels are
    known, which is what an editor layer of white strokes on a transparent background means.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ImageReadError, InputError, SizeMismatchError
from .common import _LUMA, ALPHA_MISSING_BELOW, LoadedImage, _check_pixels, _corrupt, _limit, _read_bytes
from .read import _decode, _Decoded

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch


def _size_of(image_size: tuple[int, int] | LoadedImage) -> tuple[int, int]:
    if isinstance(image_size, LoadedImage):
        return image_size.size
    width, height = image_size
    return int(width), int(height)


def _intensity(decoded: _Decoded) -> np.ndarray:
    """(H, W) float32 in [0, 1]: gray value, or ITU-R 601 luminance of colour."""
    values = decoded.pixels.astype(np.float32) * np.float32(1.0 / decoded.max_value)
    if values.shape[2] == 3:
        weights = np.asarray(_LUMA, dtype=np.float32)
        return values @ weights
    return values[:, :, 0]


def load_mask(
    path: str | os.PathLike[str],
    image_size: tuple[int, int] | LoadedImage | None = None,
    *,
    invert: bool = False,
    max_pixels: int | None = None,
    size: tuple[int, int] | LoadedImage | None = None,
) -> torch.Tensor:
    """Read a mask file into a ``(1, 1, H, W)`` bool tensor, True = missing (white in the file).

    ``image_size`` (or its keyword alias ``size``, the name in the team contract) is the image's ``(W, H)`` or the
    :class:`LoadedImage` itself; a mask of another size raises
    :class:`~diffrestore.errors.SizeMismatchError` naming both sizes. Any mode and bit depth; a pixel is missing
    when its intensity is above 50 % of the mode's range. A mask with alpha is composited onto black first, so
    transparent pixels are known. ``invert=True`` swaps missing and known.
    """
    import torch

    if (image_size is None) == (size is None):
        raise TypeError("load_mask needs the image size: pass image_size (or size), not both")
    path = Path(path)
    width, height = _size_of(image_size if image_size is not None else size)  # type: ignore[arg-type]
    decoded = _decode(path, "mask", _limit(max_pixels))
    mask_height, mask_width = decoded.pixels.shape[:2]
    if (mask_width, mask_height) != (width, height):
        raise SizeMismatchError(
            f"mask '{path}' is {mask_width} x {mask_height} pixels but the image is {width} x {height}",
            hint="a mask must have exactly the image's size; resize it with nearest-neighbour",
        )
    level = _intensity(decoded)
    if decoded.alpha is not None:
        level = level * (decoded.alpha.astype(np.float32) * np.float32(1.0 / decoded.max_value))
    missing = level > np.float32(0.5)
    if invert:
        missing = ~missing
    return torch.from_numpy(np.ascontiguousarray(missing))[None, None]


def mask_from_alpha(loaded: LoadedImage) -> torch.Tensor | None:
    """The input's own transparency as an inpainting mask: alpha below 50 % = missing.

    Returns a ``(1, 1, H, W)`` bool tensor, or None when the image has no alpha or no pixel is transparent enough.
    :meth:`LoadedImage.alpha_mask_notes` says the same in words, for the user.
    """
    import torch

    if loaded.alpha is None:
        return None
    missing = loaded.alpha < np.float32(ALPHA_MISSING_BELOW)
    if not missing.any():
        return None
    return torch.from_numpy(np.ascontiguousarray(missing))[None, None]


_NPY_HINT = "save the kernel with numpy.save(path, kernel), or give it as a gray PNG or TIFF image"


def _read_npy(path: Path, limit: int, check_shape: Callable[[tuple[int, ...]], None] | None = None) -> np.ndarray:
    """The array of a ``.npy`` file, parsed from its header by hand: the header's shape is checked against the
    pixel limit before any byte of data is read, and no pickle is ever loaded (object arrays are refused from
    the header's dtype, so numpy never gets to suggest ``allow_pickle``). ``check_shape``: the header's shape
    check (default: one 2-D kernel); the pixel limit applies to the whole array."""
    from numpy.lib import format as npy

    from ..operators.kernels import check_kernel_shape

    data = _read_bytes(path, "kernel")
    stream = io.BytesIO(data)
    if not data.startswith(npy.MAGIC_PREFIX):
        raise ImageReadError(f"kernel '{path}' is not a NumPy .npy file (it lacks the .npy signature)", hint=_NPY_HINT)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy.read_array_header_2_0(stream)
        else:  # 3.0 only adds UTF-8 field names, i.e. structured arrays, which are no kernel anyway
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError...
        raise _corrupt(path, "kernel", exc) from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise InputError(
            f"kernel '{path}' holds values of dtype {dtype}; a blur kernel must be a real-valued 2-D array",
            hint="save a numeric array, e.g. numpy.save(path, numpy.asarray(kernel, dtype=numpy.float32))",
        )
    if check_shape is None:
        check_kernel_shape(tuple(shape), f"kernel '{path}'", error=InputError)
    else:
        check_shape(tuple(shape))
    count = int(np.prod(shape, dtype=np.int64))
    _check_pixels(path, "kernel", (count // max(int(shape[0]), 1), int(shape[0])), limit)
    offset = stream.tell()
    if len(data) - offset < count * dtype.itemsize:
        raise _corrupt(path, "kernel", f"{len(data) - offset} data bytes where the header announces "
                                       f"{count * dtype.itemsize}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def load_kernel(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """Read a blur kernel into a ``(kh, kw)`` float32 tensor that sums to 1; every check a kernel needs is here.

    ``.npy``: a real 2-D array (bool, integer or float; never unpickled). Anything else: an image whose gray
    intensity is the kernel (colour is reduced to luminance, alpha is ignored, 16-bit and float TIFF keep their
    precision). Even sizes are accepted; where the centre of an even kernel lies is the blur operator's
    convention. The values must be finite and >= 0, not all zero (``operators.kernels.normalise_kernel``). Every
    failure is an :class:`~diffrestore.errors.InputError` whose one-line message names the file and the fix.
    """
    import torch

    from ..operators.kernels import normalise_kernel

    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = _read_npy(path, _limit(max_pixels))
    else:
        array = _intensity(_decode(path, "kernel", _limit(max_pixels), allow_float=True))
    # float64 holds every value of every accepted dtype (and any byte order), so nothing overflows before the checks;
    # np.array copies, so the tensor never shares the read-only buffer of the file's bytes.
    values = torch.from_numpy(np.array(array, dtype=np.float64, order="C"))
    return normalise_kernel(values, f"kernel '{path}'", error=InputError)


def to_channels(tensor: torch.Tensor, channels: int) -> torch.Tensor:
    """Give an ``(N, C, H, W)`` tensor ``channels`` channels: gray is replicated to RGB, RGB becomes luminance."""
    have = int(tensor.shape[1])
    if have == channels:
        return tensor
    if have == 1 and channels == 3:
        return tensor.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        # Luminance is affine-invariant: weights sum to 1, so [-1, 1] maps to [-1, 1] without a shift.
        weights = tensor.new_tensor(_LUMA).view(1, 3, 1, 1)
        return (tensor * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot convert {have} channels to {channels}; only 1 <-> 3 is supported")
