"""diffrestore.imageio reading (imageio/read.py): every mode and bit depth survives a round trip through the
tensor, other formats read, EXIF orientation is applied, and bad files give one-line errors.

All files are generated in ``tmp_path``; 16-bit PNGs by a deliberately plain encoder (tests/image_files.py) so
the module's own decoder is checked against something it did not write.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import RNG, _chunk, as_uint, assert_one_line, pil_array, plain_png, rand8, rand16
from PIL import Image, ImageFile, ImageOps

from diffrestore.errors import ImageReadError, UsageError
from diffrestore.imageio import load_image, load_kernel, load_mask, probe_image, save_image, to_channels

# ----------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_8bit_png_round_trip_is_pixel_identical(tmp_path: Path, mode: str) -> None:
    channels = len(mode)
    source = rand8(13, 17, channels)
    src = tmp_path / "in.png"
    Image.fromarray(source if channels > 1 else source[:, :, 0], mode=mode).save(src)

    loaded = load_image(src)
    assert loaded.tensor.dtype == torch.float32
    assert loaded.tensor.shape == (1, 1 if mode.startswith("L") else 3, 13, 17)
    assert loaded.size == (17, 13)
    assert loaded.bit_depth == 8 and loaded.mode == mode
    assert loaded.has_alpha == mode.endswith("A")
    assert float(loaded.tensor.min()) >= -1.0 and float(loaded.tensor.max()) <= 1.0
    # The tensor is v / 255 * 2 - 1 exactly (within float32 rounding), not stretched.
    colour = source[:, :, : 1 if mode.startswith("L") else 3].astype(np.float64)
    expected = colour.transpose(2, 0, 1)[None] / 255 * 2 - 1
    np.testing.assert_allclose(loaded.tensor.double().numpy(), expected, atol=1e-6)

    out = tmp_path / "out.png"
    saved = save_image(loaded.tensor, out, like=loaded)
    assert saved.mode == mode and saved.bit_depth == 8 and saved.notes == ()
    with Image.open(out) as im:
        assert im.mode == mode
    np.testing.assert_array_equal(pil_array(out), source)


def test_every_8bit_and_16bit_value_survives_the_tensor(tmp_path: Path) -> None:
    all16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(all16).save(tmp_path / "all16.png")
    loaded = load_image(tmp_path / "all16.png")
    assert loaded.mode == "I;16" and loaded.bit_depth == 16 and loaded.tensor.shape == (1, 1, 256, 256)
    assert float(loaded.tensor.min()) == -1.0 and float(loaded.tensor.max()) == 1.0
    save_image(loaded.tensor, tmp_path / "all16_out.png", like=loaded)
    np.testing.assert_array_equal(pil_array(tmp_path / "all16_out.png")[:, :, 0], all16)

    all8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(all8).save(tmp_path / "all8.png")
    loaded8 = load_image(tmp_path / "all8.png")
    save_image(loaded8.tensor, tmp_path / "all8_out.png", like=loaded8)
    np.testing.assert_array_equal(pil_array(tmp_path / "all8_out.png")[:, :, 0], all8)


def test_16bit_gray_tiff_round_trip(tmp_path: Path) -> None:
    source = rand16(9, 11, 1)[:, :, 0]
    Image.fromarray(source).save(tmp_path / "g.tif")
    loaded = load_image(tmp_path / "g.tif")
    assert loaded.bit_depth == 16 and loaded.tensor.shape == (1, 1, 9, 11)
    saved = save_image(loaded.tensor, tmp_path / "g_out.tif", like=loaded)
    assert saved.bit_depth == 16
    np.testing.assert_array_equal(pil_array(tmp_path / "g_out.tif")[:, :, 0], source)


def test_palette_images_become_rgb_or_rgba(tmp_path: Path) -> None:
    source = rand8(8, 9, 3)
    opaque = Image.fromarray(source).quantize(colors=16)
    opaque.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert loaded.mode == "P" and loaded.tensor.shape[1] == 3 and loaded.alpha is None
    np.testing.assert_array_equal(as_uint(loaded), np.asarray(opaque.convert("RGB")))

    transparent = opaque.copy()
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "pt.png", transparency=0)
    loaded_t = load_image(tmp_path / "pt.png")
    assert loaded_t.has_alpha
    with Image.open(tmp_path / "pt.png") as im:
        reference = np.asarray(im.convert("RGBA"))
    np.testing.assert_array_equal(as_uint(loaded_t), reference)
    save_image(loaded_t.tensor, tmp_path / "pt_out.png", like=loaded_t)
    np.testing.assert_array_equal(pil_array(tmp_path / "pt_out.png"), reference)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_becomes_rgb_and_drops_its_profile(tmp_path: Path, suffix: str) -> None:
    cmyk = Image.fromarray(rand8(6, 7, 4), mode="CMYK")
    cmyk.save(tmp_path / f"c{suffix}", icc_profile=b"\0" * 16 + b"CMYK" + b"\0" * 108)
    loaded = load_image(tmp_path / f"c{suffix}")
    assert loaded.mode == "CMYK" and loaded.tensor.shape == (1, 3, 6, 7)
    assert loaded.icc_profile is None
    assert any("converted from CMYK to RGB" in note and "profile was dropped" in note for note in loaded.notes)
    with Image.open(tmp_path / f"c{suffix}") as im:
        reference = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(as_uint(loaded), reference)


def test_32bit_integer_and_float_images(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 65535]], dtype=np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "i.tif")
    loaded = load_image(tmp_path / "i.tif")
    assert loaded.bit_depth == 16
    np.testing.assert_array_equal(as_uint(loaded)[0, :, 0], [0, 1000, 65535])
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32), mode="I").save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "big.tif")
    assert_one_line(info.value, "big.tif", "outside 0..65535")
    Image.fromarray(np.zeros((2, 2), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "f.tif")
    assert_one_line(info.value, "f.tif", "32-bit float")


def test_16bit_colour_tiff_is_read_as_8bit_with_a_note(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    source = rand16(3, 4, 3)
    tifffile.imwrite(tmp_path / "c16.tif", source, photometric="rgb")
    loaded = load_image(tmp_path / "c16.tif")
    assert loaded.bit_depth == 8
    assert any("16-bit colour TIFF was read as 8-bit" in note for note in loaded.notes)
    assert np.abs(as_uint(loaded) - (source >> 8)).max() <= 1


def test_bilevel_image_reads_as_gray(tmp_path: Path) -> None:
    bits = RNG.integers(0, 2, (5, 8)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    loaded = load_image(tmp_path / "b.png")
    assert loaded.tensor.shape == (1, 1, 5, 8)
    np.testing.assert_array_equal(loaded.tensor[0, 0].numpy(), np.where(bits, 1.0, -1.0).astype(np.float32))


@pytest.mark.parametrize(
    ("suffix", "options", "exact"),
    [
        (".jpg", {"quality": 98, "subsampling": 0}, False),
        (".webp", {"lossless": True}, True),
        (".tif", {}, True),
        (".bmp", {}, True),
    ],
)
def test_other_formats_read(tmp_path: Path, suffix: str, options: dict, exact: bool) -> None:
    yy, xx = np.mgrid[0:24, 0:32]
    source = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=2).astype(np.uint8)
    Image.fromarray(source).save(tmp_path / f"a{suffix}", **options)
    loaded = load_image(tmp_path / f"a{suffix}")
    assert loaded.tensor.shape == (1, 3, 24, 32) and loaded.bit_depth == 8
    if exact:
        np.testing.assert_array_equal(as_uint(loaded), source)
    else:
        assert np.abs(as_uint(loaded) - source.astype(np.int64)).max() <= 6


def test_gray_stays_gray_and_to_channels(tmp_path: Path) -> None:
    source = rand8(4, 5, 1)
    Image.fromarray(source[:, :, 0]).save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png")
    assert loaded.channels == 1
    rgb = to_channels(loaded.tensor, 3)
    assert rgb.shape == (1, 3, 4, 5)
    assert torch.equal(rgb[:, 0], rgb[:, 2]) and torch.equal(rgb[:, 1], loaded.tensor[:, 0])
    back = to_channels(rgb, 1)
    torch.testing.assert_close(back, loaded.tensor, atol=1e-6, rtol=0)
    colour = torch.tensor([1.0, -1.0, 0.0]).view(1, 3, 1, 1)
    expected = 0.299 * 1.0 + 0.587 * -1.0 + 0.114 * 0.0
    assert to_channels(colour, 1).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="only 1 <-> 3"):
        to_channels(torch.zeros(1, 2, 3, 3), 3)
    save_image(loaded.tensor, tmp_path / "g_out.png", like=loaded)
    with Image.open(tmp_path / "g_out.png") as im:
        assert im.mode == "L"


# ----------------------------------------------------------------------------------------------------------------
# EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(tmp_path: Path, orientation: int) -> None:
    source = rand8(5, 8, 4)
    image = Image.fromarray(source, mode="RGBA")
    exif = image.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    image.save(tmp_path / "o.png", exif=exif.tobytes())
    loaded = load_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        reference = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(as_uint(loaded), reference)
    assert loaded.size == (reference.shape[1], reference.shape[0])

    save_image(loaded.tensor, tmp_path / "o_out.png", like=loaded)
    with Image.open(tmp_path / "o_out.png") as im:
        written_exif = im.getexif()
        np.testing.assert_array_equal(np.asarray(im), reference)  # not rotated a second time by a viewer
    assert written_exif.get(0x0112, 1) == 1
    assert written_exif.get(0x010F) == "TestCam"


def test_exif_sub_ifd_survives(tmp_path: Path) -> None:
    image = Image.fromarray(rand8(4, 4, 3))
    exif = image.getexif()
    exif[0x0110] = "Model X"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal lives in the EXIF sub-IFD
    exif[0x0112] = 3
    image.save(tmp_path / "in.jpg", exif=exif.tobytes())
    loaded = load_image(tmp_path / "in.jpg")
    save_image(loaded.tensor, tmp_path / "out.png", like=loaded)
    with Image.open(tmp_path / "out.png") as im:
        written = im.getexif()
    assert written.get(0x0110) == "Model X" and written.get(0x0112) == 1
    assert written.get_ifd(0x8769).get(0x9003) == "2024:01:02 03:04:05"


def test_exif_orientation_on_16bit_png_and_jpeg(tmp_path: Path) -> None:
    source = rand16(4, 6, 4)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif_chunk = _chunk(b"eXIf", exif.tobytes()[6:])
    (tmp_path / "o16.png").write_bytes(plain_png(source, 16, chunks=(exif_chunk,)))
    loaded = load_image(tmp_path / "o16.png")
    assert loaded.size == (4, 6)
    np.testing.assert_array_equal(as_uint(loaded), np.rot90(source, k=-1))  # orientation 6 = turn clockwise
    save_image(loaded.tensor, tmp_path / "o16_out.png", like=loaded)
    with Image.open(tmp_path / "o16_out.png") as im:
        assert im.getexif().get(0x0112, 1) == 1

    jpeg = Image.fromarray(rand8(8, 16, 3))
    jexif = jpeg.getexif()
    jexif[0x0112] = 8
    jpeg.save(tmp_path / "o.jpg", exif=jexif.tobytes())
    assert load_image(tmp_path / "o.jpg").size == (8, 16)


# ----------------------------------------------------------------------------------------------------------------
# Bad files


def _good_png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rand8(40, 50, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _good_jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rand8(40, 50, 3)).save(buffer, "JPEG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "content", "needles"),
    [
        ("empty.png", b"", ["empty.png", "empty (0 bytes)"]),
        ("text.png", b"hello, I am not a picture\n", ["text.png", "not an image", "PNG, JPEG"]),
        ("cut.png", "png_half", ["cut.png", "truncated or corrupt"]),
        ("cut.jpg", "jpeg_half", ["cut.jpg", "truncated or corrupt"]),
        ("cut16.png", "png16_half", ["cut16.png", "truncated or corrupt"]),
        ("crc16.png", "png16_crc", ["crc16.png", "CRC error"]),
        (
            "bomb.png",
            "bomb",
            ["bomb.png", "100000 x 100000", "10,000,000,000", "178,956,970", "DIFFRESTORE_MAX_PIXELS"],
        ),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, name: str, content: bytes | str, needles: list[str]) -> None:
    if content == "png_half":
        data = _good_png_bytes()
        content = data[: len(data) // 2]
    elif content == "jpeg_half":
        data = _good_jpeg_bytes()
        content = data[: len(data) // 2]
    elif content == "png16_half":
        data = plain_png(rand16(20, 20, 4), 16)
        content = data[: len(data) // 2]
    elif content == "png16_crc":
        data = bytearray(plain_png(rand16(20, 20, 4), 16))
        data[60] ^= 0xFF  # inside the IDAT body
        content = bytes(data)
    elif content == "bomb":
        content = _bomb_png()
    path = tmp_path / name
    path.write_bytes(content)  # type: ignore[arg-type]
    for loader in (load_image, lambda p: load_mask(p, (4, 4))):
        with pytest.raises(ImageReadError) as info:
            loader(path)
        assert_one_line(info.value, *needles)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "nope.png")
    assert_one_line(info.value, "nope.png", "does not exist")
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path)
    assert_one_line(info.value, str(tmp_path), "is a folder")
    with pytest.raises(ImageReadError) as info:
        load_kernel(tmp_path / "nope.npy")
    assert_one_line(info.value, "kernel", "nope.npy", "does not exist")


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    Image.fromarray(rand8(4, 4, 3)).save(tmp_path / "a.gif")
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "a.gif")
    assert_one_line(info.value, "a.gif", "is a GIF file, which is not a supported input format", "PNG, JPEG")
    assert "really a picture" not in str(info.value)


def test_pixel_limit_parameter_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bomb.png").write_bytes(_bomb_png())
    Image.fromarray(rand8(10, 10, 3)).save(tmp_path / "small.png")
    with pytest.raises(ImageReadError, match="above the limit of 99"):
        load_image(tmp_path / "small.png", max_pixels=99)
    assert load_image(tmp_path / "small.png", max_pixels=100).size == (10, 10)

    monkeypatch.setenv("DIFFRESTORE_MAX_PIXELS", "50")
    with pytest.raises(ImageReadError, match="above the limit of 50"):
        probe_image(tmp_path / "small.png")
    assert load_image(tmp_path / "small.png", max_pixels=100).size == (10, 10)  # the parameter wins

    # Raised above the bomb's size, the header check passes and the (tiny, fake) pixel data is what fails.
    monkeypatch.setenv("DIFFRESTORE_MAX_PIXELS", "20_000_000_000")
    info = probe_image(tmp_path / "bomb.png")
    assert info.size == (100_000, 100_000) and info.format == "PNG"

    monkeypatch.setenv("DIFFRESTORE_MAX_PIXELS", "lots")
    with pytest.raises(UsageError) as error:
        load_image(tmp_path / "small.png")
    assert_one_line(error.value, "DIFFRESTORE_MAX_PIXELS='lots'", "positive whole number")


def test_pillow_warnings_and_globals_do_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(rand8(30, 30, 3)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow alone would warn (900 > 500) or refuse (> 1000)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # someone else's setting must not let cut files in
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "a.png").size == (30, 30)
        data = _good_png_bytes()
        (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match="truncated"):
            load_image(tmp_path / "cut.png")
    assert Image.MAX_IMAGE_PIXELS == 500 and ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_corrupt_exif_is_dropped_quietly(tmp_path: Path) -> None:
    # A tag that points past the end of the EXIF block: Pillow warns ("Corrupt EXIF data") while parsing it.
    bad_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x0f\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00"
    Image.fromarray(rand8(8, 8, 3)).save(tmp_path / "e.jpg", exif=bad_exif)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_image(tmp_path / "e.jpg")
    assert loaded.size == (8, 8)
    save_image(loaded.tensor, tmp_path / "e_out.jpg", like=loaded)


def test_probe_reports_header_without_decoding(tmp_path: Path) -> None:
    (tmp_path / "rgba16.png").write_bytes(plain_png(rand16(3, 5, 4), 16))
    info = probe_image(tmp_path / "rgba16.png")
    assert info.size == (5, 3) and info.mode == "RGBA;16" and info.format == "PNG"
