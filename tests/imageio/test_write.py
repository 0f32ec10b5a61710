"""diffrestore.imageio.write: saving rules (clamping, bit depth, alpha and ICC per output format) and safe
writing (inputs never overwritten, no temporary file left behind)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import _chunk, as_uint, assert_one_line, pil_array, plain_png, rand8, rand16, srgb_icc
from PIL import Image

from diffrestore.errors import OutputError
from diffrestore.imageio import check_output_path, load_image, save_image, to_channels
from diffrestore.imageio import write as imageio_write

# ----------------------------------------------------------------------------------------------------------------
# Saving rules


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
