"""Fixed-size priors take any image size: overlapping native-size windows blended at every denoiser call
(diffrestore/priors/tiled.py)."""

from __future__ import annotations

import pytest
import torch

from diffrestore.priors.analytic import GaussianPrior
from diffrestore.priors.base import Prior
from diffrestore.priors.tiled import TiledPrior, grid_offset, window_weights


class FixedSizeConv(Prior):
    """A small convolutional denoiser that works at one size only: a shrinkage towards a 7 x 7 local mean with
    zero padding, so its output near a window's border is darker than the same pixels inside a larger image, a
    bias that depends on the position inside the window (a fixed-size UNet learns where its borders are), and a
    small random network."""

    def __init__(self, native: tuple[int, int] = (32, 32)) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.Tanh(),
                                       torch.nn.Conv2d(8, 3, 5, padding=2))
        self.sigma_min, self.sigma_max, self.channels = 0.01, 80.0, 3
        self.native_size = native
        self.calls: list[tuple[int, ...]] = []

    def denoise(self, x, sigma):
        assert tuple(x.shape[-2:]) == self.native_size, x.shape
        self.calls.append(tuple(x.shape))
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
        local = torch.nn.functional.avg_pool2d(x, 7, stride=1, padding=3, count_include_pad=True)
        with torch.no_grad():
            ramp = torch.linspace(-1, 1, x.shape[-1])
            return (x + s**2 * local) / (1 + s**2) + 0.03 * ramp + 0.05 * s**2 / (1 + s**2) * self.net(x)


def test_any_size_goes_through_and_the_native_size_is_the_prior_itself():
    prior = FixedSizeConv()
    tiled = TiledPrior(prior)
    x = torch.randn(2, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    assert tiled.denoise(x, 1.0).shape == x.shape
    assert all(shape[-2:] == (32, 32) for shape in prior.calls)
    small = torch.randn(1, 3, 20, 27)
    assert tiled.denoise(small, 0.5).shape == small.shape  # reflect-padded up to the window, cropped back
    native = torch.randn(2, 3, 32, 32)
    assert torch.equal(tiled.denoise(native, 0.7), prior.denoise(native, 0.7))


def test_tiles_batch_as_asked_and_an_image_does_not_depend_on_its_batch():
    prior = FixedSizeConv()
    x = torch.randn(3, 3, 48, 80, generator=torch.Generator().manual_seed(2))
    one = TiledPrior(prior, tile_batch=1)
    prior.calls.clear()
    a = one.denoise(x, 2.0)
    assert all(shape[0] == 3 for shape in prior.calls)  # one window (of every image) per call
    four = TiledPrior(prior, tile_batch=4)
    prior.calls.clear()
    b = four.denoise(x, 2.0)
    assert max(shape[0] for shape in prior.calls) == 12
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.equal(one.denoise(x[1:2], 2.0), one.denoise(x, 2.0)[1:2])


def test_weights_and_offsets():
    w = window_weights(32, 8)
    assert w.shape == (32,) and torch.all(w[8:24] == 1) and w.min() > 0
    # overlapping ramps sum to one: the blend is a partition of unity where two windows meet
    assert torch.allclose(w[-8:] + w[:8], torch.ones(8), atol=1e-6)
    assert grid_offset(1.5, (24, 24)) == grid_offset(1.5, (24, 24))
    offsets = {grid_offset(s, (24, 24)) for s in torch.linspace(0.1, 10, 50).tolist()}
    assert len(offsets) > 40  # the grid moves between calls


def _seam_ratio(error: torch.Tensor) -> float:
    """The largest column mean of |horizontal gradient| of an error image over the median column's: a seam
    anywhere (wherever the shifted grid put it) stands out; noise alone keeps it near 1."""
    grad = (error[..., 1:] - error[..., :-1]).abs().mean(dim=(0, 1, 2))
    return float(grad.max() / grad.median())


@pytest.mark.parametrize(("overlap", "shift", "seamless"), [(8, True, True), (0, False, False)])
def test_no_seam_in_a_restored_image(overlap, shift, seamless):
    """A restored 80 x 48 image (MMSE denoising: the posterior mean in one call) with a 32 x 32 prior whose error
    depends on the position in its window: no column's mean gradient of the error exceeds the typical column's
    by 10 % when windows overlap (the default quarter) and move; without overlap or shift the tile edges show."""
    from diffrestore.operators import GaussianNoise, build_operator, simulate
    from diffrestore.solvers import get_solver

    prior = FixedSizeConv()
    tiled = TiledPrior(prior, overlap=overlap)
    tiled.shift = shift
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 80), indexing="ij")
    clean = torch.stack([torch.sin(3 * xx + c) * torch.cos(2 * yy) for c in range(3)])[None] * 0.6
    op = build_operator("identity", (3, 48, 80))
    problem = simulate(op, GaussianNoise(0.02), clean.expand(8, -1, -1, -1).contiguous(),
                       torch.Generator().manual_seed(3))
    out = get_solver("mmse", "fast").run(tiled, problem, generator=[torch.Generator().manual_seed(i) for i in range(8)])
    ratio = _seam_ratio(out - clean)
    assert (ratio < 1.10) == seamless, ratio


def test_tiled_exact_gaussian_denoiser_matches_the_full_size_one():
    """A stationary Gaussian prior has an exact denoiser at any size: the tiled 16 x 16 one on a 24 x 40 image is
    within a measured bound of the exact full-size denoiser (they differ only through the correlations a window
    cannot see, within a length scale of its border)."""
    full = GaussianPrior.stationary((1, 24, 40), length_scale=1.5, std=0.5)
    native = GaussianPrior.stationary((1, 16, 16), length_scale=1.5, std=0.5)
    tiled = TiledPrior(native)
    x = full.sample(8, torch.Generator().manual_seed(4))
    errors = {}
    for sigma in (0.1, 0.5, 2.0):
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
        exact = full.denoise(noisy, sigma)
        errors[sigma] = float((tiled.denoise(noisy, sigma) - exact).square().mean().sqrt()
                              / (exact - x).square().mean().sqrt())
    # measured (default overlap 4 = a quarter of the window, shifting grid): 0.053 / 0.025 / 0.020 of the exact
    # denoiser's own error; overlap 8: 0.024; overlap 0 without the shift: 0.20
    assert max(errors.values()) < 0.08, errors


@pytest.mark.parametrize("model", ["tiny-latent-vq", "tiny-latent-kl"])
def test_latent_priors_tile_in_latent_space(model, tmp_path, capsys):
    """A latent model with a 32 px native size on a 72 x 40 image: windows of the native latent size, the
    autoencoder's own tiling (diffusers) where it has one; the output keeps the image's size."""
    import json

    from cli_support import run_main, write_image
    from PIL import Image

    image = write_image(tmp_path / "wide.png", size=(72, 40))
    result = run_main(["denoise", image, "--model", model, "--steps", "2", "--device", "cpu", "--json"], capsys)
    assert result.code == 0, result.err
    assert "the model works at 16x16 latent cells" in result.err
    assert json.loads(result.out)["items"][0]["tiles"] > 1
    assert Image.open(tmp_path / "wide_denoise.png").size == (72, 40)
