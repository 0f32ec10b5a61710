"""Priors: the DDPM -> VE denoiser conversion (against hand computations and a 'perfect' network on Gaussian
data), the analytic denoisers against independent float64 formulas, and the dtype / size guards."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffrestore.errors import DeviceError, UsageError
from diffrestore.priors.analytic import GaussianMixturePrior, GaussianPrior, gaussian_posterior
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


def test_fp16_on_cpu_is_refused_and_bf16_runs() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        DiffusersPixelPrior(tiny_unet(), scheduler, dtype=torch.float16)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    ref = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None).denoise(x, 2.0)
    try:
        prior = DiffusersPixelPrior(tiny_unet(), scheduler, dtype=torch.bfloat16, native_size=None)
        out = prior.denoise(x, 2.0)
    except RuntimeError as exc:  # pragma: no cover - old torch builds without CPU bf16 kernels
        pytest.skip(f"bf16 not supported by this torch on the CPU: {exc}")
    assert out.dtype == torch.float32 and prior.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05  # same network, bf16 rounding only


def test_size_and_channel_guards_explain_themselves() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    fixed = DiffusersPixelPrior(tiny_unet(), scheduler)  # native size from the config: 8 x 8
    fixed.check_image_shape((1, 8, 8))
    with pytest.raises(UsageError, match=r"native size 8x8 but the image is 16x12.*tiling"):
        fixed.check_image_shape((1, 12, 16))
    with pytest.raises(UsageError, match="models 1-channel images but the image has 3"):
        fixed.check_image_shape((3, 8, 8))
    free = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None)
    free.check_image_shape((1, 12, 16))
    with pytest.raises(UsageError, match="divisible by 2"):
        free.check_image_shape((1, 9, 8))


def test_gaussian_denoiser_matches_the_float64_formula() -> None:
    prior = GaussianPrior.stationary((2, 4, 4), length_scale=2.0, std=0.5, mean=-0.2)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([0.05, 0.7, 20.0])
    cov, mu = prior.covariance.double(), prior.mean.double()
    expected = []
    for xi, s in zip(x.double().flatten(1), sigma.double(), strict=True):
        expected.append(mu + cov @ torch.linalg.solve(cov + s**2 * torch.eye(32, dtype=torch.float64), xi - mu))
    torch.testing.assert_close(prior.denoise(x, sigma).double().flatten(1), torch.stack(expected), atol=1e-5, rtol=1e-4)


def test_gaussian_samples_have_the_prior_covariance() -> None:
    prior = GaussianPrior.stationary((1, 3, 3), length_scale=1.0, std=0.5)
    s = prior.sample(20000, torch.Generator().manual_seed(7)).flatten(1).double()
    torch.testing.assert_close(torch.cov(s.T), prior.covariance.double(), atol=0.01, rtol=0.0)


def test_mixture_denoiser_matches_bayes_rule_in_float64() -> None:
    g = torch.Generator().manual_seed(8)
    k, dim = 3, 9
    means = torch.randn(k, 1, 3, 3, generator=g)
    factors = 0.3 * torch.randn(k, dim, dim, generator=g)
    covs = factors @ factors.transpose(1, 2) + 0.01 * torch.eye(dim)
    weights = torch.tensor([0.2, 0.5, 0.3])
    prior = GaussianMixturePrior(weights, means, covs)
    x = torch.randn(4, 1, 3, 3, generator=g)
    sigma = 0.4
    expected = []
    for xi in x.double().flatten(1):
        logs, posts = [], []
        for j in range(k):
            mu, cov = means[j].double().flatten(), covs[j].double()
            marg = torch.distributions.MultivariateNormal(mu, cov + sigma**2 * torch.eye(dim, dtype=torch.float64))
            logs.append(weights[j].double().log() + marg.log_prob(xi))
            posts.append(mu + cov @ torch.linalg.solve(cov + sigma**2 * torch.eye(dim, dtype=torch.float64), xi - mu))
        w = torch.softmax(torch.stack(logs), 0)
        expected.append((w[:, None] * torch.stack(posts)).sum(0))
    torch.testing.assert_close(prior.denoise(x, sigma).double().flatten(1), torch.stack(expected), atol=1e-4, rtol=1e-3)


def test_gaussian_posterior_matches_the_information_form() -> None:
    from diffrestore.operators import build_operator

    prior = GaussianPrior.stationary((1, 4, 4), length_scale=1.5, std=0.5, jitter=0.05)
    op = build_operator("inpaint", (1, 4, 4), generator=torch.Generator().manual_seed(9), fraction=0.5)
    y = op(prior.sample(2, torch.Generator().manual_seed(10)))
    mean, cov = gaussian_posterior(prior, op, y, noise_std=0.1)
    a = torch.diag(op.known.flatten().double())  # inpainting as a matrix, written by hand
    prec = torch.linalg.inv(prior.covariance.double()) + a.T @ a / 0.01
    cov_ref = torch.linalg.inv(prec)
    mean_ref = (cov_ref @ (a.T @ y.double().flatten(1).T / 0.01)).T  # prior mean is 0
    torch.testing.assert_close(cov, cov_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mean.flatten(1), mean_ref, atol=1e-6, rtol=1e-5)
