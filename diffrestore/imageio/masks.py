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

from diffrestore.errors import ImageReadError, InputError, SizeMismatchError

from .common import _LUMA, LoadedImage, _corrupt, _limit, _read_bytes
from .read import _decode, _Decoded

if TYPE_CHECKING:
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
    """
    import torch

    if loaded.alpha is None:
        return None
    missing = loaded.alpha < np.float32(0.5)
    if not missing.any():
        return None
    return torch.from_numpy(np.ascontiguousarray(missing))[None, None]


def load_kernel(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """Read a blur kernel into a ``(kh, kw)`` float32 tensor that sums to 1.

    ``.npy``: any real 2-D array (loaded without pickle). Anything else: an image whose gray intensity is the
    kernel (colour is reduced to luminance, alpha is ignored, 16-bit and float TIFF keep their precision).
    Even sizes are accepted; where the centre of an even kernel lies is the blur operator's convention. Negative
    entries are accepted (estimated kernels can have small ones) but the sum must be positive and finite.
    """
    import torch

    path = Path(path)
    if path.suffix.lower() == ".npy":
        data = _read_bytes(path, "kernel")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ImageReadError(
                f"kernel '{path}' is not a plain numeric .npy array ({' '.join(str(exc).split())})",
                hint="save it with numpy.save(path, array)",
            ) from None
        except (OSError, EOFError) as exc:
            raise _corrupt(path, "kernel", exc) from None
        if not isinstance(array, np.ndarray):
            raise ImageReadError(f"kernel '{path}' holds several arrays; give one 2-D array")
        if array.dtype.kind not in "biuf":
            raise InputError(f"kernel '{path}' has dtype {array.dtype}; a blur kernel must be a real-valued 2-D array")
    else:
        decoded = _decode(path, "kernel", _limit(max_pixels), allow_float=True)
        array = _intensity(decoded)
    if array.ndim != 2:
        raise InputError(f"kernel '{path}' has shape {tuple(array.shape)}; a blur kernel must be a 2-D array (kh, kw)")
    if array.size == 0:
        raise InputError(f"kernel '{path}' is empty (shape {tuple(array.shape)})")
    kernel = array.astype(np.float32)
    if not np.isfinite(kernel).all():
        raise InputError(f"kernel '{path}' contains NaN or infinite values")
    total = float(kernel.sum())
    magnitude = float(np.abs(kernel).sum())
    if not total > 1e-6 * max(magnitude, 1e-30) or not np.isfinite(total):
        raise InputError(
            f"kernel '{path}' sums to {total:.3g}; a blur kernel needs a positive sum so it can be normalised",
            hint="an all-black kernel image or an all-zero array cannot be used",
        )
    return torch.from_numpy(np.ascontiguousarray(kernel / np.float32(total)))


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
