"""Damaged files of every supported format, cut at each structural boundary or with a bad checksum, and files in
odd modes: each gets the right class of message (diffrestore/imageio/read.py, damage.py, png.py).

The classes, one line each, naming the file and the fix, exit code 2:
- damage: "is truncated or corrupt (what is wrong)" (re-export or re-download it); never "is it really a picture?";
- a variant Pillow cannot decode (12-bit JPEG, 64-bit float TIFF): "is a TIFF of a kind this tool cannot decode";
- no picture at all: "is not an image this tool can read", the only class that doubts the file is a picture.
A bad CRC is never accepted, in a critical chunk or an ancillary one, whatever Pillow's LOAD_TRUNCATED_IMAGES.
Files in odd but valid modes still load (the structure checks refuse nothing that is whole).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_support import fast, make_tiny_model, run_main
from image_files import one_line, plain_png
from PIL import Image, ImageFile, PngImagePlugin

from diffrestore.errors import EXIT_USAGE, ImageReadError
from diffrestore.imageio import load_image, load_kernel, load_mask, probe_image

RNG = np.random.default_rng(33)
SIZE = (16, 12)  # (W, H)
DAMAGE, VARIANT, NOT_IMAGE = "truncated or corrupt", "of a kind this tool cannot decode", "is not an image"
CLASSES = (DAMAGE, VARIANT, NOT_IMAGE)


def _picture(mode: str = "RGB") -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).convert(mode)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


# --------------------------------------------------------------------------------------- independent walkers


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(kind, offset of the chunk, body length) of each chunk, walked here independently of the package."""
    chunks, position = [], 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.append((kind, position, length))
        position += 12 + length
    return chunks


def _chunk(data: bytes, kind: bytes) -> tuple[int, int]:
    return next((at, length) for k, at, length in _png_chunks(data) if k == kind)


def _png_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a tEXt chunk before the image data")
    return _encode(_picture(), "PNG", pnginfo=info)


def _flip_crc(data: bytes, kind: bytes) -> bytes:
    at, length = _chunk(data, kind)
    out = bytearray(data)
    out[at + 8 + length] ^= 0xFF
    return bytes(out)


def _flip_body(data: bytes, kind: bytes) -> bytes:
    """One bit of the chunk's data changed, its CRC left as it was: the damage a bad disk or download does."""
    at, length = _chunk(data, kind)
    out = bytearray(data)
    out[at + 8 + length // 2] ^= 0x04
    return bytes(out)


def _png_cut(where: str) -> Callable[[], bytes]:
    def cut() -> bytes:
        data = _encode(_picture(), "PNG")
        ihdr_at, _ = _chunk(data, b"IHDR")
        idat_at, idat_length = _chunk(data, b"IDAT")
        iend_at, _ = _chunk(data, b"IEND")
        ends = {"inside the signature": 5, "after the signature": 8, "inside IHDR": ihdr_at + 14,
                "after IHDR": idat_at, "inside IDAT": idat_at + 8 + idat_length // 2, "before IEND": iend_at,
                "inside IEND": iend_at + 6}
        return data[: ends[where]]

    return cut


def _png_header(depth: int, colour: int, width: int = 2, interlace: int = 0, palette: bool = False) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, 2, depth, colour, 0, 0, interlace)
    plte = chunk(b"PLTE", bytes(range(12))) if palette else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def _jpeg_scan_start(data: bytes) -> int:
    return data.index(b"\xff\xda")


