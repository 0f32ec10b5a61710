"""Image files for the imageio tests: a plain PNG writer independent of the module under test, random
8- and 16-bit pixels, and small checks shared by the imageio test modules."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from diffrestore.imageio import LoadedImage

RNG = np.random.default_rng(1234)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def plain_png(pixels: np.ndarray, depth: int, *, interlace: bool = False, chunks: tuple[bytes, ...] = ()) -> bytes:
    """A minimal PNG writer, independent of the module: filter type 0 on every row, optional Adam7."""
    height, width, channels = pixels.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if depth == 16 else np.uint8
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    stream = b""
    for y0, x0, dy, dx in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            stream += b"\x00" + row.astype(dtype).tobytes()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 1 if interlace else 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + b"".join(chunks)
        + _chunk(b"IDAT", zlib.compress(stream))
        + _chunk(b"IEND", b"")
    )


def rand8(h: int, w: int, c: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8)


def rand16(h: int, w: int, c: int) -> np.ndarray:
    return RNG.integers(0, 65536, (h, w, c), dtype=np.uint16)


def as_uint(loaded: LoadedImage) -> np.ndarray:
    """(H, W, C [+ alpha]) integers recovered from the tensor with the documented mapping (tests use float64)."""
    top = 65535 if loaded.bit_depth == 16 else 255
    values = loaded.tensor[0].double().numpy().transpose(1, 2, 0)
    out = np.rint((values + 1) / 2 * top)
    if loaded.alpha is not None:
        out = np.concatenate([out, np.rint(loaded.alpha.astype(np.float64) * top)[:, :, None]], axis=2)
    return out.astype(np.int64)


def pil_array(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        array = np.asarray(im)
    return array if array.ndim == 3 else array[:, :, None]


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def assert_one_line(error: BaseException, *needles: str) -> None:
    text = str(error)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def one_line(error: BaseException, *needles: str) -> str:
    """The error's message, checked to be one line without a traceback and to contain each of ``needles``."""
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text
