"""diffrestore.operators.blur: blur against scipy's ``ndimage.convolve`` for every boundary, the papers'
Gaussian kernel, motion blur drawn once and never redrawn, and the FFT grid size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from operator_cases import ASYM_KERNEL, randn

from diffrestore.operators import build_operator


@pytest.mark.parametrize(
    ("boundary", "scipy_mode"), [("reflect", "mirror"), ("replicate", "nearest"), ("circular", "wrap")]
)
@pytest.mark.parametrize("kernel", [ASYM_KERNEL, torch.rand(25, 31, generator=torch.Generator().manual_seed(0))])
def test_blur_matches_scipy_convolution(boundary: str, scipy_mode: str, kernel: torch.Tensor) -> None:
    from scipy import ndimage

    # The second kernel is larger than the 17 x 23 image: the extension must keep reflecting / wrapping.
    x = randn((1, 2, 17, 23), 8)
    op = build_operator("kernel_blur", (2, 17, 23), kernel=kernel, boundary=boundary)
    k = (kernel / kernel.sum()).double().numpy()
    expected = np.stack([ndimage.convolve(x[0, c].double().numpy(), k, mode=scipy_mode) for c in range(2)])
    assert np.allclose(op(x)[0].numpy(), expected, atol=1e-5)


def test_gaussian_blur_uses_the_paper_kernel_and_preserves_constants() -> None:
    op = build_operator("gaussian_blur", (1, 40, 30))
    assert tuple(op.kernel.shape) == (61, 61)
    r = torch.arange(61, dtype=torch.float64) - 30
    profile = torch.exp(-(r**2) / (2 * 3.0**2))
    expected = profile[:, None] * profile[None, :]
    assert torch.allclose(op.kernel.double(), expected / expected.sum(), atol=1e-7)
    flat = torch.full((1, 1, 40, 30), 0.3)
    assert torch.allclose(op(flat), flat, atol=1e-5)


def test_motion_blur_operator_is_drawn_once_and_never_redrawn() -> None:
    op = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(7))
    same = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(7))
    other = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(8))
    assert torch.equal(op.kernel, same.kernel) and not torch.equal(op.kernel, other.kernel)
    x = randn((1, 1, 20, 20), 17)
    torch.manual_seed(123)  # the global RNG must play no part
    first = op(x)
    torch.manual_seed(456)
    assert torch.equal(op(x), first)
    # No generator: a fixed default seed, so the run is still reproducible.
    assert torch.equal(build_operator("motion_blur", (1, 8, 8)).kernel, build_operator("motion_blur", (1, 8, 8)).kernel)


def test_blur_fft_grid_is_the_smallest_7_smooth_size() -> None:
    from diffrestore.operators.blur import _fast_length

    def smooth(m: int) -> bool:
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 700):
        m = _fast_length(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))
    assert _fast_length(316) == 320  # 316 = 4 x 79: the 61-tap blur grid of a 256 x 256 image
