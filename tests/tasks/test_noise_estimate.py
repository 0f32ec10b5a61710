"""diffrestore.tasks.noise_estimate: the noise level of a user's file, read from the file itself (--noise-sigma auto).

Photos are 256 x 256 centre crops of skimage.data with Gaussian noise added on [0, 1], clipped and rounded to the
file's bits (benchmarks/small_noise.py, which prints the whole table); the truth is sqrt(sigma^2 + q^2), q the
rounding's rms. Each check is paired with what would fail it, so a band that cannot fail is not mistaken for one
that holds."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark

from diffrestore.errors import UsageError
from diffrestore.tasks.noise_estimate import (
    MAD_TO_SIGMA,
    MIN_COEFFICIENTS,
    estimate_noise,
    estimate_noise_sigma,
    haar_diagonal,
)

FLOOR_8 = 1 / 255


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("small_noise")


def _noisy(bench, name: str, sigma: float, seed: int = 0, bits: int = 8) -> torch.Tensor:
    """A 256 x 256 crop of photo ``name`` as a ``bits``-bit file with noise ``sigma``, in tensor units."""
    rng = np.random.default_rng([seed, 17])
    return bench.to_tensor(bench.as_file(bench.crop(bench.photo(name), 256), sigma, rng, bits))


def _smooth_field(height: int = 256, width: int = 256) -> np.ndarray:
    """A smooth RGB image in [0.2, 0.8] whose HH band is the rounding alone: a sum of a function of the row and one
    of the column has no mixed derivative, which is what HH sees."""
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    base = 0.5 + 0.15 * np.sin(2 * np.pi * u / 64) + 0.1 * np.cos(2 * np.pi * v / 48)
    return np.stack([base, 0.8 * base + 0.1, 1.0 - base], axis=-1)


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
@pytest.mark.parametrize("name", ["rocket", "moon", "brick", "retina", "cell"])
def test_added_noise_is_read_within_20_percent_on_photos_without_fine_detail(bench, name, sigma):
    noisy = _noisy(bench, name, sigma)
    found = estimate_noise(noisy)
    assert found.sigma == pytest.approx(bench.truth(sigma), rel=0.2)
    assert not found.floored


@pytest.mark.parametrize("sigma", [0.01, 0.03])
@pytest.mark.parametrize("name", ["rocket", "moon", "brick", "retina", "cell"])
def test_the_band_rejects_a_plain_std_of_the_image(bench, name, sigma):
    # the 20 % band can fail: the image's own std (mostly its content) is far outside it
    assert float(_noisy(bench, name, sigma).std()) / 2 > 1.2 * bench.truth(sigma)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_grain_and_fur_read_as_noise_at_low_levels_and_never_as_less(bench, name):
    # The known limit, with the factors measured (benchmarks/small_noise.py estimate): these photos carry grain,
    # fur or print of their own in the HH band. At 0.01 they read 1.4-1.9x, at 0.03 1.1-1.2x, at 0.1 within 5 %.
    ratios = {s: estimate_noise_sigma(_noisy(bench, name, s)) / bench.truth(s) for s in (0.01, 0.03, 0.1)}
    assert 1.0 < ratios[0.01] <= 2.0
    assert 1.0 < ratios[0.03] <= 1.25
    assert ratios[0.1] == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("name", ["rocket", "moon", "brick", "retina", "cell"])
def test_a_clean_8_bit_photo_without_fine_detail_reads_the_floor(bench, name):
    found = estimate_noise(_noisy(bench, name, 0.0))
    assert found.sigma == FLOOR_8 and found.floored
    assert found.raw < FLOOR_8  # so the floor, not the photo, set it (measured 0.2-0.8 steps)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_a_clean_detailed_photo_reads_at_most_four_floors(bench, name):
    # measured: astronaut 2.6, coffee 1.6, chelsea 3.6, camera 2.0 times 1/255 (their own grain and fine detail)
    assert FLOOR_8 < estimate_noise_sigma(_noisy(bench, name, 0.0)) <= 4 * FLOOR_8


def _plain_median_sigma(image: torch.Tensor) -> float:
    """The textbook estimator with a plain median, for comparison (no lattice interpolation, no clip guard)."""
    return float(haar_diagonal(image[0]).abs().median()) / MAD_TO_SIGMA / 2


def test_the_estimate_is_not_stuck_on_the_files_lattice(bench):
    # 8-bit pixels make HH coefficients multiples of half a step; a plain median then moves in jumps of 0.74 step
    grey = np.full((256, 256), 0.5)
    plain_errors = []
    for i, sigma in enumerate((0.006, 0.008, 0.01, 0.012, 0.015)):
        image = bench.to_tensor(bench.as_file(grey, sigma, np.random.default_rng(i)))
        assert estimate_noise_sigma(image) == pytest.approx(bench.truth(sigma), rel=0.05)
        plain_errors.append(abs(_plain_median_sigma(image) / bench.truth(sigma) - 1))
    assert max(plain_errors) > 0.05


def test_clipped_black_does_not_pull_the_estimate_down(bench):
    # hubble_deep_field is mostly black: at 0.1 half the noise is clipped away there
    noisy = _noisy(bench, "hubble_deep_field", 0.1)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.1, rel=0.1)
    assert _plain_median_sigma(noisy) < 0.8 * 0.1


def _box_known(height: int, width: int, top: int, left: int, size: int) -> torch.Tensor:
    known = torch.ones(1, 1, height, width, dtype=torch.bool)
    known[..., top : top + size, left : left + size] = False
    return known


def test_a_hole_filled_with_garbage_does_not_move_the_estimate(bench):
    noisy = _noisy(bench, "rocket", 0.03)
    known = _box_known(256, 256, 63, 71, 101)  # odd corners: blocks straddle the hole's edges
    garbage = noisy.clone()
    hole = ~known.expand_as(noisy)
    garbage[hole] = torch.rand(int(hole.sum()), generator=torch.Generator().manual_seed(0)) * 2 - 1
    clean_hole = estimate_noise(noisy, known=known)
    filled = estimate_noise(garbage, known=known)
    assert filled.sigma == clean_hole.sigma  # the hole's pixels take no part, not even at its edges
    assert filled.sigma == pytest.approx(estimate_noise_sigma(noisy), rel=0.03)
    assert filled.sigma == pytest.approx(bench.truth(0.03), rel=0.2)
    # without the mask the hole (16 % of the pixels) moves the median's quantile: 20 % high
    assert estimate_noise_sigma(garbage) > 1.15 * filled.sigma


def test_too_few_known_blocks_fall_back_to_the_floor_and_say_so(bench):
    noisy = _noisy(bench, "rocket", 0.03)
    known = torch.zeros(1, 1, 256, 256, dtype=torch.bool)
    known[..., :12, :12] = True  # 36 blocks x 3 channels = 108 coefficients, under MIN_COEFFICIENTS
    found = estimate_noise(noisy, known=known)
    assert found.coefficients == 108 < MIN_COEFFICIENTS
    assert found.sigma == FLOOR_8 and not found.reliable and found.floored
    assert found.raw == pytest.approx(0.03, rel=0.5)  # still reported, for the message
    assert "fewer than 128" in found.describe() and "1/255" in found.describe()
    none = estimate_noise(noisy, known=torch.zeros(256, 256, dtype=torch.bool))
    assert none.raw is None and none.sigma == FLOOR_8 and "no usable" in none.describe()


def test_odd_sizes_drop_the_last_row_and_column(bench):
    odd = bench.to_tensor(bench.as_file(_smooth_field(257, 255), 0.02, np.random.default_rng(3)))
    found = estimate_noise(odd)
    assert found.coefficients == 3 * 128 * 127
    assert found.sigma == estimate_noise_sigma(odd[..., :256, :254])
    assert found.sigma == pytest.approx(bench.truth(0.02), rel=0.2)
    tiny = estimate_noise(torch.zeros(1, 3, 1, 7))  # no 2x2 block at all
    assert tiny.raw is None and tiny.sigma == FLOOR_8


def test_gray_and_rgb_layouts(bench):
    gray = _noisy(bench, "moon", 0.03)
    assert gray.shape[1] == 1
    expected = estimate_noise_sigma(gray)
    assert estimate_noise_sigma(gray[0]) == expected == estimate_noise_sigma(gray[0, 0])
    rgb = bench.to_tensor(bench.as_file(_smooth_field(), 0.03, np.random.default_rng(4)))
    found = estimate_noise(rgb)
    assert found.coefficients == 3 * 128 * 128  # every channel pooled into one median
    assert found.sigma == pytest.approx(bench.truth(0.03), rel=0.2)
    with pytest.raises(UsageError):
        estimate_noise(torch.zeros(2, 3, 8, 8))  # one image at a time


def test_16_bit_files_floor_at_1_over_65535_and_resolve_what_8_bits_cannot(bench):
    smooth = _smooth_field()
    clean16 = estimate_noise(bench.to_tensor(bench.as_file(smooth, 0.0, None, bits=16)), bit_depth=16)
    assert clean16.floor == 1 / 65535 and clean16.sigma == 1 / 65535
    sigma = 0.001  # a quarter of the 8-bit floor
    rng = np.random.default_rng(5)
    found16 = estimate_noise_sigma(bench.to_tensor(bench.as_file(smooth, sigma, rng, bits=16)), bit_depth=16)
    assert found16 == pytest.approx(bench.truth(sigma, bits=16), rel=0.2)
    found8 = estimate_noise_sigma(bench.to_tensor(bench.as_file(smooth, sigma, rng, bits=8)), bit_depth=8)
    assert found8 == FLOOR_8 > 3 * found16


def test_a_blurred_photo_reads_its_noise(bench):
    # the blur task's input: blur leaves the HH band to the noise, even on a photo whose own grain reads 2.6 floors
    from diffrestore.operators import build_operator

    clean = bench.to_tensor(bench.crop(bench.photo("astronaut"), 256))
    blurred = build_operator("gaussian_blur", (3, 256, 256), kernel_size=25, sigma=2.0)(clean)
    image01 = ((blurred[0].permute(1, 2, 0).double().numpy() + 1) / 2).clip(0, 1)
    noisy = bench.to_tensor(bench.as_file(image01, 0.01, np.random.default_rng(7)))
    assert estimate_noise_sigma(noisy) == pytest.approx(bench.truth(0.01), rel=0.1)
    assert estimate_noise_sigma(_noisy(bench, "astronaut", 0.01)) > 1.2 * bench.truth(0.01)  # unblurred: not


def test_nan_pixels_are_left_out(bench):
    noisy = _noisy(bench, "cell", 0.03)
    spoiled = noisy.clone()
    spoiled[..., 10:20, 30:200] = math.nan
    assert estimate_noise_sigma(spoiled) == pytest.approx(estimate_noise_sigma(noisy), rel=0.02)


def test_describe_says_the_value_the_coefficients_and_the_floor(bench):
    found = estimate_noise(_noisy(bench, "retina", 0.03))
    text = found.describe()
    assert re.fullmatch(
        r"estimated noise sigma 0\.0\d{3} on \[0, 1\] \(MAD of [\d,]+ wavelet coefficients; floor 1/255\)", text
    ), text
    assert f"{found.coefficients:,}" in text and f"{found.sigma:.4f}" in text
    floored = estimate_noise(_noisy(bench, "moon", 0.0)).describe()
    assert "below the floor 1/255" in floored and floored.startswith("estimated noise sigma 0.0039")


@pytest.mark.parametrize("bits", [0, 17, True, 8.0])
def test_bit_depth_must_be_a_whole_number_of_bits(bits):
    with pytest.raises(UsageError):
        estimate_noise(torch.zeros(1, 1, 8, 8), bit_depth=bits)


def test_a_mask_of_another_size_is_refused():
    with pytest.raises(UsageError, match="does not fit"):
        estimate_noise(torch.zeros(1, 3, 16, 16), known=torch.ones(1, 1, 16, 15, dtype=torch.bool))
