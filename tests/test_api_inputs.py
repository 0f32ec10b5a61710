"""`diffrestore.restore(...)` reads images given as objects (PIL images, numpy arrays, torch tensors) as the CLI
reads files: 16-bit and float PIL modes on their range, integers on their type's range, transparency as the
inpainting mask, and NaN, out-of-range floats and unusable masks refused with the package's own errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import H, W, make_tiny_model
from PIL import Image

import diffrestore
from diffrestore.errors import DiffrestoreError, InputError, UsageError


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    from diffrestore.run.engine import load_prior

    model = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
    return load_prior(str(model), device=torch.device("cpu"), dtype=torch.float32)


FAST = {"steps": 1, "method": "dps", "device": "cpu"}


def _denoise(image, prior, **options):
    # A known noise level, so that the measurement is the input itself and no estimate depends on its content.
    return diffrestore.restore(image, task="denoise", prior=prior, noise_sigma=0.05, **FAST, **options)


def _refused(error: pytest.ExceptionInfo, kind: type[DiffrestoreError]) -> DiffrestoreError:
    """The package's own error, of the right class, with a fix and exit code 2 (bad input) as the CLI's."""
    assert isinstance(error.value, kind), type(error.value)
    assert error.value.exit_code == 2 and error.value.hint
    assert "\n" not in str(error.value)
    return error.value


def _gray_level(result) -> float:
    """The measurement's value on the [0, 1] scale (the input, for a denoise of a real image)."""
    return float((result.measurement.mean() + 1) / 2)


# ---------------------------------------------------------------------------------------------------------------
# NaN, infinities and floats out of range


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nan_or_infinite_array_is_refused(prior, bad) -> None:
    picture = np.full((H, W, 3), 0.5, np.float32)
    picture[3, 4, 1] = bad
    with pytest.raises(DiffrestoreError) as error:
        _denoise(picture, prior)
    assert "NaN or infinite values (1 of 1,440)" in str(_refused(error, InputError))


def test_a_nan_tensor_is_refused(prior) -> None:
    with pytest.raises(DiffrestoreError) as error:
        _denoise(torch.full((3, H, W), float("nan")), prior)
    assert "the image tensor contains NaN" in str(_refused(error, InputError))


@pytest.mark.parametrize("values", [(0.2, 1.5), (-0.5, 0.5), (0.0, 255.0)])
def test_float_arrays_outside_0_1_are_refused(prior, values) -> None:
    picture = np.linspace(*values, H * W * 3, dtype=np.float32).reshape(H, W, 3)
    with pytest.raises(DiffrestoreError) as error:
        _denoise(picture, prior)
    message = str(_refused(error, InputError))
    assert f"values from {values[0]:.4g} to {values[1]:.4g}, outside [0, 1]" in message
    assert "uint8" in message  # the fix for 0..255 values


def test_float_arrays_off_by_rounding_are_clipped(prior) -> None:
    picture = np.full((H, W), 0.5, np.float32)
    picture[0, 0], picture[0, 1] = 1.0 + 1e-6, -1e-6  # what a float32 resize leaves
    result = _denoise(picture, prior)
    assert float(result.measurement.max()) <= 1.0 and float(result.measurement.min()) >= -1.0


def test_float_tensors_outside_tensor_units_are_refused(prior) -> None:
    with pytest.raises(DiffrestoreError) as error:
        _denoise(torch.linspace(0, 3, H * W).reshape(1, H, W), prior)
    assert "outside [-1, 1]" in str(_refused(error, InputError))


# ---------------------------------------------------------------------------------------------------------------
# Integer tensors: on their type's range, like arrays


def test_a_uint8_tensor_is_read_on_0_255_like_an_array(prior) -> None:
    tensor = torch.full((3, H, W), 51, dtype=torch.uint8)
    from_tensor = _denoise(tensor, prior)
    from_array = _denoise(tensor.permute(1, 2, 0).numpy(), prior)
    assert _gray_level(from_tensor) == pytest.approx(51 / 255, abs=1e-6)
    assert torch.equal(from_tensor.measurement, from_array.measurement)


