"""Image I/O: every mode and bit depth survives a round trip; masks, kernels and bad files behave as documented.

All files are generated in ``tmp_path``. 16-bit PNGs are written here by a deliberately plain encoder (no filters
except where a test asks for one) so the module's own decoder is checked against something it did not write.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile, ImageOps

from diffrestore.errors import ImageReadError, InputError, OutputError, SizeMismatchError, UsageError
from diffrestore.imageio import (
    IMAGE_EXTENSIONS,
    LoadedImage,
    check_output_path,
    load_image,
    load_kernel,
    load_mask,
    mask_from_alpha,
    probe_image,
    save_image,
    to_channels,
)
from diffrestore.imageio import png as imageio_png
from diffrestore.imageio import write as imageio_write

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------------------------------
# Helpers


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


@pytest.mark.parametrize("channels", [2, 3, 4], ids=["LA16", "RGB16", "RGBA16"])
@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
def test_16bit_colour_png_round_trip_is_pixel_identical(tmp_path: Path, channels: int, interlace: bool) -> None:
    # Acceptance: a 16-bit RGBA PNG read and written back is identical in colour and alpha.
    source = rand16(19, 23, channels)
    src = tmp_path / "in.png"
    src.write_bytes(plain_png(source, 16, interlace=interlace))

    loaded = load_image(src)
    assert loaded.bit_depth == 16
    assert loaded.mode == {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    assert loaded.tensor.shape == (1, 1 if channels == 2 else 3, 19, 23)
    np.testing.assert_array_equal(as_uint(loaded), source)

    out = tmp_path / "out.png"
    saved = save_image(loaded.tensor, out, like=loaded)
    assert saved.bit_depth == 16 and saved.notes == ()
    np.testing.assert_array_equal(as_uint(load_image(out)), source)
    # Independent check of our encoder: Pillow reads the same file (8-bit, high byte) and must agree.
    with Image.open(out) as im:
        high = np.asarray(im)
    expected_high = (source >> 8).astype(np.uint8)
    if channels == 2:  # Pillow 13 presents 16-bit gray + alpha as RGBA
        high = high[:, :, [0, 3]]
    np.testing.assert_array_equal(high, expected_high)


def test_16bit_encoder_filters_decode_with_pillow_on_a_smooth_image(tmp_path: Path) -> None:
    # Smooth content makes the encoder pick Sub / Up / Average / Paeth; Pillow's decoder is the reference.
    yy, xx = np.mgrid[0:40, 0:50]
    source = np.stack([xx * 1300, yy * 1600, (xx + yy) * 700 + RNG.integers(0, 400, xx.shape), xx * yy * 30], axis=2)
    source = source.astype(np.uint16)
    data = imageio_png._png_encode(source, bit_depth=16)
    rows = np.frombuffer(
        zlib.decompress(b"".join(body for k, body in imageio_png._png_chunks(data) if k == b"IDAT")), np.uint8
    )
    used = set(rows.reshape(40, -1)[:, 0].tolist())
    assert used & {3, 4}, f"filters used: {used}"
    (tmp_path / "s.png").write_bytes(data)
    with Image.open(tmp_path / "s.png") as im:
        np.testing.assert_array_equal(np.asarray(im), (source >> 8).astype(np.uint8))
    np.testing.assert_array_equal(as_uint(load_image(tmp_path / "s.png")), source)


@pytest.mark.parametrize("block", [1 << 24, 1], ids=["one-strip", "many-strips"])
def test_own_png_decoder_matches_pillow_on_pillow_written_8bit(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    # block = 1 forces one row per wavefront strip, so the row carried between strips is exercised too.
    # Patched on the submodule that reads it: a patch on the package would not reach _unfilter's global.
    monkeypatch.setattr(imageio_png, "_UNFILTER_BLOCK", block)
    yy, xx = np.mgrid[0:30, 0:41]
    source = np.stack([(xx * 7 + yy) % 256, (yy * 5) % 256, (xx * yy) % 256, 255 - xx], axis=2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(source, mode="RGBA").save(buffer, "PNG", optimize=True)
    decoded = imageio_png._png_decode(buffer.getvalue())
    np.testing.assert_array_equal(np.concatenate([decoded.pixels, decoded.alpha[:, :, None]], axis=2), source)


def _reference_filter(raw: np.ndarray, kinds: list[int], bpp: int) -> np.ndarray:
    """PNG filtering written out byte by byte from the specification (slow, obviously right)."""
    out = np.zeros((raw.shape[0], raw.shape[1] + 1), dtype=np.uint8)
    for r, kind in enumerate(kinds):
        out[r, 0] = kind
        for i in range(raw.shape[1]):
            x = int(raw[r, i])
            a = int(raw[r, i - bpp]) if i >= bpp else 0
            b = int(raw[r - 1, i]) if r else 0
            c = int(raw[r - 1, i - bpp]) if r and i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            paeth = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            predictor = [0, a, b, (a + b) // 2, paeth][kind]
            out[r, i + 1] = (x - predictor) % 256
    return out


@pytest.mark.parametrize("kinds", [(0, 1, 2), (0, 1, 2, 3, 4)], ids=["row-path", "wavefront"])
@pytest.mark.parametrize("bpp", [1, 2, 6, 8])
def test_unfilter_inverts_reference_filters(kinds: tuple[int, ...], bpp: int) -> None:
    raw = RNG.integers(0, 256, (9, 5 * bpp), dtype=np.uint8)
    raw[:, : 2 * bpp] = 250  # long runs and wrap-around near 255 stress the modulo arithmetic
    rows = [int(k) for k in RNG.choice(kinds, size=9)]
    rows[: len(kinds)] = list(kinds)
    np.testing.assert_array_equal(imageio_png._unfilter(_reference_filter(raw, rows, bpp), bpp), raw)


def test_16bit_rgb_png_transparent_colour_becomes_alpha(tmp_path: Path) -> None:
    source = rand16(4, 5, 3)
    source[1, 2] = source[3, 0] = (1000, 2000, 3000)
    key = _chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
    (tmp_path / "k.png").write_bytes(plain_png(source, 16, chunks=(key,)))
    loaded = load_image(tmp_path / "k.png")
    assert loaded.alpha is not None
    assert np.argwhere(loaded.alpha == 0).tolist() == [[1, 2], [3, 0]]
    assert (loaded.alpha[loaded.alpha != 0] == 1.0).all()


def test_16bit_gray_tiff_round_trip(tmp_path: Path) -> None:
    source = rand16(9, 11, 1)[:, :, 0]
    Image.fromarray(source).save(tmp_path / "g.tif")
    loaded = load_image(tmp_path / "g.tif")
    assert loaded.bit_depth == 16 and loaded.tensor.shape == (1, 1, 9, 11)
    saved = save_image(loaded.tensor, tmp_path / "g_out.tif", like=loaded)
    assert saved.bit_depth == 16
    np.testing.assert_array_equal(pil_array(tmp_path / "g_out.tif")[:, :, 0], source)


def test_16bit_png_stays_16bit_when_saved_as_8bit_only_format(tmp_path: Path) -> None:
    source = rand16(5, 6, 3)
    (tmp_path / "in.png").write_bytes(plain_png(source, 16))
    loaded = load_image(tmp_path / "in.png")
    saved = save_image(loaded.tensor, tmp_path / "out.jpg", like=loaded)
    assert saved.bit_depth == 8
    assert any("16-bit reduced to 8-bit" in note for note in saved.notes)
    saved_tif = save_image(loaded.tensor, tmp_path / "out.tif", like=loaded)
    assert saved_tif.bit_depth == 8 and any("TIFF" in note for note in saved_tif.notes)
    np.testing.assert_array_equal(pil_array(tmp_path / "out.tif"), np.rint(source / 257).astype(np.uint8))


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
# Saving rules


def test_save_accepts_a_loaded_image(tmp_path: Path) -> None:
    source = rand16(3, 4, 4)
    (tmp_path / "in.png").write_bytes(plain_png(source, 16))
    loaded = load_image(tmp_path / "in.png")
    saved = save_image(loaded, tmp_path / "copy.png")
    assert saved.bit_depth == 16 and saved.mode == "RGBA"
    np.testing.assert_array_equal(as_uint(load_image(tmp_path / "copy.png")), source)
    with pytest.raises(OutputError, match="inputs are never overwritten"):
        save_image(loaded, tmp_path / "in.png", overwrite=True)


def test_save_clamps_and_never_normalises(tmp_path: Path) -> None:
    tensor = torch.tensor([[[-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 7.0]]])
    save_image(tensor, tmp_path / "c.png")
    # (x + 1) / 2 * 255 rounded; a min-max normaliser would have mapped -0.5 and 0.5 elsewhere.
    np.testing.assert_array_equal(pil_array(tmp_path / "c.png")[0, :, 0], [0, 0, 64, 128, 191, 255, 255])
    narrow = torch.full((1, 1, 2, 2), 0.25)
    save_image(narrow, tmp_path / "n.png")
    assert (pil_array(tmp_path / "n.png") == 159).all()


def test_save_refuses_nan_and_writes_nothing(tmp_path: Path) -> None:
    tensor = torch.zeros(1, 3, 4, 4)
    tensor[0, 1, 2, 2] = float("nan")
    with pytest.raises(OutputError) as info:
        save_image(tensor, tmp_path / "nan.png")
    assert_one_line(info.value, "nan.png", "NaN")
    assert list(tmp_path.iterdir()) == []


def test_save_shape_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch of 2"):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "b.png")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_image(torch.zeros(1, 4, 4, 4), tmp_path / "b.png")
    save_image(torch.zeros(3, 4, 5), tmp_path / "chw.png")
    assert pil_array(tmp_path / "chw.png").shape == (4, 5, 3)


def test_save_16bit_on_request_and_alpha_resized_for_super_resolution(tmp_path: Path) -> None:
    source = rand8(6, 8, 4)
    source[:, :4, 3] = 0
    source[:, 4:, 3] = 255
    Image.fromarray(source, mode="RGBA").save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    bigger = torch.nn.functional.interpolate(loaded.tensor, scale_factor=2, mode="nearest")
    saved = save_image(bigger, tmp_path / "sr.png", like=loaded, bit_depth=16)
    assert saved.bit_depth == 16 and saved.mode == "RGBA"
    assert any("alpha resized from 8 x 6 to 16 x 12" in note for note in saved.notes)
    out = load_image(tmp_path / "sr.png")
    assert out.size == (16, 12) and out.bit_depth == 16
    assert out.alpha is not None and out.alpha[:, :6].max() == 0.0 and out.alpha[:, 10:].min() == 1.0


@pytest.mark.parametrize(
    ("suffix", "mode", "note"),
    [
        (".jpg", "RGB", "alpha dropped"),
        (".bmp", "RGB", "alpha dropped"),
        (".webp", "RGBA", None),
        (".tif", "RGBA", None),
        (".png", "RGBA", None),
    ],
)
def test_alpha_per_output_format(tmp_path: Path, suffix: str, mode: str, note: str | None) -> None:
    source = rand8(6, 7, 4)
    source[:, :3, 3] = 0  # fully transparent: encoders like to throw away the colour under it
    Image.fromarray(source, mode="RGBA").save(tmp_path / "in.png")
    loaded = load_image(tmp_path / "in.png")
    saved = save_image(loaded.tensor, tmp_path / f"out{suffix}", like=loaded)
    assert saved.mode == mode
    if note:
        assert any(note in n for n in saved.notes)
    with Image.open(tmp_path / f"out{suffix}") as im:
        assert im.mode == mode
        written = np.asarray(im)
    if suffix != ".jpg":
        # Lossless formats keep the colour under transparent pixels exactly (WebP thanks to exact=True).
        np.testing.assert_array_equal(written, source[:, :, : len(mode)])


def test_webp_gray_is_stored_as_rgb_with_a_note(tmp_path: Path) -> None:
    saved = save_image(torch.zeros(1, 1, 4, 4), tmp_path / "g.webp")
    assert any("WebP has no grayscale" in note for note in saved.notes)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_icc_profile_kept(tmp_path: Path, suffix: str) -> None:
    icc = srgb_icc()
    Image.fromarray(rand8(5, 6, 3)).save(tmp_path / "in.png", icc_profile=icc)
    loaded = load_image(tmp_path / "in.png")
    assert loaded.icc_profile == icc
    save_image(loaded.tensor, tmp_path / f"out{suffix}", like=loaded)
    with Image.open(tmp_path / f"out{suffix}") as im:
        assert im.info.get("icc_profile") == icc


def test_icc_kept_on_16bit_png_and_dropped_when_colour_space_changes(tmp_path: Path) -> None:
    icc = srgb_icc()
    iccp = _chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc))
    (tmp_path / "in.png").write_bytes(plain_png(rand16(4, 4, 4), 16, chunks=(iccp,)))
    loaded = load_image(tmp_path / "in.png")
    assert loaded.icc_profile == icc
    save_image(loaded.tensor, tmp_path / "out.png", like=loaded)
    with Image.open(tmp_path / "out.png") as im:
        assert im.info.get("icc_profile") == icc
    saved = save_image(to_channels(loaded.tensor, 1), tmp_path / "gray.png", like=loaded)
    assert any("ICC profile dropped" in note for note in saved.notes)
    with Image.open(tmp_path / "gray.png") as im:
        assert "icc_profile" not in im.info


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


@pytest.mark.parametrize("out_suffix", [".tif", ".jpg", ".png"])
def test_tiff_layout_tags_are_not_carried_as_exif(tmp_path: Path, out_suffix: str) -> None:
    # Pillow's getexif() of a TIFF holds its strip/bit/compression tags; copied into an RGB output they broke it.
    Image.fromarray(rand8(5, 6, 2), mode="LA").save(tmp_path / "in.tif", compression="tiff_lzw")
    loaded = load_image(tmp_path / "in.tif")
    colour = torch.linspace(-1, 1, 90).reshape(1, 3, 5, 6)
    saved = save_image(colour, tmp_path / f"out{out_suffix}", like=loaded)
    assert saved.mode == "RGBA" or out_suffix == ".jpg"
    with Image.open(tmp_path / f"out{out_suffix}") as im:
        im.load()
        assert im.size == (6, 5) and im.mode == saved.mode
        written = np.asarray(im)
    expected = np.rint((colour[0].numpy().transpose(1, 2, 0) + 1) * 127.5)
    assert np.abs(written[:, :, :3].astype(np.float64) - expected).max() <= (3 if out_suffix == ".jpg" else 0)


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
# Masks


def test_mask_threshold_invert_and_modes(tmp_path: Path) -> None:
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (4, 1))
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 1, 4)
    assert mask.flatten().tolist() == [False, False, True, True]
    assert load_mask(tmp_path / "m.png", (4, 1), invert=True).flatten().tolist() == [True, True, False, False]

    values16 = np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values16).save(tmp_path / "m16.png")
    assert load_mask(tmp_path / "m16.png", (4, 1)).flatten().tolist() == [False, False, True, True]

    # Colour uses luminance: pure green (0.587) is missing, pure red (0.299) and blue are known.
    colour = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "mc.png")
    assert load_mask(tmp_path / "mc.png", (4, 1)).flatten().tolist() == [False, True, False, True]

    Image.fromarray(values > 100).save(tmp_path / "m1.png")  # mode "1"
    assert load_mask(tmp_path / "m1.png", (4, 1)).flatten().tolist() == [False, True, True, True]


def test_mask_with_alpha_composites_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [255, 255, 255, 100], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "ma.png")
    assert load_mask(tmp_path / "ma.png", (4, 1)).flatten().tolist() == [True, False, False, False]


def test_mask_accepts_loaded_image_and_size_mismatch_names_both(tmp_path: Path) -> None:
    Image.fromarray(rand8(6, 9, 3)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(tmp_path / "wrong.png")
    loaded = load_image(tmp_path / "img.png")
    assert load_mask(tmp_path / "ok.png", loaded).shape == (1, 1, 6, 9)
    assert load_mask(tmp_path / "ok.png", size=(9, 6)).shape == (1, 1, 6, 9)  # the contract's keyword name
    with pytest.raises(TypeError, match="image size"):
        load_mask(tmp_path / "ok.png")
    with pytest.raises(SizeMismatchError) as info:
        load_mask(tmp_path / "wrong.png", loaded)
    assert_one_line(info.value, "wrong.png", "9 x 7", "9 x 6")


def test_mask_from_alpha(tmp_path: Path) -> None:
    rgba = rand8(3, 4, 4)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    rgba[1, 2, 3] = 127
    rgba[2, 3, 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    mask = mask_from_alpha(load_image(tmp_path / "a.png"))
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (1, 1, 3, 4)
    assert mask.nonzero().tolist() == [[0, 0, 0, 0], [0, 0, 1, 2]]

    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    assert mask_from_alpha(load_image(tmp_path / "opaque.png")) is None
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert mask_from_alpha(load_image(tmp_path / "rgb.png")) is None


# ----------------------------------------------------------------------------------------------------------------
# Kernels


def test_kernel_from_png_and_npy(tmp_path: Path) -> None:
    pixels = np.array([[0, 10, 0], [10, 60, 10], [0, 10, 0]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "k.png")
    kernel = load_kernel(tmp_path / "k.png")
    assert kernel.dtype == torch.float32 and kernel.shape == (3, 3)
    np.testing.assert_allclose(kernel.numpy(), pixels / 100.0, atol=1e-6)

    even = np.arange(1, 13, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "k.npy", even)
    kernel = load_kernel(tmp_path / "k.npy")
    assert kernel.shape == (3, 4) and kernel.dtype == torch.float32
    np.testing.assert_allclose(kernel.numpy(), even / even.sum(), rtol=1e-6)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)

    Image.fromarray(np.array([[0.5, 1.5], [1.0, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "kf.tif")
    np.testing.assert_allclose(load_kernel(tmp_path / "kf.tif").numpy(), [[0.125, 0.375], [0.25, 0.25]], atol=1e-7)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((5, 5)), "sums to 0"),
        (-np.ones((3, 3)), "9 negative weight(s)"),
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "NaN"),
        (np.ones((2, 3, 3)), "shape (2, 3, 3)"),
        (np.ones((3, 3), dtype=np.complex64), "complex64"),
        (np.zeros((0, 3)), "empty"),
    ],
    ids=["zero", "negative", "nan", "3d", "complex", "empty"],
)
def test_kernel_errors(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError) as info:
        load_kernel(tmp_path / "bad.npy")
    assert_one_line(info.value, "bad.npy", message)


def test_kernel_pickled_or_black(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as info:
        load_kernel(tmp_path / "obj.npy")
    assert_one_line(info.value, "obj.npy", "dtype object", "real-valued 2-D array")
    assert "allow_pickle" not in str(info.value)
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(InputError) as info:
        load_kernel(tmp_path / "black.png")
    assert_one_line(info.value, "black.png", "sums to 0")


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


# ----------------------------------------------------------------------------------------------------------------
# Safe writing


def test_input_is_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    Image.fromarray(rand8(4, 4, 3)).save(src)
    before = src.read_bytes()
    loaded = load_image(src)
    changed = -loaded.tensor
    for target, kwargs in [
        (src, {"like": loaded}),
        (src, {"like": loaded, "overwrite": True}),
        (tmp_path / "sub" / ".." / "photo.png", {"like": loaded, "overwrite": True}),
        (src, {"protected": [src], "overwrite": True}),
    ]:
        with pytest.raises(OutputError) as info:
            save_image(changed, target, **kwargs)
        assert_one_line(info.value, "photo.png", "inputs are never overwritten")
    os.link(src, tmp_path / "hardlink.png")
    with pytest.raises(OutputError, match="inputs are never overwritten"):
        save_image(changed, tmp_path / "hardlink.png", protected=[src], overwrite=True)
    assert src.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    save_image(torch.zeros(1, 1, 2, 2), out)
    with pytest.raises(OutputError) as info:
        save_image(torch.ones(1, 1, 2, 2), out)
    assert_one_line(info.value, "out.png", "already exists", "--overwrite")
    assert (pil_array(out) == 128).all()
    save_image(torch.ones(1, 1, 2, 2), out, overwrite=True)
    assert (pil_array(out) == 255).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio_write.os, "fsync", broken_fsync)
    with pytest.raises(OutputError) as info:
        save_image(torch.zeros(1, 3, 4, 4), tmp_path / "full.png")
    assert_one_line(info.value, "full.png", "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_output_path_checks(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as info:
        check_output_path(tmp_path / "out.gif")
    assert_one_line(info.value, "out.gif", ".png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(tmp_path / "dir.png", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "out.png")
    saved = save_image(torch.zeros(1, 3, 2, 2), tmp_path / "new" / "deep" / "out.PNG")
    assert saved.format == "PNG" and saved.path.exists()


def test_image_extensions_constant() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"} <= set(IMAGE_EXTENSIONS)


def test_module_import_does_not_import_torch() -> None:
    code = "import sys, diffrestore.imageio; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
