"""diffrestore.operators.mri_masks: each mask's realised acceleration, its fully sampled centre, one mask per seed,
InverseBench's masks reproduced, and a user's 0/1 array checked."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from diffrestore.errors import SizeMismatchError, UsageError
from diffrestore.operators.mri_masks import (
    build_mask,
    centre_block,
    default_acs_lines,
    equispaced_lines,
    gaussian_lines,
    inversebench_lines,
    mask_from_array,
    poisson_disc,
    random_lines,
)

LINE_MASKS = {"random": random_lines, "equispaced": equispaced_lines, "gaussian": gaussian_lines}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _profile(mask: torch.Tensor) -> torch.Tensor:
    """The sampled columns of a vertical line mask, after checking it is one."""
    assert bool((mask == mask[:1]).all()), "not a mask of whole columns"
    return mask[0]


@pytest.mark.parametrize("kind", list(LINE_MASKS))
@pytest.mark.parametrize(("lines", "acceleration", "acs"), [(320, 4, 25), (320, 8, 12), (96, 4, 7), (97, 6, 7)])
def test_line_masks_keep_the_budget_and_the_centre(kind: str, lines: int, acceleration: float, acs: int) -> None:
    mask = LINE_MASKS[kind]((16, lines), acceleration, generator=gen(0))
    profile = _profile(mask.mask)
    assert int(profile.sum()) == math.floor(lines / acceleration)  # InverseBench's budget, ACS included
    assert mask.acceleration == pytest.approx(lines / math.floor(lines / acceleration))
    assert mask.acs == acs == default_acs_lines(lines, acceleration)
    centre = centre_block(lines, acs)
    assert bool(profile[centre].all()) and lines // 2 in centre.tolist()  # DC is inside the block
    assert mask.kind == kind


@pytest.mark.parametrize(("lines", "count", "first"), [(320, 25, 148), (320, 26, 147), (321, 25, 148), (9, 4, 2)])
def test_the_centre_block_is_around_dc(lines: int, count: int, first: int) -> None:
    block = centre_block(lines, count).tolist()
    assert block == list(range(first, first + count))
    below, above = lines // 2 - block[0], block[-1] - lines // 2
    assert below - above in (0, 1)  # the extra line of an even block on the negative side, as fftshift orders


@pytest.mark.parametrize("kind", list(LINE_MASKS))
def test_one_mask_per_seed(kind: str) -> None:
    make = LINE_MASKS[kind]
    assert torch.equal(make((8, 64), 4, generator=gen(3)).mask, make((8, 64), 4, generator=gen(3)).mask)
    assert not torch.equal(make((8, 64), 4, generator=gen(3)).mask, make((8, 64), 4, generator=gen(4)).mask)
    assert torch.equal(make((8, 64), 4).mask, make((8, 64), 4, generator=gen(0)).mask)  # None: seed 0


def test_horizontal_lines_and_center_fraction() -> None:
    mask = random_lines((40, 12), 4, center_fraction=0.2, orientation="horizontal", generator=gen(1))
    rows = mask.mask[:, 0]
    assert bool((mask.mask == rows[:, None]).all())
    assert int(rows.sum()) == 10 and mask.acs == 8 and bool(rows[16:24].all())


def test_equispaced_lines_are_evenly_spread() -> None:
    profile = _profile(equispaced_lines((4, 320), 4, generator=gen(2)).mask)
    outer = [i for i in profile.nonzero()[:, 0].tolist() if i not in centre_block(320, 25).tolist()]
    gaps = {b - a for a, b in itertools.pairwise(outer) if not (a < 160 < b)}
    assert gaps <= {5, 6}  # (320 - 25) / (80 - 25) = 5.36 lines apart


def test_gaussian_lines_are_denser_near_the_centre() -> None:
    hits = sum(_profile(gaussian_lines((2, 200), 5, generator=gen(s)).mask).float() for s in range(20))
    near, far = hits[80:120].mean(), torch.cat([hits[:40], hits[160:]]).mean()
    assert near > 3 * far


def test_too_high_an_acceleration_is_refused() -> None:
    with pytest.raises(UsageError, match=r"keeps 3 of 64 lines, fewer than the 5 centre"):
        random_lines((8, 64), 20, center_fraction=0.08)
    with pytest.raises(UsageError, match="acceleration must be a number >= 1"):
        random_lines((8, 64), 0.9)


@pytest.mark.parametrize(("pattern", "acceleration", "count"), [("random", 4, 80), ("random", 8, 40),
                                                                 ("equispaced", 4, 99)])
def test_inversebench_masks_are_reproduced(pattern: str, acceleration: int, count: int) -> None:
    mask = inversebench_lines((320, 320), acceleration, pattern, seed=0)
    profile = _profile(mask.mask).numpy()
    # InverseBench's get_mask, restated: ACS [(N - acs) // 2, (N + acs) // 2), the rest by numpy's legacy RNG
    acs = 25 if acceleration <= 6 else 12
    centre = np.arange((320 - acs) // 2, (320 + acs) // 2)
    outer = np.setdiff1d(np.arange(320), centre)
    np.random.seed(0)
    extra = (np.random.choice(outer, size=320 // acceleration - acs, replace=False) if pattern == "random"
             else outer[::acceleration])
    want = np.zeros(320, dtype=bool)
    want[centre] = want[extra] = True
    assert np.array_equal(profile, want) and int(profile.sum()) == count


def test_poisson_disc_meets_the_acceleration_with_a_dense_centre() -> None:
    mask = poisson_disc((64, 64), 4, generator=gen(0))
    assert abs(mask.acceleration - 4) <= 0.02 * 4
    rows, cols = mask.acs
    assert (rows, cols) == (5, 5) and bool(mask.mask[30:35, 30:35].all())
    ky, kx = torch.meshgrid(torch.arange(64) - 32, torch.arange(64) - 32, indexing="ij")
    rho = torch.sqrt((ky / 32.0) ** 2 + (kx / 32.0) ** 2)
    assert not bool(mask.mask[rho > 1].any())  # corners cropped
    inner = mask.mask[(rho > 0.15) & (rho < 0.4)].float().mean()
    assert inner > 2 * mask.mask[(rho > 0.7) & (rho <= 1)].float().mean()  # variable density
    assert torch.equal(mask.mask, poisson_disc((64, 64), 4, generator=gen(0)).mask)
    assert not torch.equal(mask.mask, poisson_disc((64, 64), 4, generator=gen(1)).mask)


def test_poisson_disc_on_a_small_grid_still_meets_the_budget() -> None:
    mask = poisson_disc((12, 10), 2.5, generator=gen(0))
    assert int(mask.mask.sum()) == 48


def test_build_mask_by_name() -> None:
    assert build_mask("equispaced", (8, 32), 4, generator=gen(0)).kind == "equispaced"
    assert build_mask("poisson", (32, 32), 3, center_fraction=0.25, generator=gen(0)).acs == (8, 8)
    with pytest.raises(UsageError, match="sampling must be one of"):
        build_mask("spiral", (8, 8), 2)


def test_a_users_mask() -> None:
    array = np.zeros((6, 8))
    array[:, ::2] = 1
    mask = mask_from_array(array, (6, 8))
    assert mask.kind == "user" and mask.acceleration == 2.0 and mask.mask.dtype == torch.bool
    assert torch.equal(mask_from_array(torch.from_numpy(array).bool()).mask, mask.mask)
    with pytest.raises(UsageError, match="only 0"):
        mask_from_array(array * 255)
    with pytest.raises(UsageError, match="2-D array"):
        mask_from_array(array[None])
    with pytest.raises(SizeMismatchError, match="mask size 8x6 differs from the k-space size 8x7"):
        mask_from_array(array, (7, 8))
