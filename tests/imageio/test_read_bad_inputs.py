"""Bad inputs to the readers (diffrestore/imageio/read.py) fail at once, in one line that names the file and the
fix, as an error of our own (exit 2): files of several pictures (multi-page TIFF, animated PNG / WebP / GIF:
refused with the count and how to extract one, never read in part) and other known formats refused by name; and
the notes a caller prints when reading changed something (CMYK converted) or when the image's own transparency
becomes its inpainting mask. Kernel files: tests/imageio/test_imageio_kernels.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_files import one_line
from PIL import Image

from diffrestore.errors import ImageReadError
from diffrestore.imageio import load_image, load_kernel, load_mask, mask_from_alpha, probe_image

RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------------------------------------------
# Files of several pictures: refused with the count and how to extract one; GIF refused by name


def _frames(count: int, size: tuple[int, int] = (6, 5)) -> list[Image.Image]:
    return [Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)]


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("pages.tif", ["is a TIFF of 3 pages", "no page is lost", "magick", "pages.tif[0]", "im.seek(0)"]),
        ("anim.png", ["is a PNG of 3 frames", "frame", "magick", "anim.png[0]"]),
        ("anim.webp", ["is a WEBP of 3 frames", "frame", "magick"]),
    ],
)
def test_multi_picture_files_are_refused_not_read_in_part(tmp_path: Path, name: str, needles: list[str]) -> None:
    first, *rest = _frames(3)
    first.save(tmp_path / name, save_all=True, append_images=rest)
    readers = {
        "image": load_image,
        "probe": probe_image,
        "mask": lambda p: load_mask(p, (6, 5)),
        "kernel": load_kernel,
    }
    for what, reader in readers.items():
        with pytest.raises(ImageReadError) as info:
            reader(tmp_path / name)
        one_line(info.value, name, *needles)
        assert str(info.value).startswith("kernel" if what == "kernel" else "mask" if what == "mask" else "image")


def test_single_page_tiff_and_webp_still_load(tmp_path: Path) -> None:
    (picture,) = _frames(1)
    for name in ("one.tif", "one.webp", "one.png"):
        picture.save(tmp_path / name, save_all=True, append_images=[])
        assert load_image(tmp_path / name).size == (6, 5)


def test_animated_gif_names_gif_and_its_frame_count(tmp_path: Path) -> None:
    first, *rest = _frames(4)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest)
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "anim.gif")
    text = one_line(info.value, "anim.gif", "animated GIF of 4 frames", "GIF is not a supported input format",
                     "PNG, JPEG", "magick", "anim.gif[0]")
    assert "really a picture" not in text


def test_phone_mpo_is_one_photo_and_still_loads(tmp_path: Path) -> None:
    photo, preview = _frames(2)
    photo.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[preview])
    loaded = load_image(tmp_path / "phone.jpg")
    assert loaded.format == "MPO" and loaded.size == (6, 5)


@pytest.mark.parametrize(
    ("magic", "name"),
    [(b"\x00\x00\x00\x18ftypheic", "HEIC"), (b"%PDF-1.7\n", "PDF"), (b"8BPS\x00\x01", "Photoshop")],
)
def test_other_known_formats_are_refused_by_name(tmp_path: Path, magic: bytes, name: str) -> None:
    (tmp_path / "photo.png").write_bytes(magic + bytes(64))
    with pytest.raises(ImageReadError) as info:
        load_image(tmp_path / "photo.png")
    one_line(info.value, "photo.png", f"is a {name}", "not a supported input format", "magick")


# ----------------------------------------------------------------------------------------------------------------
# Notes: what reading changed, and what happens when the transparency is the mask


def test_cmyk_jpeg_carries_a_note(tmp_path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8), mode="CMYK").save(tmp_path / "print.jpg")
    loaded = load_image(tmp_path / "print.jpg")
    assert loaded.channels == 3
    assert loaded.notes == ("converted from CMYK to RGB without colour management (Pillow's plain formula)",)


def test_alpha_used_as_the_mask_is_explained(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, :, 3] = 0  # 4 fully transparent pixels: missing
    rgba[1, 0, 3] = 100  # semi-transparent below half: missing
    rgba[1, 1, 3] = 200  # semi-transparent above half: known
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "holes.png")
    loaded = load_image(tmp_path / "holes.png")
    notes = loaded.alpha_mask_notes()
    assert len(notes) == 2
    one_line(ImageReadError(notes[0]), "transparency is the inpainting mask", "5 pixels", "below 50 %",
              "saved opaque")
    one_line(ImageReadError(notes[1]), "2 pixels are semi-transparent", "below 50 % count as missing",
              "others as known")
    mask = mask_from_alpha(loaded)
    assert mask is not None and int(mask.sum()) == 5  # the notes count what the mask holds

    rgba[1, :2, 3] = 255  # only fully transparent holes: no semi-transparency note
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "clean.png")
    assert len(load_image(tmp_path / "clean.png").alpha_mask_notes()) == 1
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "opaque.png").alpha_mask_notes() == ()
    assert load_image(tmp_path / "rgb.png").alpha_mask_notes() == ()
