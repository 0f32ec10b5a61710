"""Tell a damaged file of a supported format from a file that is no picture at all, from its structure alone.

Pillow answers "cannot identify image file" both for a text file and for a PNG cut after its header, and it
decodes some damaged files without a word (a PNG whose IDAT checksum is wrong, a PNG cut before IEND). So before
Pillow sees a file, :func:`structure_damage` walks the structure of the format its signature names and says what
is wrong in words ("the file ends inside its IDAT chunk", "CRC error in its IHDR chunk"); :mod:`.read` refuses
such a file as "truncated or corrupt". Only the structure is walked (chunks, segments, directories and the byte
ranges they announce); what lies inside the pixel data is the decoder's to judge. A check that meets something it
does not know (a BigTIFF, an unusual BMP header) says nothing and leaves the file to Pillow.

:func:`unsupported_variant` separates, among Pillow's refusals of a file of a supported format, the variants it
cannot decode (12-bit JPEG, 64-bit float TIFF) from damage, so that a valid file is never called corrupt.
"""

from __future__ import annotations

import io
import re
import struct

from .png import _png_damage

# (leading bytes, format name); a TIFF may be little- ("II") or big-endian ("MM"), classic (42) or BigTIFF (43).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)


def signature_format(data: bytes) -> str | None:
    """The supported format whose signature ``data`` starts with (PNG, JPEG, TIFF, WebP, BMP), else None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM" and len(data) >= 14 and (
        data[6:10] == b"\x00\x00\x00\x00"  # reserved bytes, zero in files of every writer we know
        or (len(data) >= 18 and struct.unpack("<I", data[14:18])[0] in _BMP_HEADER_SIZES)
    ):
        return "BMP"
    return None


def structure_damage(data: bytes) -> str | None:
    """What is wrong with the structure of a PNG, JPEG, TIFF, WebP or BMP file, in words; None when nothing
    is found (or the file is of no supported format: that is :mod:`.read`'s refusal to make)."""
    checks = {"PNG": _png_damage, "JPEG": _jpeg_damage, "TIFF": _tiff_damage, "WebP": _webp_damage,
              "BMP": _bmp_damage}
    name = signature_format(data)
    if name is None:
        return None
    try:
        return checks[name](data)
    except (struct.error, IndexError):  # a field the walk could not read: the bytes ran out
        return f"the file ends inside its {name} header"


# ------------------------------------------------------------------------------------------------------ JPEG

_JPEG_SEGMENTS = {0xC4: "Huffman table (DHT)", 0xDB: "quantisation table (DQT)", 0xDA: "scan header (SOS)",
                  0xDD: "restart interval (DRI)", 0xFE: "comment (COM)"}


def _jpeg_segment(marker: int) -> str:
    if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
        return "frame header (SOF)"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0} segment"
    return _JPEG_SEGMENTS.get(marker, f"0xFF{marker:02X} segment")


def _jpeg_damage(data: bytes) -> str | None:
    position = 2
    while True:
        if position + 2 > len(data):
            if position == 2:
                return "the file ends right after its start-of-image marker"
            return "the file ends among its header segments, before the image data"
        if data[position] != 0xFF:
            return None  # stray bytes between segments: libjpeg skips them with a warning; leave it to the decoder
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
            continue
        if marker == 0xD9:
            return "it ends (end-of-image marker) before any image data"
        if position + 4 > len(data):
            return f"the file ends inside its {_jpeg_segment(marker)}"
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            return None
        if position + 2 + length > len(data):
            return f"the file ends inside its {_jpeg_segment(marker)}"
        position += 2 + length
        if marker == 0xDA:
            break
    # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so 0xFFD9 after the first
    # scan header is the end of the image (of the first one, in a phone's MPO): without it the scan was cut.
    if data.rfind(b"\xff\xd9", position) < 0:  # searched from the end, where a whole file has it
        return "the file ends inside its image data (it has no end-of-image marker)"
    return None


# ------------------------------------------------------------------------------------------------------ TIFF


def _tiff_damage(data: bytes) -> str | None:
    if len(data) < 8:
        return "the file ends inside its 8-byte TIFF header"
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] == 43:
        return None  # BigTIFF: Pillow does not read it; its own refusal says so
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset < 8:
        return f"its header points to no image directory (offset {offset})"
    if offset + 2 > len(data):
        return f"the file ends ({len(data)} bytes) before its image directory, which should start at byte {offset}"
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    if offset + 2 + 12 * count > len(data):
        return f"the file ends inside its image directory (IFD of {count} entries at byte {offset})"
    return None


