"""diffrestore.operators.mri_phase: smooth random phase maps (deterministic, bounded, smooth, varied) and the
complex <-> prior-tensor mapping (99th-percentile scale, exact round trip)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffrestore.operators.mri import channels_to_complex
from diffrestore.operators.mri_phase import (
    from_prior,
    scale_from_image,
    smooth_phase,
    to_prior,
    with_smooth_phase,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_smooth_phase_is_deterministic_for_a_seed_and_differs_across_seeds():
    a = smooth_phase(40, 56, generator=_gen(3))
    b = smooth_phase(40, 56, generator=_gen(3))
    c = smooth_phase(40, 56, generator=_gen(4))
    assert a.shape == (40, 56) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


@pytest.mark.parametrize("max_radians", [0.5, math.pi])
def test_smooth_phase_peaks_at_max_radians(max_radians):
    for seed in range(5):
        phase = smooth_phase(32, 32, generator=_gen(seed), max_radians=max_radians)
        assert phase.abs().max().item() == pytest.approx(max_radians, rel=1e-5)


def test_smooth_phase_is_smooth():
    """Neighbouring pixels differ by a small fraction of the range: at most 2 pi * total cycles per pixel."""
    phase = smooth_phase(64, 64, generator=_gen(0), max_radians=math.pi)
    step = max(phase.diff(dim=0).abs().max().item(), phase.diff(dim=1).abs().max().item())
    assert step < 0.25
    # and it is not constant: a white-noise map would fail the first check, a constant one this
    assert phase.std().item() > 0.1


def test_smooth_phase_rejects_bad_arguments_and_zero_radians_gives_zero():
    with pytest.raises(ValueError):
        smooth_phase(0, 4, generator=_gen(0))
    with pytest.raises(ValueError):
        smooth_phase(4, 4, generator=_gen(0), max_radians=-1.0)
    assert torch.count_nonzero(smooth_phase(8, 8, generator=_gen(0), max_radians=0.0)) == 0


def test_with_smooth_phase_keeps_the_magnitude():
    magnitude = torch.rand(2, 24, 24, generator=_gen(1))
    z = with_smooth_phase(magnitude, _gen(2))
    assert z.dtype == torch.complex64 and z.shape == magnitude.shape
    torch.testing.assert_close(z.abs(), magnitude, rtol=1e-5, atol=1e-6)
    assert torch.angle(z[0]).std() > 0.1
    with pytest.raises(ValueError):
        with_smooth_phase(z, _gen(2))


def test_scale_is_the_99th_percentile_of_the_magnitude():
    z = torch.polar(torch.arange(1, 1001, dtype=torch.float64), torch.full((1000,), 0.7, dtype=torch.float64))
    assert scale_from_image(z) == pytest.approx(np.percentile(np.arange(1, 1001), 99.0))
    sparse = torch.zeros(1000, dtype=torch.complex64)
    sparse[3] = 5.0
    assert scale_from_image(sparse) == pytest.approx(5.0)
    assert scale_from_image(torch.zeros(10, dtype=torch.complex64)) == 1.0


def test_to_prior_and_back_is_exact_and_lands_in_the_unit_range():
    z = with_smooth_phase(torch.rand(3, 16, 20, generator=_gen(5)) * 40.0, _gen(6))
    tensor, scale = to_prior(z)
    assert tensor.shape == (3, 2, 16, 20) and tensor.dtype == torch.float32
    magnitude = channels_to_complex(tensor).abs()
    assert (magnitude <= 1.0).float().mean() >= 0.985
    torch.testing.assert_close(channels_to_complex(tensor)[:, 0] * scale, z, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(from_prior(tensor, scale), z, rtol=1e-5, atol=1e-4)
    fixed, used = to_prior(z[0], scale=2.0)
    assert used == 2.0 and fixed.shape == (1, 2, 16, 20)
    with pytest.raises(ValueError):
        to_prior(z.real)
    with pytest.raises(ValueError):
        from_prior(tensor[:, :1], scale)
