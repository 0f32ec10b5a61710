"""A small PNG codec for what Pillow truncates: 16-bit RGB, RGBA and gray + alpha (8-bit works too, for testing).

Pillow reads 16-bit colour PNGs as 8-bit (measured with Pillow 13.0: it keeps the high byte only), so :mod:`.read`
decodes those here, and :mod:`.write` encodes every 16-bit PNG here. Only what that needs is supported: bit depths
8 and 16, colour types gray, gray + alpha, RGB and RGBA, Adam7 interlacing (decoding only), and the iCCP, eXIf
and tRNS chunks. :func:`_png_damage` checks the structure of every PNG read (each chunk whole and its CRC right,
IHDR first and valid, IEND present), which Pillow does only in part.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _PNGError(ValueError):
    pass


@dataclass
class _PNG:
    pixels: np.ndarray  # (H, W, 1 or 3)
    alpha: np.ndarray | None
    mode: str
    icc_profile: bytes | None
    exif: bytes | None


_COLOUR_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_UNFILTER_BLOCK = 1 << 24  # bytes of pixels per wavefront strip (its int16 work array is twice that)
# Adam7 passes as (first row, first column, row step, column step).
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def _png_ihdr(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) from a PNG's first chunk, or None if not a PNG."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = len(_PNG_SIGNATURE)
    while True:
        if position + 8 > len(data):
            raise _PNGError("the file ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 8 + length
        if end + 4 > len(data):
            raise _PNGError(f"the {kind.decode('latin-1')} chunk is cut off")
        body = data[position + 8 : end]
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise _PNGError(f"CRC error in the {kind.decode('latin-1')} chunk")
        yield kind, body
        if kind == b"IEND":
            return
        position = end + 4


# Bit depths PNG defines for each colour type (gray, RGB, palette, gray + alpha, RGBA).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _ihdr_damage(body: bytes) -> str | None:
    if len(body) != 13:
        return f"its IHDR header chunk is {len(body)} bytes long instead of 13"
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
    if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
        return f"its header gives an impossible size of {width} x {height} pixels"
    if depth not in _PNG_DEPTHS.get(colour, ()):
        return f"its header gives bit depth {depth} with colour type {colour}, a pair PNG does not define"
    if compression or filtering or interlace > 1:
        return "its header names a compression, filter or interlace method PNG does not define"
    return None


def _png_damage(data: bytes) -> str | None:
    """What is wrong with the structure of a file that starts like a PNG, in words, or None when its signature,
    its IHDR, every chunk (whole, with its CRC) and its IEND are in place. Pillow checks none of the CRCs after
    the header, and reads a file cut before IEND without a word: a damaged download must not pass as a picture."""
    if not data.startswith(_PNG_SIGNATURE):
        if _PNG_SIGNATURE.startswith(data):
            return "the file ends inside its PNG signature"
        return "its PNG signature is damaged (as a transfer in text mode does when it changes line endings)"
    position, seen, colour = len(_PNG_SIGNATURE), set(), -1
    while True:
        if position + 8 > len(data):
            if not seen:
                return "the file ends right after its PNG signature, before the IHDR header chunk"
            if b"IDAT" not in seen:
                return "the file ends before its image data (IDAT chunk)"
            return "the file ends before its IEND chunk (it was cut after the image data)"
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if not kind.isalpha() or not kind.isascii():
            return f"the chunk header at byte {position} is damaged"
        name = kind.decode("ascii")
        end = position + 8 + length
        if length >= 1 << 31 or end + 4 > len(data):
            return f"the file ends inside its {name} chunk"
        body = data[position + 8 : end]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != struct.unpack(">I", data[end : end + 4])[0]:
            return f"CRC error in its {name} chunk: its bytes were altered"
        if not seen and kind != b"IHDR":
            return f"its first chunk is {name}, not the IHDR header"
        if kind == b"IHDR":
            problem = _ihdr_damage(body)
            if problem:
                return problem
            colour = body[9]
        if kind == b"IDAT" and colour == 3 and b"PLTE" not in seen:
            return "it is a palette PNG without its palette (PLTE chunk)"
        seen.add(kind)
        if kind == b"IEND":
            return None if b"IDAT" in seen else "it has no image data (IDAT chunk)"
        position = end + 4


def _unfilter(rows: np.ndarray, bytes_per_pixel: int) -> np.ndarray:
    """Undo PNG scanline filters. ``rows`` is (h, 1 + w * bpp) uint8 with the filter byte first; returns (h, w*bpp).

    Sub, Average and Paeth depend on the reconstructed pixel to the left, so a row cannot be undone in one numpy
    call. Pixel (r, c) depends only on (r, c-1), (r-1, c) and (r-1, c-1); every pixel on an anti-diagonal
    r + c = d is therefore independent of the others, and we sweep the h + w - 1 diagonals, each in one vectorised
    step. Stored "skewed" (diagonal-major), each diagonal and its neighbours are plain slices.
    """
    height = rows.shape[0]
    filters = rows[:, 0]
    if height == 0:
        return rows[:, 1:]
    if filters.max() > 4:
        raise _PNGError(f"unknown scanline filter {int(filters.max())}")
    raw = rows[:, 1:]
    width = raw.shape[1] // bytes_per_pixel
    bpp = bytes_per_pixel
    if filters.max() <= 2:  # None / Sub / Up only: one cheap step per row
        out = np.empty_like(raw)
        previous = np.zeros(raw.shape[1], dtype=np.uint8)
        for r in range(height):
            line = raw[r]
            if filters[r] == 1:
                line = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
            elif filters[r] == 2:
                line = line + previous  # uint8 arithmetic wraps modulo 256, as PNG wants
            out[r] = line
            previous = out[r]
        return out

    # The skewed work arrays hold (strip + width) x strip pixels; strips of rows keep them near 32 MiB.
    strip = max(1, min(height, _UNFILTER_BLOCK // ((width + 1) * bpp)))
    out = np.empty_like(raw)
    previous = np.zeros((width, bpp), dtype=np.int16)
    for start in range(0, height, strip):
        block = raw[start : start + strip].reshape(-1, width, bpp)
        out[start : start + strip] = _unfilter_wavefront(block, filters[start : start + strip], previous)
        previous = out[start + block.shape[0] - 1].reshape(width, bpp).astype(np.int16)
    return out


def _unfilter_wavefront(pixels: np.ndarray, filters: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Anti-diagonal sweep over (h, w, bpp) filtered bytes; ``previous`` is the reconstructed row above them."""
    height, width, bpp = pixels.shape
    r_index = np.arange(height)[:, None]
    c_index = np.arange(width)[None, :]
    rows_of = np.broadcast_to(r_index, (height, width))
    # skew_x[d, r] = filtered pixel (r, d - r); recon[d + 2, r + 1] = reconstructed pixel (r, d - r). Row 0 of
    # recon is the row above the block (pixel (-1, c) at recon[c + 1, 0]); diagonals 0 and 1 stay zero.
    skew_x = np.zeros((height + width, height, bpp), dtype=np.uint8)
    skew_x[(r_index + c_index).ravel(), rows_of.ravel()] = pixels.reshape(-1, bpp)
    recon = np.zeros((height + width + 1, height + 1, bpp), dtype=np.int16)
    recon[1 : width + 1, 0] = previous
    kinds = filters.astype(np.int16)[:, None]
    for d in range(height + width - 1):
        r0, r1 = max(0, d - width + 1), min(height, d + 1)
        left = recon[d + 1, r0 + 1 : r1 + 1]
        up = recon[d + 1, r0:r1]
        up_left = recon[d, r0:r1]
        kind = kinds[r0:r1]
        estimate = left + up - up_left
        dist_left, dist_up, dist_ul = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
        paeth = np.where(
            (dist_left <= dist_up) & (dist_left <= dist_ul), left, np.where(dist_up <= dist_ul, up, up_left)
        )
        predictor = np.where(
            kind == 0,
            0,
            np.where(kind == 1, left, np.where(kind == 2, up, np.where(kind == 3, (left + up) >> 1, paeth))),
        )
        recon[d + 2, r0 + 1 : r1 + 1] = (skew_x[d, r0:r1].astype(np.int16) + predictor) & 0xFF
    return recon[r_index + c_index + 2, rows_of + 1].astype(np.uint8).reshape(height, width * bpp)


