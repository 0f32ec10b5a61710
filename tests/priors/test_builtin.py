"""The shipped default prior: loads offline, is really trained (denoises held-out photos), runs at any size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffrestore.priors.base import Prior
from diffrestore.priors.builtin import (
    DEFAULT_WEIGHTS_DIR,
    apply_denoiser,
    default_prior,
    edm_precondition,
    load_model_dir,
    load_network,
)


@pytest.fixture(scope="module")
def prior():
    return default_prior()


def _held_out_crops() -> torch.Tensor:
    """Two 48x48 crops of photos the default prior never saw (astronaut, coffee; see its MODEL_CARD.md)."""
    import skimage.data

    crops = [skimage.data.astronaut()[100:148, 180:228], skimage.data.coffee()[150:198, 250:298]]
    x = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return x * 2 - 1


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    # on the [0, 1] scale: tensors span [-1, 1], i.e. a peak-to-peak of 2
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(4.0 / mse)


def test_default_prior_ships_with_card_and_small_weights(prior):
    assert isinstance(prior, Prior)
    assert prior.channels == 3 and prior.native_size is None
    assert prior.sigma_min < 0.01 and prior.sigma_max >= 80
    weights = DEFAULT_WEIGHTS_DIR / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    card = (DEFAULT_WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        assert name in card  # the held-out images are named
    config = json.loads((DEFAULT_WEIGHTS_DIR / "config.json").read_text())
    assert config["training"]["steps"] > 0
    assert "diffrestore train" in card
    # The card describes the weights that ship: its step count and reproduce command match config.json.
    steps = config["training"]["steps"]
    assert f"Steps run: **{steps}**" in card and f"--steps {steps}" in card


@pytest.mark.parametrize("sigma", [0.1, 0.2, 0.4])
def test_default_prior_denoises_held_out_photos(prior, sigma):
    x = _held_out_crops()
    gen = torch.Generator().manual_seed(int(sigma * 100))
    noisy = x + sigma * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        denoised = prior.denoise(noisy, sigma)
    c_skip = edm_precondition(torch.tensor([sigma]), prior.sigma_data)[0].item()
    # Baselines an untrained network would reach: the noisy input itself, and c_skip * x (a network whose
    # output layer is still zero). The trained prior must beat the better of the two clearly.
    baseline = max(_psnr(noisy, x), _psnr(c_skip * noisy, x))
    gain = _psnr(denoised, x) - baseline
    assert gain > 4.0, f"sigma {sigma}: PSNR gain {gain:.2f} dB over the best trivial baseline"


@pytest.mark.parametrize("shape", [(1, 3, 37, 53), (2, 3, 5, 9), (1, 3, 64, 31)])
def test_default_prior_runs_at_odd_sizes(prior, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen) * 2 - 1
    out = prior.denoise(x + 0.3 * torch.randn(shape, generator=gen), torch.full((shape[0],), 0.3))
    assert out.shape == shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_denoiser_is_differentiable_in_x(prior):
    # DPS backpropagates the data term through denoise.
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 3, 24, 40, generator=gen) * 2 - 1).requires_grad_(True)
    prior.denoise(x, 0.5).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_default_prior_in_bfloat16_returns_float32():
    prior = load_model_dir(DEFAULT_WEIGHTS_DIR, dtype=torch.bfloat16)
    x = torch.zeros(1, 3, 16, 16)
    out = prior.denoise(x, 1.0)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert prior.dtype == torch.bfloat16


def test_channels_last_on_the_cpu_changes_only_the_speed(prior):
    """The CPU prior runs its convolutions channels-last (faster there); its output and its gradient to the input
    equal those of the network in the default memory format to float rounding."""
    assert prior.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    plain = load_network(DEFAULT_WEIGHTS_DIR)
    assert not plain.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 40, 56, generator=gen) * 2 - 1
    sigma = torch.tensor([0.05, 2.0])
    outputs, grads = [], []
    for denoise in (prior.denoise, lambda x, s: apply_denoiser(plain, x, s)):
        xg = x.clone().requires_grad_(True)
        out = denoise(xg, sigma)
        outputs.append(out.detach())
        grads.append(torch.autograd.grad(out.square().sum(), xg)[0])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