def test_a_uint16_tensor_is_read_on_0_65535(prior) -> None:
    tensor = torch.full((1, H, W), 13107, dtype=torch.uint16)
    assert _gray_level(_denoise(tensor, prior)) == pytest.approx(0.2, abs=1e-6)


def test_other_integer_tensors_are_refused(prior) -> None:
    with pytest.raises(DiffrestoreError) as error:
        _denoise(torch.zeros(3, H, W, dtype=torch.int64), prior)
    assert "dtype int64" in str(_refused(error, UsageError))


# ---------------------------------------------------------------------------------------------------------------
# PIL modes: 16-bit and float gray on their range, as the CLI reads files


def test_a_16bit_pil_image_keeps_its_range_and_bit_depth(tmp_path, prior) -> None:
    image = Image.fromarray(np.full((H, W), 13107, np.uint16))
    assert image.mode == "I;16"
    result = _denoise(image, prior)
    assert _gray_level(result) == pytest.approx(0.2, abs=1e-6)  # convert('L') made it white
    saved = result.save(tmp_path / "out.png")
    with Image.open(saved) as out:
        assert out.mode.startswith("I;16")  # a 16-bit input stays 16-bit, as from a 16-bit PNG file


def test_a_mode_i_pil_image_is_read_on_the_16_bit_range(prior) -> None:
    image = Image.fromarray(np.full((H, W), 13107, np.int32))
    assert image.mode == "I"
    assert _gray_level(_denoise(image, prior)) == pytest.approx(0.2, abs=1e-6)


def test_a_mode_i_pil_image_outside_16_bits_is_refused(prior) -> None:
    image = Image.fromarray(np.full((H, W), -5, np.int32))
    with pytest.raises(DiffrestoreError) as error:
        _denoise(image, prior)
    assert "outside 0..65535" in str(_refused(error, InputError))


def test_a_float_pil_image_is_read_on_0_1(tmp_path, prior) -> None:
    image = Image.fromarray(np.full((H, W), 0.7, np.float32))
    assert image.mode == "F"
    result = _denoise(image, prior)
    assert _gray_level(result) == pytest.approx(0.7, abs=1e-6)  # convert('L') made it black
    with Image.open(result.save(tmp_path / "out.png")) as out:
        assert out.mode == "L"  # floats have no bit depth: 8 bits unless asked
    with Image.open(result.save(tmp_path / "out16.png", bit_depth=16)) as out:
        assert out.mode.startswith("I;16")
    with pytest.raises(UsageError, match="bit_depth must be 8 or 16"):
        result.save(tmp_path / "out12.png", bit_depth=12)
    with pytest.raises(DiffrestoreError) as error:
        _denoise(Image.fromarray(np.full((H, W), 200.0, np.float32)), prior)
    assert "outside [0, 1]" in str(_refused(error, InputError))


def test_a_uint16_array_is_saved_at_16_bits(tmp_path, prior) -> None:
    result = _denoise(np.full((H, W, 3), 13107, np.uint16), prior)
    from diffrestore.imageio import load_image

    assert load_image(result.save(tmp_path / "out.png")).bit_depth == 16


# ---------------------------------------------------------------------------------------------------------------
# Transparency: the inpainting mask, as a file's alpha is for the CLI


def _rgba(hole: tuple[slice, slice]) -> np.ndarray:
    pixels = np.zeros((H, W, 4), np.uint8)
    pixels[..., :3] = 150
    pixels[..., 3] = 255
    pixels[(*hole, 3)] = 0
    return pixels


HOLE = (slice(4, 9), slice(6, 14))


