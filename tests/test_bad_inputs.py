"""Bad inputs fail at once, in one line that names the file and the fix, as an error of our own (exit 2).

Kernel files (every invalid kind: all zeros, NaN, inf, negative weights, 3-D, random bytes, object arrays,
forged headers), files of several pictures (multi-page TIFF, animated PNG / WebP / GIF: refused with the count
and how to extract one, never read in part), and the notes a caller prints when reading changed something
(CMYK converted) or when the image's own transparency becomes its inpainting mask.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffrestore.errors import EXIT_USAGE, ImageReadError, InputError, UsageError
from diffrestore.imageio import load_image, load_kernel, load_mask, mask_from_alpha, probe_image
from diffrestore.operators.kernels import normalise_kernel

RNG = np.random.default_rng(7)


def _one_line(error: BaseException, *needles: str) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


def _with_hint(error: InputError) -> None:
    """Every refusal says how to fix it, and none repeats numpy's advice to unpickle an untrusted file."""
    assert error.hint, f"no hint in {error}"
    assert "allow_pickle" not in str(error)
    assert error.exit_code == EXIT_USAGE


# ----------------------------------------------------------------------------------------------------------------
# Kernel files: every invalid kind is one InputError naming the file and the fix


def _npy_with_shape_in_header(tmp_path: Path, shape: tuple[int, int]) -> Path:
    """A .npy header (written by numpy itself) that claims ``shape``, followed by one float64 of data."""
    import io

    from numpy.lib import format as npy

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    (tmp_path / "forged.npy").write_bytes(buffer.getvalue() + np.float64(1).tobytes())
    return tmp_path / "forged.npy"


KERNEL_CASES = {
    "zeros": (lambda p: np.save(p, np.zeros((5, 5))), ["sums to 0"]),
    "nan": (lambda p: np.save(p, np.array([[1.0, np.nan], [1.0, 1.0]])), ["NaN or infinite"]),
    "inf": (lambda p: np.save(p, np.array([[1.0, np.inf], [1.0, 1.0]])), ["NaN or infinite"]),
    "all-negative": (lambda p: np.save(p, -np.ones((3, 3))), ["9 negative weight(s)", "down to -1"]),
    "one-negative": (lambda p: np.save(p, np.array([[-0.5, 2.0], [1.0, 1.0]])), ["1 negative weight(s)"]),
    "3d": (lambda p: np.save(p, np.ones((2, 3, 3))), ["shape (2, 3, 3)", "2-D"]),
    "random-bytes": (lambda p: p.write_bytes(RNG.integers(0, 256, 300, dtype=np.uint8).tobytes()),
                     ["not a NumPy .npy file"]),
    "object": (lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True), ["dtype object"]),
    "pickle-of-list": (lambda p: np.save(p, np.array([[1, "a"]], dtype=object), allow_pickle=True),
                       ["dtype object"]),
}


@pytest.mark.parametrize("case", sorted(KERNEL_CASES))
def test_invalid_kernel_file_is_one_clear_line(tmp_path: Path, case: str) -> None:
    write, needles = KERNEL_CASES[case]
    path = tmp_path / "kernel.npy"
    write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy/torch warning leaks out either
        with pytest.raises(InputError) as info:
            load_kernel(path)
    _one_line(info.value, "kernel", "kernel.npy", *needles)
    _with_hint(info.value)


def test_kernel_random_bytes_never_suggests_allow_pickle(tmp_path: Path) -> None:
    # numpy's own message for a file without the .npy signature says "load it unsafely using allow_pickle="
    (tmp_path / "k.npy").write_bytes(b"definitely not numpy" * 10)
    with pytest.raises(ImageReadError) as info:
        load_kernel(tmp_path / "k.npy")
    text = _one_line(info.value, "k.npy", "not a NumPy .npy file", "numpy.save")
    assert "pickle" not in text.replace(str(tmp_path), "")


def test_kernel_header_claiming_a_huge_shape_is_refused_before_reading(tmp_path: Path) -> None:
    path = _npy_with_shape_in_header(tmp_path, (99999, 99999))
    with pytest.raises(ImageReadError) as info:
        load_kernel(path, max_pixels=10_000)
    _one_line(info.value, "forged.npy", "99999 x 99999", "above the limit of 10,000", "DIFFRESTORE_MAX_PIXELS")
    path = _npy_with_shape_in_header(tmp_path, (30, 30))  # within the limit, but the data is not there
    with pytest.raises(ImageReadError) as info:
        load_kernel(path, max_pixels=10_000)
    _one_line(info.value, "forged.npy", "truncated or corrupt", "7200")


def test_kernel_header_numpy_cannot_parse_is_a_corrupt_file(tmp_path: Path) -> None:
    # Found by the fuzzer: numpy's header parser falls back to the tokenizer and raises tokenize.TokenError.
    import struct

    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2}"
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    (tmp_path / "k.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(16))
    with pytest.raises(ImageReadError) as info:
        load_kernel(tmp_path / "k.npy")
    _one_line(info.value, "k.npy", "truncated or corrupt")


def test_kernel_values_float32_cannot_hold_are_normalised_not_overflowed(tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.full((2, 2), 1e300))
    np.save(tmp_path / "small.npy", np.full((2, 2), 1e-300))
    np.save(tmp_path / "be.npy", np.array([[1, 3]], dtype=">f8"))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(np.array([[1.0, 2.0], [3.0, 4.0]])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("big.npy", "small.npy"):
            np.testing.assert_allclose(load_kernel(tmp_path / name).numpy(), np.full((2, 2), 0.25))
        np.testing.assert_allclose(load_kernel(tmp_path / "be.npy").numpy(), [[0.25, 0.75]])
        np.testing.assert_allclose(load_kernel(tmp_path / "fortran.npy").numpy(), [[0.1, 0.2], [0.3, 0.4]], rtol=1e-6)


def test_kernel_images_get_the_same_checks(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "black.png")
    Image.fromarray(np.array([[1.0, -1.0], [2.0, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "neg.tif")
    for name, needle in (("black.png", "sums to 0"), ("neg.tif", "1 negative weight(s)")):
        with pytest.raises(InputError) as info:
            load_kernel(tmp_path / name)
        _one_line(info.value, name, needle)
        _with_hint(info.value)


def test_normalise_kernel_keeps_usage_errors_for_arrays_and_float32_results() -> None:
    with pytest.raises(UsageError, match="blur kernel has 1 negative weight"):
        normalise_kernel(torch.tensor([[1.0, -0.1], [1.0, 1.0]]), "blur kernel")
    with pytest.raises(UsageError, match="complex values"):
        normalise_kernel(torch.ones(2, 2, dtype=torch.complex64), "blur kernel")
    kernel = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    out = normalise_kernel(kernel, "blur kernel")
    # Ordinary float32 kernels are normalised exactly as before the float64 checks existed (bitwise).
    assert out.dtype == torch.float32 and torch.equal(out, kernel / float(kernel.sum()))


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
        _one_line(info.value, name, *needles)
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
    text = _one_line(info.value, "anim.gif", "animated GIF of 4 frames", "GIF is not a supported input format",
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
    _one_line(info.value, "photo.png", f"is a {name}", "not a supported input format", "magick")


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
    _one_line(ImageReadError(notes[0]), "transparency is the inpainting mask", "5 pixels", "below 50 %",
              "saved opaque")
    _one_line(ImageReadError(notes[1]), "2 pixels are semi-transparent", "below 50 % count as missing",
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