def _jpeg(cut: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: cut(_encode(_picture(), "JPEG", quality=90))


def _jpeg_frame(precision: int | None = None, marker: int | None = None) -> Callable[[], bytes]:
    def patch() -> bytes:
        data = bytearray(_encode(_picture(), "JPEG"))
        sof = data.index(b"\xff\xc0")
        if precision is not None:
            data[sof + 4] = precision
        if marker is not None:
            data[sof + 1] = marker
        return bytes(data)

    return patch


def _tiff(cut: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: cut(_encode(_picture(), "TIFF"))


def _tiff_ifd(data: bytes) -> int:
    return struct.unpack("<I", data[4:8])[0]


def _tiff_strip(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as tiff:
        return int(tiff.tag_v2[273][0])


def _tifffile(array_of: Callable[[], np.ndarray], **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        tifffile = pytest.importorskip("tifffile")
        out = io.BytesIO()
        tifffile.imwrite(out, array_of(), **options)
        return out.getvalue()

    return make


def _bmp_cut(end: Callable[[bytes], int]) -> Callable[[], bytes]:
    def cut() -> bytes:
        data = _encode(_picture(), "BMP")
        return data[: end(data)]

    return cut


def _webp_cut(end: Callable[[bytes], int]) -> Callable[[], bytes]:
    def cut() -> bytes:
        data = _encode(_picture(), "WEBP", quality=80)
        return data[: end(data)]

    return cut


# ------------------------------------------------------------------------------------------------ the table

# (file name, bytes, class, words the message must hold, found from the header alone: probe_image refuses it too)
CASES: list[tuple[str, Callable[[], bytes], str, tuple[str, ...], bool]] = [
    # PNG cut at every structural boundary
    ("sig.png", _png_cut("inside the signature"), DAMAGE, ("PNG signature",), True),
    ("after_sig.png", _png_cut("after the signature"), DAMAGE, ("after its PNG signature",), True),
    ("in_ihdr.png", _png_cut("inside IHDR"), DAMAGE, ("inside its IHDR chunk",), True),
    ("after_ihdr.png", _png_cut("after IHDR"), DAMAGE, ("before its image data",), True),
    ("in_idat.png", _png_cut("inside IDAT"), DAMAGE, ("inside its IDAT chunk",), True),
    ("before_iend.png", _png_cut("before IEND"), DAMAGE, ("before its IEND chunk",), True),
    ("in_iend.png", _png_cut("inside IEND"), DAMAGE, ("IEND",), True),
    # PNG checksums: critical and ancillary chunks, the CRC itself or the data it guards
    ("crc_ihdr.png", lambda: _flip_crc(_encode(_picture(), "PNG"), b"IHDR"), DAMAGE, ("CRC error", "IHDR"), True),
    ("crc_idat.png", lambda: _flip_crc(_encode(_picture(), "PNG"), b"IDAT"), DAMAGE, ("CRC error", "IDAT"), True),
    ("bit_idat.png", lambda: _flip_body(_encode(_picture(), "PNG"), b"IDAT"), DAMAGE, ("CRC error", "IDAT"), True),
    ("crc_iend.png", lambda: _flip_crc(_encode(_picture(), "PNG"), b"IEND"), DAMAGE, ("CRC error", "IEND"), True),
    ("crc_text.png", lambda: _flip_crc(_png_text(), b"tEXt"), DAMAGE, ("CRC error", "tEXt"), True),
    ("bit_text.png", lambda: _flip_body(_png_text(), b"tEXt"), DAMAGE, ("CRC error", "tEXt"), True),
    # PNG headers no PNG can have
    ("ctype5.png", lambda: _png_header(8, 5), DAMAGE, ("colour type 5",), True),
    ("depth3.png", lambda: _png_header(3, 0), DAMAGE, ("bit depth 3",), True),
    ("width0.png", lambda: _png_header(8, 0, width=0), DAMAGE, ("0 x 2",), True),
    ("interlace2.png", lambda: _png_header(8, 0, interlace=2), DAMAGE, ("interlace",), True),
    ("no_plte.png", lambda: _png_header(8, 3), DAMAGE, ("PLTE",), True),
    ("text_mode.png", lambda: _encode(_picture(), "PNG").replace(b"\r\n", b"\n", 1), DAMAGE, ("signature",), True),
    ("zeros.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, DAMAGE, ("chunk header",), True),
    # JPEG
    ("soi.jpg", _jpeg(lambda d: d[:2]), DAMAGE, ("start-of-image",), True),
    ("in_app0.jpg", _jpeg(lambda d: d[:10]), DAMAGE, ("inside its APP0 segment",), True),
    ("in_dqt.jpg", _jpeg(lambda d: d[: d.index(b"\xff\xdb") + 20]), DAMAGE, ("quantisation table",), True),
    ("in_sos.jpg", _jpeg(lambda d: d[: _jpeg_scan_start(d) + 5]), DAMAGE, ("scan header",), True),
    ("in_scan.jpg", _jpeg(lambda d: d[: (_jpeg_scan_start(d) + len(d)) // 2]), DAMAGE, ("end-of-image",), True),
    ("no_eoi.jpg", _jpeg(lambda d: d[:-2]), DAMAGE, ("end-of-image",), True),
    ("prog.jpg", lambda: _encode(_picture(), "JPEG", progressive=True)[:-40], DAMAGE, ("end-of-image",), True),
    ("12bit.jpg", _jpeg_frame(precision=12), VARIANT, ("12-bit", "magick"), True),
    ("lossless.jpg", _jpeg_frame(marker=0xC3), VARIANT, ("lossless", "magick"), False),
    # TIFF
    ("header.tif", _tiff(lambda d: d[:8]), DAMAGE, ("image directory",), True),
    ("in_ifd.tif", _tiff(lambda d: d[: _tiff_ifd(d) + 20]), DAMAGE, ("inside its image directory",), True),
    ("in_strip.tif", _tiff(lambda d: d[: (_tiff_strip(d) + len(d)) // 2]), DAMAGE, ("inside its pixel data",), True),
    ("float64.tif", _tifffile(lambda: RNG.random((4, 4))), VARIANT, ("64-bit floating point",), True),
    ("float32rgb.tif", _tifffile(lambda: RNG.random((4, 4, 3)).astype(np.float32), photometric="rgb"), VARIANT,
     ("3 samples per pixel of 32-bit floating point",), True),
    ("five.tif", _tifffile(lambda: RNG.integers(0, 256, (4, 4, 5), dtype=np.uint8), photometric="minisblack",
                           planarconfig="contig"), VARIANT, ("5 samples per pixel",), True),
    # WebP and BMP
    ("riff.webp", _webp_cut(lambda d: 12), DAMAGE, ("RIFF header announces",), True),
    ("half.webp", _webp_cut(lambda d: len(d) // 2), DAMAGE, ("RIFF header announces",), True),
    ("header.bmp", _bmp_cut(lambda d: 20), DAMAGE, ("inside its BMP header",), True),
    ("half.bmp", _bmp_cut(lambda d: len(d) // 2), DAMAGE, ("inside its pixel data",), True),
    ("no_last_row.bmp", _bmp_cut(lambda d: len(d) - 3 * SIZE[0]), DAMAGE, ("inside its pixel data",), True),
    # not pictures at all
    ("notes.png", lambda: b"these are notes, not a picture\n" * 4, NOT_IMAGE, ("really a picture",), True),
    ("page.jpg", lambda: b"<!DOCTYPE html><html>404 Not Found</html>", NOT_IMAGE, ("really a picture",), True),
    ("bm_text.bmp", lambda: b"BMW service notes: oil, filters, tyres", NOT_IMAGE, ("really a picture",), True),
]

READERS: dict[str, Callable[[Path], object]] = {
    "image": load_image,
    "mask": lambda path: load_mask(path, SIZE),
    "kernel": load_kernel,
}


@pytest.mark.parametrize(("name", "make", "kind", "needles", "from_header"), CASES, ids=[c[0] for c in CASES])
def test_each_damaged_file_gets_its_class_of_message(
    tmp_path: Path, name: str, make: Callable[[], bytes], kind: str, needles: tuple[str, ...], from_header: bool
) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    readers = dict(READERS, probe=probe_image) if from_header else READERS
    for what, reader in readers.items():
        with pytest.raises(ImageReadError) as info:
            reader(path)
        label = "image" if what == "probe" else what
        text = one_line(info.value, f"{label} '{path}'", kind, *needles)
        assert info.value.exit_code == EXIT_USAGE
        assert info.value.hint, text  # the fix, in parentheses
        for other in CLASSES:
            assert other == kind or other not in text, text
        if kind != NOT_IMAGE:
            assert "really a picture" not in text, text


def test_a_bad_crc_is_refused_even_when_a_caller_set_load_truncated_images(tmp_path: Path, monkeypatch) -> None:
    # With LOAD_TRUNCATED_IMAGES, Pillow skips the CRC of ancillary chunks and pads cut files with black.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name, data in {"text.png": _flip_crc(_png_text(), b"tEXt"), "idat.png": _flip_body(_encode(_picture(), "PNG"),
                       b"IDAT"), "cut.png": _png_cut("inside IDAT")(), "cut.jpg": _jpeg(lambda d: d[:-200])()}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError) as info:
            load_image(tmp_path / name)
        one_line(info.value, name, DAMAGE)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is put back


# --------------------------------------------------------------------------------------- whole files still load


def _with_transparency() -> bytes:
    palette = _picture("P")
    palette.info["transparency"] = 0
    return _encode(palette, "PNG")


def _with_thumbnail_and_trailer() -> bytes:
    """A JPEG whose APP segment holds another whole JPEG (as an EXIF thumbnail does), and bytes after its EOI."""
    thumbnail = _encode(_picture().resize((4, 3)), "JPEG")
    data = _encode(_picture(), "JPEG")
    app = b"\xff\xe2" + struct.pack(">H", len(thumbnail) + 2) + thumbnail
    return data[:2] + app + data[2:] + b"camera trailer"


def _translucent() -> Image.Image:
    picture = _picture("RGBA")
    picture.putalpha(Image.fromarray(RNG.integers(0, 256, (SIZE[1], SIZE[0]), dtype=np.uint8)))
    return picture


def _uint16(mode: str) -> Callable[[], bytes]:
    def make() -> bytes:
        values = RNG.integers(0, 65536, (SIZE[1], SIZE[0]), dtype=np.uint16)
        return _encode(Image.fromarray(values).convert(mode) if mode != "I;16" else Image.fromarray(values), "TIFF")

    return make


WHOLE: list[tuple[str, Callable[[], bytes], int, bool]] = [  # (name, bytes, channels, has alpha)
    ("la.png", lambda: _encode(_picture("LA"), "PNG"), 1, True),
    ("pa.tif", lambda: _encode(_picture("P").convert("PA"), "TIFF"), 3, True),
    ("trns.png", _with_transparency, 3, True),
    ("one_bit.png", lambda: _encode(_picture("1"), "PNG"), 1, False),
    ("one_bit.tif", lambda: _encode(_picture("1"), "TIFF"), 1, False),
    ("one_bit.bmp", lambda: _encode(_picture("1"), "BMP"), 1, False),
    ("i16.tif", _uint16("I;16"), 1, False),
    ("i16b.tif", _uint16("I;16B"), 1, False),
    ("cmyk.jpg", lambda: _encode(_picture("CMYK"), "JPEG"), 3, False),
    ("ycbcr.tif", lambda: _encode(_picture("YCbCr"), "TIFF"), 3, False),
    ("lab.tif", lambda: _encode(_picture("LAB"), "TIFF"), 3, False),
    ("interlaced.png", lambda: plain_png(np.asarray(_picture()), 8, interlace=True), 3, False),
    ("trailer.png", lambda: _encode(_picture(), "PNG") + b"bytes after IEND", 3, False),
    ("progressive.jpg", lambda: _encode(_picture(), "JPEG", progressive=True), 3, False),
    ("thumbnail.jpg", _with_thumbnail_and_trailer, 3, False),
    ("lossless.webp", lambda: _encode(_translucent(), "WEBP", lossless=True), 3, True),
    ("palette.bmp", lambda: _encode(_picture("P"), "BMP"), 3, False),
    ("deflate.tif", lambda: _encode(_picture(), "TIFF", compression="tiff_deflate"), 3, False),
]


@pytest.mark.parametrize(("name", "make", "channels", "alpha"), WHOLE, ids=[c[0] for c in WHOLE])
def test_whole_files_in_odd_modes_still_load(
    tmp_path: Path, name: str, make: Callable[[], bytes], channels: int, alpha: bool
) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    probe_image(path)
    loaded = load_image(path)
    assert loaded.size == SIZE and loaded.channels == channels and loaded.has_alpha == alpha
    assert load_mask(path, SIZE).shape == (1, 1, SIZE[1], SIZE[0])


def test_signed_tiff_pixels_are_refused_not_misread(tmp_path: Path) -> None:
    # Pillow reads signed 8-bit samples as unsigned: -18 would become 238, a picture shifted without a word.
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "signed.tif", RNG.integers(-100, 100, (4, 4), dtype=np.int8))
    for reader in (load_image, probe_image):
        with pytest.raises(ImageReadError) as info:
            reader(tmp_path / "signed.tif")
        one_line(info.value, "signed.tif", "signed integer pixels", "unsigned 8- or 16-bit")
    tifffile.imwrite(tmp_path / "s16.tif", np.array([[-5, 7]], dtype=np.int16))
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "s16.tif")
    one_line(info.value, "s16.tif", "from -5 to 7", "outside 0..65535")


def test_16bit_cmyk_tiff_says_it_was_read_as_8bit(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "c.tif", RNG.integers(0, 65536, (4, 4, 4), dtype=np.uint16), photometric="separated")
    assert any("16-bit colour TIFF was read as 8-bit" in note for note in load_image(tmp_path / "c.tif").notes)


# ------------------------------------------------------------------------------------------ through the CLI


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.mark.parametrize("name", ["after_ihdr.png", "crc_idat.png", "before_iend.png", "in_scan.jpg", "in_ifd.tif",
                                  "12bit.jpg", "notes.png"])
def test_the_cli_refuses_a_damaged_input_in_one_line_with_exit_2(tmp_path: Path, capsys, model: Path,
                                                                  name: str) -> None:
    _, make, kind, needles, _ = next(case for case in CASES if case[0] == name)
    (tmp_path / name).write_bytes(make())
    result = run_main(["denoise", tmp_path / name, "-o", tmp_path / "out", *fast(model)], capsys)
    assert result.code == EXIT_USAGE, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.err, result.err
    one_line(lines[0], name, kind, *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_cli_names_a_damaged_mask(tmp_path: Path, capsys, model: Path) -> None:
    image = tmp_path / "photo.png"
    _picture().save(image)
    (tmp_path / "mask.png").write_bytes(_flip_crc(_encode(_picture("L"), "PNG"), b"IDAT"))
    result = run_main(["inpaint", image, "--mask", tmp_path / "mask.png", "-o", tmp_path / "out", *fast(model)],
                      capsys)
    assert result.code == EXIT_USAGE, result.err
    one_line(result.err.strip(), "mask '", "mask.png", DAMAGE, "CRC error")
