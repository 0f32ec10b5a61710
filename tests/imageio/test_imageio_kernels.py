"""Kernel files (``load_kernel`` in diffrestore/imageio/masks.py): PNG and .npy kernels load normalised; every
invalid kind (all zeros, NaN, inf, negative weights, 3-D, random bytes, object arrays, forged headers) is one
InputError naming the file and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import assert_one_line, one_line
from PIL import Image

from diffrestore.errors import EXIT_USAGE, ImageReadError, InputError
from diffrestore.imageio import load_kernel

RNG = np.random.default_rng(7)


def _with_hint(error: InputError) -> None:
    """Every refusal says how to fix it, and none repeats numpy's advice to unpickle an untrusted file."""
    assert error.hint, f"no hint in {error}"
    assert "allow_pickle" not in str(error)
    assert error.exit_code == EXIT_USAGE


# ----------------------------------------------------------------------------------------------------------------
# Kernel files that load


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
# Every invalid kind is one InputError naming the file and the fix


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
    one_line(info.value, "kernel", "kernel.npy", *needles)
    _with_hint(info.value)


def test_kernel_random_bytes_never_suggests_allow_pickle(tmp_path: Path) -> None:
    # numpy's own message for a file without the .npy signature says "load it unsafely using allow_pickle="
    (tmp_path / "k.npy").write_bytes(b"definitely not numpy" * 10)
    with pytest.raises(ImageReadError) as info:
        load_kernel(tmp_path / "k.npy")
    text = one_line(info.value, "k.npy", "not a NumPy .npy file", "numpy.save")
    assert "pickle" not in text.replace(str(tmp_path), "")


def test_kernel_header_claiming_a_huge_shape_is_refused_before_reading(tmp_path: Path) -> None:
    path = _npy_with_shape_in_header(tmp_path, (99999, 99999))
    with pytest.raises(ImageReadError) as info:
        load_kernel(path, max_pixels=10_000)
    one_line(info.value, "forged.npy", "99999 x 99999", "above the limit of 10,000", "DIFFRESTORE_MAX_PIXELS")
    path = _npy_with_shape_in_header(tmp_path, (30, 30))  # within the limit, but the data is not there
    with pytest.raises(ImageReadError) as info:
        load_kernel(path, max_pixels=10_000)
    one_line(info.value, "forged.npy", "truncated or corrupt", "7200")


def test_kernel_header_numpy_cannot_parse_is_a_corrupt_file(tmp_path: Path) -> None:
    # Found by the fuzzer: numpy's header parser falls back to the tokenizer and raises tokenize.TokenError.
    import struct

    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2}"
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    (tmp_path / "k.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(16))
    with pytest.raises(ImageReadError) as info:
        load_kernel(tmp_path / "k.npy")
    one_line(info.value, "k.npy", "truncated or corrupt")


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
        one_line(info.value, name, needle)
        _with_hint(info.value)
