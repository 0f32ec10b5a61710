"""Compressed-sensing MRI with the shipped ``mri-phantom`` prior, at the solver level (MultiCoilMRI directly):
DAPS (fast preset) must beat every classical reconstruction (zero-filled, the exact pseudo-inverse, SENSE, L1-wavelet
and TV compressed sensing, each image's best) on held-out phantoms by margins measured first, and the same check must
fail with the same network at random initialisation (so it tests the training, not DAPS's data consistency alone).

Held-out phantoms 0-3 (benchmarks/mri_phantoms.py, seeds never used in training) at 64 px, InverseBench's random
line masks (mask seed 0), noise 1 % of the 99th percentile of |x|, the prior's scale estimated from the
measurement (benchmarks/mri_quality.py); PSNR of the magnitude as InverseBench computes it. Measured (2026-12-07),
DAPS over each image's best classical result, mean of the 4 images: 4x one coil +1.54 dB (per image -0.15, +3.48,
+1.17, +1.65), 8x one coil +0.94 (+3.38, +0.49, +0.99, -1.09), 4x 8 coils +4.03 (+5.16, +4.19, +2.52, +4.25), 8x
8 coils +1.50 (+1.09, +2.45, +1.10, +1.37). With one coil at 8x the prior and TV compressed sensing are close on
single images: the margins asserted are the means'. The network at random initialisation loses by 7 dB and more.
"""

from __future__ import annotations

import pytest
import torch
from benchmark_scripts import load_benchmark

from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet
from diffrestore.priors.load import load_prior

#: (acceleration, coils) -> dB DAPS must gain, on the mean of the images, over each image's best classical result
MARGINS = {(4, 1): 0.8, (8, 1): 0.3, (4, 8): 2.5, (8, 8): 0.8}  # measured 1.54, 0.94, 4.03, 1.50
IMAGES = 4
SIZE = 64


@pytest.fixture(scope="module")
def cases():
    """Per setting: the held-out problems with each image's best classical PSNR (computed once for both tests)."""
    torch.set_num_threads(1)
    quality = load_benchmark("mri_quality")
    images = load_benchmark("mri_phantoms").held_out(IMAGES, SIZE)
    out = {}
    for acceleration, coils in MARGINS:
        rows = []
        for index, image in enumerate(images):
            problem, scale, target, _ = quality.case(image, acceleration, coils, seed=index)
            best = max(quality.metrics(guess, target)[0] for guess in quality.baselines(problem, scale).values())
            rows.append((index, problem, scale, target, best))
        out[acceleration, coils] = rows
    return quality, out


def _gains(prior, cases, settings) -> dict[tuple[int, int], float]:
    quality, rows = cases
    gains = {}
    for setting in settings:
        per_image = [quality.metrics(quality.solve(prior, problem, scale, "daps", "fast", seed=index), target)[0] - best
                     for index, problem, scale, target, best in rows[setting]]
        gains[setting] = sum(per_image) / len(per_image)
    return gains


def test_daps_with_the_shipped_prior_beats_the_classical_reconstructions(cases) -> None:
    gains = _gains(load_prior("mri-phantom"), cases, MARGINS)
    for setting, margin in MARGINS.items():
        assert gains[setting] >= margin, (setting, gains)


def test_the_same_check_fails_with_the_network_at_random_init(cases) -> None:
    trained = load_prior("mri-phantom")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = BuiltinPrior(DenoiserUNet(trained.config), name="random-init")
    settings = ((4, 1), (4, 8))  # the untrained network fails by far; two settings show it
    gains = _gains(untrained, cases, settings)
    assert all(gains[s] < MARGINS[s] for s in settings), gains
    assert max(gains.values()) < 0.0, gains