@pytest.mark.parametrize("make", [lambda p: Image.fromarray(p, "RGBA"), lambda p: p], ids=["pil", "array"])
def test_transparency_is_the_inpainting_mask(tmp_path, prior, make) -> None:
    pixels = _rgba(HOLE)
    result = diffrestore.restore(make(pixels), task="inpaint", prior=prior, **FAST)
    hole = np.zeros((H, W), bool)
    hole[HOLE] = True
    y = result.measurement[0].permute(1, 2, 0).numpy()
    assert np.all(y[hole] == 0) and np.allclose(y[~hole], 150 / 255 * 2 - 1, atol=1e-6)
    assert any("transparency is the inpainting mask: 40 pixels" in note for note in result.notes)
    with Image.open(result.save(tmp_path / "out.png")) as out:
        assert out.mode == "RGB"  # the hole is filled: saved opaque, as the CLI does


def test_transparency_is_kept_for_other_tasks_and_other_masks(tmp_path, prior) -> None:
    pixels = _rgba(HOLE)
    result = _denoise(Image.fromarray(pixels, "RGBA"), prior)
    with Image.open(result.save(tmp_path / "denoised.png")) as out:
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], pixels[..., 3])
    boxed = diffrestore.restore(Image.fromarray(pixels, "RGBA"), task="inpaint", box=(0, 0, 3, 3), prior=prior,
                                **FAST)
    assert not any("transparency" in note for note in boxed.notes)
    with Image.open(boxed.save(tmp_path / "boxed.png")) as out:
        assert out.mode == "RGBA"


def test_a_palette_image_with_transparency_is_its_own_mask(prior) -> None:
    indices = np.zeros((H, W), np.uint8)
    indices[HOLE] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([150, 150, 150, 150, 150, 150] + [0] * 762)
    image.info["transparency"] = 1  # palette entry 1 is see-through: the hole
    result = diffrestore.restore(image, task="inpaint", prior=prior, **FAST)
    y = result.measurement[0]
    assert bool((y[:, HOLE[0], HOLE[1]] == 0).all())
    assert int((y == 0).sum()) == 3 * 40


def test_an_opaque_image_is_no_mask(prior) -> None:
    with pytest.raises(UsageError, match="inpaint needs a mask"):
        diffrestore.restore(Image.fromarray(_rgba((slice(0, 0), slice(0, 0))), "RGBA"), task="inpaint",
                            prior=prior, **FAST)


# ---------------------------------------------------------------------------------------------------------------
# Masks


@pytest.mark.parametrize("fill", ["all", "some"])
def test_a_nan_mask_is_refused(prior, fill) -> None:
    mask = np.zeros((H, W), np.float32)
    mask[2:5, 2:5] = 1.0
    if fill == "all":
        mask[:] = np.nan
    else:
        mask[10, 10] = np.nan  # would silently count as known
    with pytest.raises(DiffrestoreError) as error:
        diffrestore.restore(np.full((H, W, 3), 0.5, np.float32), task="inpaint", mask=mask, prior=prior, **FAST)
    assert "the mask contains NaN" in str(_refused(error, UsageError))


def test_a_mask_with_no_missing_pixel_is_refused_as_by_the_cli(prior) -> None:
    with pytest.raises(UsageError, match="the mask marks no missing pixel"):
        diffrestore.restore(np.full((H, W, 3), 0.5, np.float32), task="inpaint", mask=np.zeros((H, W), bool),
                            prior=prior, **FAST)


def test_a_mask_of_strings_is_refused(prior) -> None:
    with pytest.raises(DiffrestoreError) as error:
        diffrestore.restore(np.full((H, W, 3), 0.5, np.float32), task="inpaint", mask=np.full((H, W), "x"),
                            prior=prior, **FAST)
    assert "dtype <U1" in str(_refused(error, UsageError))


def test_a_path_input_still_reports_its_file(tmp_path, prior) -> None:
    from cli_support import write_image

    path = write_image(tmp_path / "a.png")
    result = _denoise(path, prior)
    assert isinstance(result.source.path, Path) and result.source.path == path
    assert _denoise(np.zeros((H, W), np.uint8), prior).source is None
