"""metrics.fid: FID's closed form on Gaussian features, its invariances, the unbiased KID, the input pipeline
(resize modes, grey, ranges) and the extractor on a random Inception."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from diffrestore.errors import UsageError
from diffrestore.metrics import fid
from diffrestore.metrics.inception import inception_features


def _gaussian(n: int, mean: torch.Tensor, std: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n, mean.numel(), generator=g, dtype=torch.float64)


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances() -> None:
    g = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    v1, v2 = torch.rand(16, generator=g, dtype=torch.float64) + 0.1, torch.rand(16, generator=g, dtype=torch.float64)
    expected = float((mu1 - mu2).pow(2).sum() + (v1 + v2 - 2 * (v1 * v2).sqrt()).sum())
    got = fid.frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)
    assert expected > 1.0  # a meaningful value, not a trivially small one


def test_frechet_distance_agrees_with_scipy_sqrtm_on_full_covariances() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(32, 32, generator=g, dtype=torch.float64)
    b = torch.randn(32, 32, generator=g, dtype=torch.float64)
    cov1, cov2 = a @ a.T / 32, b @ b.T / 32 + 0.01 * torch.eye(32, dtype=torch.float64)
    mu1, mu2 = torch.zeros(32, dtype=torch.float64), torch.full((32,), 0.5, dtype=torch.float64)
    root = scipy.linalg.sqrtm(cov1.numpy() @ cov2.numpy())
    expected = float(8.0 + np.trace(cov1.numpy()) + np.trace(cov2.numpy()) - 2 * np.trace(root).real)
    assert fid.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_order_does_not_matter() -> None:
    x = _gaussian(300, torch.zeros(24, dtype=torch.float64), torch.ones(24, dtype=torch.float64), 3).float()
    y = _gaussian(300, torch.full((24,), 0.3, dtype=torch.float64), torch.ones(24, dtype=torch.float64), 4).float()
    assert fid.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    shuffled = x[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    assert fid.fid_from_features(shuffled, y) == pytest.approx(fid.fid_from_features(x, y), rel=1e-9)
    assert fid.fid_from_features(x, y) == pytest.approx(fid.fid_from_features(y, x), rel=1e-6)
    # the sample estimate approaches the population value 24 * 0.3^2 = 2.16 (plus small-n bias)
    assert 1.5 < fid.fid_from_features(x, y) < 4.0


def test_the_small_n_form_equals_the_covariance_form() -> None:
    g = torch.Generator().manual_seed(9)
    a = torch.randn(12, 40, generator=g, dtype=torch.float64)
    b = torch.randn(7, 40, generator=g, dtype=torch.float64) * 1.5 + 0.2
    assert fid.fid_from_features(a, b) == pytest.approx(
        fid.frechet_distance(*fid.gaussian_stats(a), *fid.gaussian_stats(b)), rel=1e-6)  # eigh of rank < d: ~1e-8
    assert fid.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two feature sets"):
        fid.fid_from_features(a[:1], b)


def test_gaussian_stats_need_two_rows() -> None:
    with pytest.raises(ValueError, match="n >= 2"):
        fid.gaussian_stats(torch.zeros(1, 4))


def test_kid_is_unbiased_for_equal_distributions_and_positive_for_different_ones() -> None:
    d = 16
    # many small draws of equal distributions: the mean of an unbiased estimator is ~0, a biased one
    # (diagonals kept) would sit clearly above 0 at this subset size
    values, biased = [], []
    for seed in range(40):
        x = _gaussian(20, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64), 2 * seed)
        y = _gaussian(20, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64), 2 * seed + 1)
        values.append(fid.kid(x, y, subsets=5, subset_size=20, seed=seed)[0])
        k = fid._polynomial_kernel
        biased.append(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()))
    mean, spread = float(np.mean(values)), float(np.std(values)) / np.sqrt(len(values))
    assert abs(mean) < 3 * spread
    assert max(values) > 0 > min(values)  # an unbiased estimator goes both ways around 0
    assert float(np.mean(biased)) > 10 * spread  # keeping the diagonals: the bias this test would catch
    x = _gaussian(20, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64), 0)
    shifted = _gaussian(20, torch.full((d,), 1.0, dtype=torch.float64), torch.ones(d, dtype=torch.float64), 99)
    assert fid.kid(x, shifted, subsets=5, subset_size=20)[0] > 10 * spread


def test_kid_reports_subsets_and_is_reproducible() -> None:
    x = _gaussian(50, torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64), 5)
    y = _gaussian(40, torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64), 6)
    first = fid.kid(x, y, subsets=7, subset_size=1000, seed=3)
    assert first[2:] == (40, 7) and first[1] > 0
    assert fid.kid(x, y, subsets=7, subset_size=1000, seed=3) == first
    with pytest.raises(ValueError, match="at least 2"):
        fid.kid(x[:1], y)


def test_kid_with_per_subset_kernels_equals_the_precomputed_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _gaussian(30, torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64), 7)
    y = _gaussian(30, torch.full((8,), 0.2, dtype=torch.float64), torch.ones(8, dtype=torch.float64), 8)
    once = fid.kid(x, y, subsets=4, subset_size=10)
    monkeypatch.setattr(fid, "_KERNEL_ONCE", 1)
    assert fid.kid(x, y, subsets=4, subset_size=10) == pytest.approx(once, rel=1e-12)


# --------------------------------------------------------------------------------------------- input ----
@pytest.mark.parametrize("mode", ["bilinear", "tf1"])
def test_resize_modes_give_299_and_keep_a_constant_image_constant(mode: str) -> None:
    x = torch.full((2, 3, 40, 50), 0.2)
    out = fid.prepare_input(x, mode)
    assert out.shape == (2, 3, 299, 299)
    expected = 0.2 if mode == "bilinear" else (round(1.2 * 127.5) - 128) / 128  # tf1 quantises to 8 bits
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-6)


def test_tf1_resize_takes_source_pixels_without_half_pixel_shift() -> None:
    row = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4)
    out = fid._tf1_resize_axis(row, 8, 3)
    # source coordinate = i * 4 / 8: 0, 0.5, 1, ..., 3.5 -> the last repeats pixel 3
    assert out.flatten().tolist() == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5, 3, 3])


def test_grey_is_repeated_and_other_channel_counts_are_refused() -> None:
    grey = torch.rand(1, 1, 80, 80) * 2 - 1
    out = fid.prepare_input(grey, "none")
    assert out.shape == (1, 3, 80, 80) and torch.equal(out[:, 0], out[:, 2])
    with pytest.raises(UsageError, match="2 channels"):
        fid.prepare_input(torch.zeros(1, 2, 80, 80))
    with pytest.raises(UsageError, match="at least 75x75"):
        fid.prepare_input(torch.zeros(1, 3, 64, 64), "none")
    with pytest.raises(UsageError, match="resize mode 'bicubic'"):
        fid.prepare_input(grey, "bicubic")


def test_values_outside_the_range_are_clamped() -> None:
    out = fid.prepare_input(torch.full((1, 3, 80, 80), 3.0), "none")
    assert float(out.max()) == 1.0


def test_extractor_gives_2048_features_per_image_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net = inception_features("fid")
    extractor = fid.make_extractor(net, "none")
    monkeypatch.setattr(fid, "CHUNK", 2)
    x = torch.rand(3, 3, 75, 75) * 2 - 1
    features = extractor(x)
    assert features.shape == (3, fid.FEATURES) and features.dtype == torch.float32
    assert torch.allclose(features[2], extractor(x[2:])[0], atol=1e-5)  # chunking does not change a row
    with pytest.raises(UsageError):
        fid.make_extractor(net, "area")
