"""diffrestore.metrics (metrics/pixel.py): PSNR and SSIM against scikit-image's, computed in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrestore import metrics

# ----------------------------------------------------------------------------------------------------------------
# Metrics (compared with scikit-image's, computed in float64)


def test_psnr_and_ssim_match_scikit_image() -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 1, (3, 32, 40))
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    to_t = lambda a: torch.from_numpy(a * 2 - 1).float()[None]  # noqa: E731
    ours_psnr = metrics.psnr(to_t(noisy), to_t(clean)).item()
    assert abs(ours_psnr - peak_signal_noise_ratio(clean, noisy, data_range=1.0)) < 1e-3
    ref_ssim = structural_similarity(clean, noisy, data_range=1.0, channel_axis=0, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert abs(metrics.ssim(to_t(noisy), to_t(clean)).item() - ref_ssim) < 1e-4
    assert metrics.ssim(to_t(clean), to_t(clean)).item() == pytest.approx(1.0, abs=1e-5)
    assert metrics.psnr(to_t(clean), to_t(clean)).item() == float("inf")
    assert metrics.psnr(to_t(noisy), to_t(clean)).dtype == torch.float32
