"""diffrestore.priors.vp: the one DDPM -> VE denoiser conversion, against hand computations and a 'perfect'
network on Gaussian data, for pixel, latent and conditioned networks; nearest and interpolated timesteps."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffrestore.priors.analytic import GaussianPrior
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior


def tiny_unet(channels: int = 1, out_channels: int | None = None, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=out_channels or channels,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )


def test_epsilon_conversion_matches_hand_computation_at_a_table_timestep() -> None:
    unet, scheduler = tiny_unet(), DDPMScheduler(num_train_timesteps=1000)
    prior = DiffusersPixelPrior(unet, scheduler, native_size=None)
    t = 437
    alpha_bar = float(scheduler.alphas_cumprod[t])
    sigma = ((1 - alpha_bar) / alpha_bar) ** 0.5
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x_t = x * alpha_bar**0.5  # the DDPM state whose VE image is x
        eps = unet(x_t, torch.full((2,), float(t))).sample
        expected = (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5  # DDPM's own x0 formula
        got = prior.denoise(x, sigma)
    assert prior.timestep(torch.tensor([sigma])).item() == pytest.approx(t, abs=1e-3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_v_prediction_and_learned_variance_conversion() -> None:
    unet = tiny_unet(channels=1, out_channels=2)
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    prior = DiffusersPixelPrior(unet, scheduler, native_size=None)
    assert prior.learned_variance
    t = 800
    alpha_bar = float(scheduler.alphas_cumprod[t])
    sigma = ((1 - alpha_bar) / alpha_bar) ** 0.5
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x_t = x * alpha_bar**0.5
        v = unet(x_t, torch.tensor([float(t)])).sample[:, :1]
        expected = alpha_bar**0.5 * x_t - (1 - alpha_bar) ** 0.5 * v
        got = prior.denoise(x, sigma)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


class PerfectEpsNetwork(torch.nn.Module):
    """The exact eps-predictor E[eps | x_t] for data ~ N(mu, Sigma), written in DDPM terms from the scheduler table."""

    def __init__(self, mu: torch.Tensor, cov: torch.Tensor, alphas_cumprod: torch.Tensor, shape) -> None:
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(
            in_channels=shape[0], out_channels=shape[0], block_out_channels=(4,), sample_size=None
        )
        self.mu, self.cov, self.ab, self.shape = mu.double(), cov.double(), alphas_cumprod.double(), shape
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t, return_dict=True):
        out = []
        for xi, ti in zip(x_t.double().flatten(1), t, strict=True):
            ab = self.ab[round(float(ti))]
            cov_t = ab * self.cov + (1 - ab) * torch.eye(self.cov.shape[0], dtype=torch.float64)
            out.append((1 - ab).sqrt() * torch.linalg.solve(cov_t, xi - ab.sqrt() * self.mu))
        return (torch.stack(out).reshape(-1, *self.shape).float(),)


def test_perfect_eps_network_gives_the_exact_gaussian_denoiser() -> None:
    shape = (1, 4, 4)
    gauss = GaussianPrior.stationary(shape, length_scale=1.5, std=0.6, mean=0.1, jitter=0.05)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    net = PerfectEpsNetwork(gauss.mean, gauss.covariance, scheduler.alphas_cumprod, shape)
    prior = DiffusersPixelPrior(net, scheduler, native_size=None, timestep="nearest")
    ab = scheduler.alphas_cumprod.double()
    sigmas = ((1 - ab) / ab).sqrt()[[0, 100, 400, 700, 999]].float()
    x0 = gauss.sample(5, torch.Generator().manual_seed(3))
    x = x0 + sigmas[:, None, None, None] * torch.randn(5, *shape, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(prior.denoise(x, sigmas), gauss.denoise(x, sigmas), atol=2e-4, rtol=1e-3)


class PerfectConditionalEps(PerfectEpsNetwork):
    """The same exact eps-predictor with a text-conditioned UNet's call (the embeddings shift nothing)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.config.cross_attention_dim = 4

    def forward(self, x_t, t, encoder_hidden_states=None, return_dict=True):
        assert encoder_hidden_states is not None and encoder_hidden_states.shape[0] == x_t.shape[0]
        return super().forward(x_t, t, return_dict)


class _NoAutoencoder(torch.nn.Module):
    def __init__(self) -> None:
        from types import SimpleNamespace

        super().__init__()
        self.config = SimpleNamespace(in_channels=3, block_out_channels=(4, 4))
        self.dummy = torch.nn.Parameter(torch.zeros(1))


def test_one_vp_conversion_serves_latent_and_conditioned_networks() -> None:
    from diffrestore.priors.base import Conditioning
    from diffrestore.priors.latent import DiffusersLatentPrior

    shape = (2, 4, 4)
    gauss = GaussianPrior.stationary(shape, length_scale=1.5, std=0.6, mean=0.1, jitter=0.05)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012)
    net = PerfectConditionalEps(gauss.mean, gauss.covariance, scheduler.alphas_cumprod, shape)
    prior = DiffusersLatentPrior(net, _NoAutoencoder(), scheduler, latent_scale=0.18215, timestep="nearest")
    ab = scheduler.alphas_cumprod.double()
    sigmas = ((1 - ab) / ab).sqrt()[[0, 250, 600, 999]].float()
    z0 = gauss.sample(4, torch.Generator().manual_seed(5))
    z = z0 + sigmas[:, None, None, None] * torch.randn(4, *shape, generator=torch.Generator().manual_seed(6))
    text = torch.randn(1, 3, 4)
    plain = prior.denoise(z, sigmas, Conditioning(embeddings=text))
    torch.testing.assert_close(plain, gauss.denoise(z, sigmas), atol=2e-4, rtol=1e-3)
    # guidance between two conditions the network ignores changes nothing: out_neg + g (out - out_neg) = out
    guided = prior.denoise(z, sigmas, Conditioning(embeddings=text, negative=torch.zeros(1, 3, 4), guidance=7.5))
    torch.testing.assert_close(guided, plain, atol=1e-4, rtol=1e-4)
    assert prior.sigma_max == pytest.approx(float(((1 - ab[-1]) / ab[-1]).sqrt()), rel=1e-5)


def test_nearest_and_interpolated_timesteps() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    nearest = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None, timestep="nearest")
    interp = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None)
    ab = scheduler.alphas_cumprod.double()
    s10, s11 = ((1 - ab[10:12]) / ab[10:12]).sqrt().tolist()
    between = torch.tensor([(s10 * s11) ** 0.5])  # geometric middle: halfway in log sigma
    assert interp.timestep(between).item() == pytest.approx(10.5, abs=1e-3)
    assert nearest.timestep(between).item() in (10.0, 11.0)
    assert interp.sigma_min == pytest.approx(float(((1 - ab[0]) / ab[0]).sqrt()))
    assert interp.sigma_max == pytest.approx(float(((1 - ab[-1]) / ab[-1]).sqrt()))
    assert interp.timestep(torch.tensor([1e4])).item() == pytest.approx(999)
