"""diffrestore.operators.kernels: kernel checks keep usage errors for arrays, and the motion-blur kernel is
drawn from its seed only."""

from __future__ import annotations

import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.operators import motion_blur_kernel
from diffrestore.operators.kernels import normalise_kernel


def test_normalise_kernel_keeps_usage_errors_for_arrays_and_float32_results() -> None:
    with pytest.raises(UsageError, match="blur kernel has 1 negative weight"):
        normalise_kernel(torch.tensor([[1.0, -0.1], [1.0, 1.0]]), "blur kernel")
    with pytest.raises(UsageError, match="complex values"):
        normalise_kernel(torch.ones(2, 2, dtype=torch.complex64), "blur kernel")
    kernel = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    out = normalise_kernel(kernel, "blur kernel")
    # Ordinary float32 kernels are normalised exactly as before the float64 checks existed (bitwise).
    assert out.dtype == torch.float32 and torch.equal(out, kernel / float(kernel.sum()))


# ---------------------------------------------------------------------------------------------------------------
# Motion blur: drawn once, reproducible
# ---------------------------------------------------------------------------------------------------------------
def test_motion_kernel_follows_the_seed_only() -> None:
    a = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(3))
    b = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(3))
    c = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (61, 61) and (a >= 0).all() and abs(float(a.sum()) - 1) < 1e-5
    # Centred on its centre of mass, so blurring does not shift the image.
    grid = torch.arange(61, dtype=torch.float32)
    assert abs(float((a.sum(1) * grid).sum()) - 30) < 0.5 and abs(float((a.sum(0) * grid).sum()) - 30) < 0.5
    # A real streak, not a dot: it spreads over many pixels.
    assert int((a > 1e-4).sum()) > 20


def test_motion_kernel_with_zero_intensity_is_a_straight_streak() -> None:
    kernel = motion_blur_kernel(61, 0.0, torch.Generator().manual_seed(5)).double()
    rows, cols = torch.meshgrid(torch.arange(61.0), torch.arange(61.0), indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], 1).double()
    weights = kernel.flatten()
    centred = points - (weights[:, None] * points).sum(0)
    covariance = (weights[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    small, large = torch.linalg.eigvalsh(covariance)
    assert large > 20 and small < 0.5  # long along one axis, about a pixel wide across it
