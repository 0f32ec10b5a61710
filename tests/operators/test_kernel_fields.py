"""Kernel grids for simulated spatially varying blur: drawn once from a seed, normalised, centred, and varying the
way their physics says."""

from __future__ import annotations

import math

import pytest
import torch

from diffrestore.operators.kernel_fields import defocus_field, disk_kernel, segment_kernel, shake_field


def _centroid(kernel: torch.Tensor) -> tuple[float, float]:
    k = kernel.shape[0]
    axis = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    return float((kernel.sum(1) * axis).sum()), float((kernel.sum(0) * axis).sum())


def _spread(kernel: torch.Tensor) -> float:
    """The rms distance of the kernel's mass from its centre (a streak of length L: L / sqrt(12))."""
    k = kernel.shape[0]
    axis = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    return float((kernel * (axis[:, None] ** 2 + axis[None, :] ** 2)).sum().sqrt())


def test_a_segment_is_centred_and_as_long_as_the_displacement():
    for displacement in ((0.0, 12.0), (9.0, -9.0), (0.3, 0.2)):
        kernel = segment_kernel(31, displacement)
        assert float(kernel.sum()) == pytest.approx(1.0) and float(kernel.min()) >= 0
        cy, cx = _centroid(kernel)
        assert abs(cy) < 0.05 and abs(cx) < 0.05
        length = math.hypot(*displacement)
        if length > 2:
            assert _spread(kernel) == pytest.approx(length / math.sqrt(12), rel=0.1)


def test_a_disk_has_the_area_of_its_radius():
    for radius in (2.0, 5.5, 7.0):
        kernel = disk_kernel(15, radius)
        assert float(kernel.sum()) == pytest.approx(1.0)
        support = float(kernel.max())  # uniform disk: each fully covered pixel holds 1 / area
        assert 1.0 / support == pytest.approx(math.pi * radius**2, rel=0.05)
    identity = disk_kernel(15, 0.0)
    assert float(identity[7, 7]) == 1.0


def test_shake_is_drawn_once_from_the_seed_and_varies_across_the_frame():
    a = shake_field(3, 4, (96, 128), 21, torch.Generator().manual_seed(4))
    b = shake_field(3, 4, (96, 128), 21, torch.Generator().manual_seed(4))
    c = shake_field(3, 4, (96, 128), 21, torch.Generator().manual_seed(5))
    assert a.shape == (3, 4, 21, 21) and torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.sum(dim=(2, 3)), torch.ones(3, 4))
    spreads = torch.tensor([[_spread(a[r, q]) for q in range(4)] for r in range(3)])
    assert float(spreads.max() - spreads.min()) > 0.5  # the roll makes corners streak differently
    # every streak stays inside the kernel (no mass on the outermost ring)
    assert float(a[..., 0, :].sum() + a[..., -1, :].sum() + a[..., :, 0].sum() + a[..., :, -1].sum()) == 0.0


def test_defocus_grows_monotonically_along_one_direction():
    field = defocus_field(4, 4, (128, 128), 15, torch.Generator().manual_seed(1))
    torch.testing.assert_close(field.sum(dim=(2, 3)), torch.ones(4, 4))
    spreads = torch.tensor([[_spread(field[r, q]) for q in range(4)] for r in range(4)])
    assert float(spreads.max()) > 2 * float(spreads.min())
    # a linear radius field: along any row and any column the spread changes in one direction only
    for line in (*spreads, *spreads.T):
        steps = line[1:] - line[:-1]
        assert bool((steps >= -0.05).all()) or bool((steps <= 0.05).all())
