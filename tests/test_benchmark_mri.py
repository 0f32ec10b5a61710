"""benchmarks/mri_phantoms.py and benchmarks/mri_quality.py: the phantoms are seeded, held-out ones never among
the training seeds, complex with a smooth phase; the benchmark's metric is InverseBench's and its scale comes from
the measurement (the MRI numbers in docs rest on these)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def phantoms():
    return load_benchmark("mri_phantoms")


@pytest.fixture(scope="module")
def quality():
    return load_benchmark("mri_quality")


def test_phantoms_are_seeded_complex_and_both_families_appear(phantoms):
    a, b = phantoms.phantom(3, 32), phantoms.phantom(3, 32)
    assert a.dtype == np.complex64 and a.shape == (32, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, phantoms.phantom(4, 32))
    magnitude = np.abs(a)
    assert 0.3 < magnitude.max() < 2.0 and magnitude.min() >= 0
    assert np.angle(a[magnitude > 0.2]).std() > 0.05  # a phase, not a real image
    head, knee = phantoms.phantom(0, 32, "head"), phantoms.phantom(0, 32, "knee")
    assert not np.allclose(np.abs(head), np.abs(knee))


def test_held_out_phantoms_use_seeds_training_never_reaches(phantoms):
    held = phantoms.held_out(2, 16)
    np.testing.assert_array_equal(held[0], phantoms.phantom(phantoms.HELD_OUT_SEED, 16))
    assert phantoms.HELD_OUT_SEED > 100_000  # exports of training images stay far below
    training = phantoms.train_set(3, 16)
    assert all(not np.array_equal(h, t) for h in held for t in training)


def test_the_metric_is_on_the_magnitude_with_the_targets_range_and_clipping(quality):
    target = torch.polar(torch.rand(16, 16, generator=torch.Generator().manual_seed(0)), torch.full((16, 16), 0.5))
    assert quality.metrics(target * 1j, target)[0] == float("inf")  # a global phase changes nothing
    brighter = quality.metrics(target * 3, target)
    clipped = quality.metrics(target.abs().clamp(max=float(target.abs().max())) * 3, target)
    assert brighter == clipped


def test_the_scale_comes_from_the_measurement_and_the_problem_is_in_prior_units(quality, phantoms):
    image = phantoms.phantom(0, 32)
    problem, scale, target, op = quality.case(image, 4, 1, noise=1e-7)
    # (nearly) noiseless single coil: the pseudo-inverse is the zero-filled image, and its 99th percentile is the scale
    zero_filled = quality.baselines(problem, scale)["zero-filled"]
    assert scale == pytest.approx(float(np.percentile(zero_filled.abs().numpy(), 99)), rel=1e-4)
    assert scale != pytest.approx(float(np.percentile(np.abs(image), 99)), rel=1e-3)  # not the target's
    torch.testing.assert_close(problem.y * scale, op(torch.view_as_real(target).movedim(-1, 0)[None]))