# Pillow's own cap on a compressed PNG text or profile chunk (1 MiB): a small chunk can inflate a thousandfold.
_MAX_ICC_BYTES = 1 << 20


def _icc_from_chunk(body: bytes) -> bytes | None:
    """The ICC profile of an iCCP chunk, inflated at most to ``_MAX_ICC_BYTES`` (a zip bomb would exhaust memory
    before the pixel guard could see it); None when the chunk is unreadable (the pixels are still fine)."""
    name_end = body.find(b"\x00")
    if name_end < 0:
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(body[name_end + 2 :], _MAX_ICC_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:
        raise _PNGError(f"the iCCP colour profile inflates to more than {_MAX_ICC_BYTES} bytes")
    return profile or None


def _png_decode(data: bytes) -> _PNG:
    header = _png_ihdr(data)
    if header is None:
        raise _PNGError("not a PNG file")
    width, height, depth, colour, interlace = header
    if depth not in (8, 16) or colour not in _COLOUR_CHANNELS:
        raise _PNGError(f"unsupported bit depth {depth} / colour type {colour}")
    channels = _COLOUR_CHANNELS[colour]
    bpp = channels * depth // 8
    icc = exif = None
    transparent_key: bytes | None = None
    decompressor = zlib.decompressobj()
    passes = list(_ADAM7) if interlace == 1 else [(0, 0, 1, 1)]
    sizes = [((height - y0 + dy - 1) // dy, (width - x0 + dx - 1) // dx) for (y0, x0, dy, dx) in passes]
    expected = sum(h * (1 + w * bpp) for h, w in sizes if h and w)
    pieces: list[bytes] = []
    received = 0
    for kind, body in _png_chunks(data):
        if kind == b"IDAT":
            try:
                piece = decompressor.decompress(body, max(expected - received, 0) + 1)
            except zlib.error as exc:
                raise _PNGError(f"broken compressed data: {exc}") from None
            received += len(piece)
            if received > expected:
                raise _PNGError("more pixel data than the header's size")
            pieces.append(piece)
        elif kind == b"iCCP":
            icc = _icc_from_chunk(body)
        elif kind == b"eXIf":
            exif = body
        elif kind == b"tRNS" and colour in (0, 2):
            transparent_key = body
    stream = b"".join(pieces)
    if len(stream) < expected:
        raise _PNGError(f"image data ends early ({len(stream)} of {expected} bytes)")
    dtype = np.dtype(">u2") if depth == 16 else np.dtype(np.uint8)
    image = np.zeros((height, width, channels), dtype=np.uint16 if depth == 16 else np.uint8)
    offset = 0
    for (y0, x0, dy, dx), (h, w) in zip(passes, sizes, strict=True):
        if not h or not w:
            continue
        size = h * (1 + w * bpp)
        rows = np.frombuffer(stream, dtype=np.uint8, count=size, offset=offset).reshape(h, 1 + w * bpp)
        offset += size
        samples = _unfilter(rows, bpp).reshape(-1).view(dtype).reshape(h, w, channels)
        image[y0::dy, x0::dx] = samples
    alpha = None
    if channels in (2, 4):
        alpha = np.ascontiguousarray(image[:, :, -1])
        image = np.ascontiguousarray(image[:, :, :-1])
    elif transparent_key is not None and len(transparent_key) == 2 * channels:
        key = np.frombuffer(transparent_key, dtype=">u2").astype(image.dtype)
        top = 65535 if depth == 16 else 255
        alpha = np.where((image == key).all(axis=2), 0, top).astype(image.dtype)
    suffix = ";16" if depth == 16 else ""
    mode = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}[colour] + suffix
    if mode == "L;16":
        mode = "I;16"
    return _PNG(pixels=image, alpha=alpha, mode=mode, icc_profile=icc, exif=exif)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _filter_rows(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Choose per row the filter with the smallest sum of |signed residual| (libpng's heuristic); (h, 1 + S)."""
    height, stride = raw.shape
    x = raw.astype(np.int16)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    up_left = np.zeros_like(x)
    up_left[1:, bpp:] = x[:-1, :-bpp]
    estimate = left + up - up_left
    dist_left, dist_up, dist_ul = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    paeth = np.where((dist_left <= dist_up) & (dist_left <= dist_ul), left, np.where(dist_up <= dist_ul, up, up_left))
    candidates = np.stack([x, x - left, x - up, x - ((left + up) >> 1), x - paeth]) & 0xFF  # (5, h, S)
    cost = np.minimum(candidates, 256 - candidates).sum(axis=2)  # residual as a signed byte
    choice = cost.argmin(axis=0)
    out = np.empty((height, stride + 1), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = candidates[choice, np.arange(height)]
    return out


def _png_encode(
    pixels: np.ndarray, *, bit_depth: int, icc_profile: bytes | None = None, exif: bytes | None = None
) -> bytes:
    """Encode (H, W, C) uint8 or uint16 pixels, C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)."""
    height, width, channels = pixels.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else np.uint8
    raw = np.ascontiguousarray(pixels.astype(dtype)).view(np.uint8).reshape(height, -1)
    bpp = channels * bit_depth // 8
    # Level 4: measured on a noisy 4-megapixel RGBA16 image, 5x faster than level 6 for 2 % larger files.
    compressor = zlib.compressobj(4)
    blocks = []
    # Row blocks bound the memory of the five candidate filters on large images.
    step = max(1, (1 << 22) // max(raw.shape[1], 1))
    for start in range(0, height, step):
        block = raw[max(start - 1, 0) : start + step]
        filtered = _filter_rows(block, bpp)
        blocks.append(compressor.compress((filtered[1:] if start else filtered).tobytes()))
    blocks.append(compressor.flush())
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        out.append(_png_chunk(b"eXIf", body))
    compressed = b"".join(blocks)
    for start in range(0, len(compressed), 1 << 20):
        out.append(_png_chunk(b"IDAT", compressed[start : start + (1 << 20)]))
    if not compressed:
        out.append(_png_chunk(b"IDAT", b""))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)
