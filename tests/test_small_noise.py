"""The solvers at the smallest noise --noise-sigma auto can give: the 8-bit floor, sigma 1/255 on [0, 1]
(tau = 2/255 in tensor units). They must neither diverge (non-finite or runaway samples) nor stall (DAPS: a misfit
far above the noise). A 32 x 32 crop of a held-out photo, the measurement rounded to 8 bits as a file holds it,
fewer steps than the presets; benchmarks/small_noise.py runs the full table (64 x 64, preset steps)."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark

SIGMA = 1 / 255


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("small_noise")


@pytest.fixture(scope="module")
def prior():
    from diffrestore.priors.builtin import default_prior

    return default_prior()


@pytest.fixture(scope="module")
def crop(bench):
    # part of the astronaut's face and suit: edges, a smooth cheek and texture in 32 x 32
    return bench.to_tensor(bench.crop(bench.photo("astronaut"), 32, 110, 200))


@pytest.mark.parametrize("task", ["inpaint_box", "inpaint_random", "sr4", "gaussian_blur"])
def test_daps_fits_the_measurement_to_the_noise_at_the_8_bit_floor(bench, prior, crop, task):
    # Measured at 20 steps: 1.05 / 1.11 / 2.24 / 1.23 x the noise std (box, random, sr x4, blur); a posterior
    # sample's misfit is about sqrt(2) x where the data pins A x down (its own spread plus y's noise). With the
    # old assumed noise (tau = 0.05 for a y of noise 2/255) the same runs miss by 4.7 / 6.4 / 6.2 / 1.8 x.
    result = bench.run_case(prior, "daps", task, crop, SIGMA, steps=20)
    assert result["finite"]
    assert result["residual"] <= 3 * result["noise_std"], result


@pytest.mark.parametrize("solver", ["dps", "mcg"])
@pytest.mark.parametrize("task", ["inpaint_box", "inpaint_random", "sr4", "gaussian_blur"])
def test_dps_and_mcg_stay_finite_and_bounded_at_the_8_bit_floor(bench, prior, crop, solver, task):
    # Their gradient step does not depend on the noise level, so their misfit is whatever the guidance scale
    # gives (benchmarks/small_noise.py: 1.4-12x the noise std at 100 steps); here: no NaN, no runaway.
    result = bench.run_case(prior, solver, task, crop, SIGMA, steps=30)
    assert result["finite"]
    assert result["residual"] < 0.5, result  # a quarter of the [-1, 1] range