def _tiff_pixel_damage(tags: object, size: int) -> str | None:
    """Whether the strips or tiles a TIFF's directory lists lie past the end of the file."""
    get = getattr(tags, "get", None)
    if get is None:
        return None
    offsets, counts = get(273) or get(324), get(279) or get(325)
    if offsets is None or counts is None:
        return None
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    ends = [int(o) + int(c) for o, c in zip(offsets, counts, strict=False)]
    if ends and max(ends) > size:
        return f"the file ends inside its pixel data ({size:,} bytes; its directory lists data to byte {max(ends):,})"
    return None


# ------------------------------------------------------------------------------------------------ WebP, BMP


def _webp_damage(data: bytes) -> str | None:
    (size,) = struct.unpack("<I", data[4:8])
    if 8 + size > len(data):
        return f"the file ends after {len(data):,} of the {8 + size:,} bytes its RIFF header announces"
    if len(data) < 20:
        return "it holds no image chunk"
    return None


def _bmp_damage(data: bytes) -> str | None:
    if len(data) < 18:
        return "the file ends inside its BMP header"
    (header,) = struct.unpack("<I", data[14:18])
    if header in _BMP_HEADER_SIZES and len(data) < 14 + header:
        return "the file ends inside its BMP header"
    return None  # a header type Pillow does not know: its refusal names it


def pixel_data_damage(data: bytes, name: str, tags: object) -> str | None:
    """Whether the pixel data an opened TIFF or BMP announces lies past the end of the file (it was cut there).
    Checked after the pixel guard, so that a forged huge size meets the guard's message; ``tags`` is a TIFF's
    ``tag_v2``."""
    try:
        if name == "TIFF":
            return _tiff_pixel_damage(tags, len(data))
        if name == "BMP":
            return _bmp_pixel_damage(data)
    except (struct.error, IndexError, TypeError, ValueError):  # an odd field: the decoder judges the file
        return None
    return None


def _bmp_pixel_damage(data: bytes) -> str | None:
    (header,) = struct.unpack("<I", data[14:18])
    if header not in _BMP_HEADER_SIZES:
        return None
    (pixels_at,) = struct.unpack("<I", data[10:14])
    if header == 12:
        width, height, _, bits = struct.unpack("<hhHH", data[18:26])
        compression = 0
    else:
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
    if compression not in (0, 3, 6) or bits not in (1, 4, 8, 16, 24, 32) or width <= 0 or height == 0:
        return None  # compressed or unusual: the decoder measures what it needs
    stride = (width * bits + 31) // 32 * 4
    needed = pixels_at + stride * (abs(height) - 1) + (width * bits + 7) // 8  # the last row's padding may be absent
    if needed > len(data):
        return f"the file ends inside its pixel data ({len(data):,} of {needed:,} bytes)"
    return None


# ---------------------------------------------------------------------------------------- unsupported variants

_UNSUPPORTED = re.compile(r"unsupported|not supported|unknown pixel mode|cannot handle", re.IGNORECASE)
_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating point", 5: "complex integer",
                 6: "complex floating point"}


def _jpeg_frame(data: bytes) -> int | None:
    """The frame (SOF) marker of a JPEG: 0xC0 baseline, 0xC2 progressive, 0xC3 lossless..."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker in (0xDA, 0xD9):
            return None
        position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return None


def unsupported_variant(data: bytes, error: BaseException) -> str | None:
    """When Pillow refused a structurally whole file because it cannot decode that variant of the format: what
    the variant is, in words (for a TIFF from its directory). None when the refusal reads as damage."""
    text = " ".join(str(error).split())
    if signature_format(data) == "JPEG" and _jpeg_frame(data) in (0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF):
        # Pillow opens these and then fails inside the decoder with "broken data stream", which reads as damage.
        return "a lossless or hierarchical JPEG, which Pillow cannot decode"
    if not _UNSUPPORTED.search(text):
        return None
    if signature_format(data) == "TIFF" and "pixel mode" in text:
        return _tiff_layout(data) or text
    return text


def _tiff_layout(data: bytes) -> str | None:
    """'3 samples per pixel of 64-bit floating point', from the first directory of a TIFF."""
    from PIL import TiffImagePlugin

    try:
        directory = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
        stream = io.BytesIO(data)
        stream.seek(directory.next)
        directory.load(stream)
        samples = int(directory.get(277, 1))
        bits, kinds = directory.get(258, (1,)), directory.get(339, (1,))
        bits = int(bits[0] if isinstance(bits, tuple) else bits)
        kind = int(kinds[0] if isinstance(kinds, tuple) else kinds)
    except Exception:  # only the wording of the refusal depends on it
        return None
    per = "sample" if samples == 1 else "samples"
    return f"{samples} {per} per pixel of {bits}-bit {_SAMPLE_KINDS.get(kind, 'data')}, which Pillow cannot decode"
