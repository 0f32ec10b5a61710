"""diffrestore.imageio.png: the module's own 16-bit PNG decoder and encoder against an independent plain
encoder (tests/image_files.py), Pillow, and reference filters."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from image_files import RNG, _chunk, as_uint, plain_png, rand16
from PIL import Image

from diffrestore.imageio import load_image, save_image
from diffrestore.imageio import png as imageio_png


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
