"""benchmarks/default_prior.py: its seeding and its many-sample-limit estimate (the numbers in docs rest on them)."""

from __future__ import annotations

import math

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench_module():
    return load_benchmark("default_prior")


def test_an_image_is_measured_the_same_whichever_images_run_with_it(bench_module):
    # Runs are split over processes (--images astronaut,coffee / chelsea,rocket); the measurement noise of an
    # image must not depend on its place in the --images list, or the split runs measure other problems.
    together = bench_module.bench(["astronaut", "rocket"], ["sr4"], [], ["fast"], 0, None, {})
    alone = bench_module.bench(["rocket"], ["sr4"], [], ["fast"], 0, None, {})
    other_seed = bench_module.bench(["rocket"], ["sr4"], [], ["fast"], 5, None, {})
    rocket = [r for r in together if r["image"] == "rocket"]
    assert [r["psnr"] for r in rocket] == [r["psnr"] for r in alone]
    assert other_seed[0]["psnr"] != alone[0]["psnr"]  # the noise does come from the seed


def _rows(image: str, bias: float, variance: float, n: int) -> list[dict]:
    def psnr(mse: float) -> float:
        return -10 * math.log10(mse)

    common = dict(image=image, task="sr4", method="DAPS", preset="fast")
    return [dict(common, output="1 sample", psnr=psnr(bias + variance)),
            dict(common, output=f"mean of {n}", psnr=psnr(bias + variance / n))]


def test_many_sample_limit_recovers_the_bias_of_iid_samples(bench_module):
    rows = _rows("astronaut", bias=0.004, variance=0.006, n=4) + _rows("coffee", bias=0.001, variance=0.003, n=8)
    limit, images = bench_module.mean_limit_psnr(rows, "sr4")
    assert sorted(images) == ["astronaut", "coffee"]
    expected = (-10 * math.log10(0.004) - 10 * math.log10(0.001)) / 2
    assert limit == pytest.approx(expected, abs=1e-9)
    assert bench_module.mean_limit_psnr(rows, "denoise") is None


def test_goal_lines_compare_daps_with_the_classical_baseline_on_the_same_images(bench_module):
    rows = _rows("astronaut", bias=0.004, variance=0.006, n=4)
    rows.append(dict(image="astronaut", task="sr4", method="bicubic upsampling", preset="-", psnr=21.0))
    rows.append(dict(image="coffee", task="sr4", method="bicubic upsampling", preset="-", psnr=40.0))  # no DAPS
    text = bench_module.goal_lines(rows)
    mean4 = -10 * math.log10(0.004 + 0.006 / 4)
    assert f"margin {mean4 - 21.0:+.2f} dB" in text
    assert "goal +1.00: met" in text


def test_patch_gmm_probe_denoiser_is_the_exact_gaussian_posterior_mean_for_one_whole_image_patch():
    # benchmarks/patch_gmm_probe.py: with one patch covering the image and one (or two identical) components,
    # the patch-GMM denoiser must be the closed-form Gaussian posterior mean mu + S (S + s^2 I)^-1 (y - mu).
    import numpy as np
    import torch

    probe = load_benchmark("patch_gmm_probe")
    rng = np.random.default_rng(0)
    d, sigma = 3 * 4 * 4, 0.3
    a = rng.normal(size=(d, d)) / d**0.5
    cov, mu = a @ a.T + 0.01 * np.eye(d), rng.normal(scale=0.2, size=d)
    y = torch.from_numpy(rng.normal(size=(1, 3, 4, 4))).float()
    exact = mu + cov @ np.linalg.solve(cov + sigma**2 * np.eye(d), y.double().numpy().reshape(-1) - mu)
    for k in (1, 2):
        prior = probe.gmm_prior(np.stack([mu] * k), np.stack([cov] * k), np.full(k, 1.0 / k), patch=4)
        out = prior.denoise(y, sigma)
        np.testing.assert_allclose(out.double().numpy().reshape(-1), exact, atol=1e-5)
