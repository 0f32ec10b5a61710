"""LatentDAPS against closed forms (docs/solvers.md, the closed-form tests): Gaussian latent, affine decoder, linear
operator, the exact eps network run through the real prior and solver code (tests/latent_cases.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from latent_cases import (
    AffineDecoder,
    exact_posterior,
    gaussian_latent_prior,
    gaussian_target,
    problem_for,
    random_case,
)

from diffrestore.priors.base import Prior
from diffrestore.solvers import get_solver, inner
from diffrestore.solvers.daps import ode_x0

S = 1.0  # prior std of z


def _chains(n: int, seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_x0_hat_is_the_closed_form_euler_recursion(steps):
    """The official all-Euler grid sigma -> 0.001 with the exact denoiser s^2 z / (s^2 + g^2): each step multiplies
    z by 1 + (g_next - g) g / (s^2 + g^2)."""
    from diffrestore.solvers.base import poly_sigmas

    weight, bias, _ = random_case()
    prior = gaussian_latent_prior(3, S, AffineDecoder(weight, bias))
    z = 5.0 * torch.randn(8, 3, 1, 1, generator=_chains(8))
    sigma = 4.0
    floor = max(0.001, prior.sigma_min)
    got, first = ode_x0(prior, z, sigma, steps, floor, "euler")
    expected = z.double()
    grid = poly_sigmas(steps + 1, sigma, floor).double().tolist()
    for g, g_next in itertools.pairwise(grid):
        expected = expected * (1 + (g_next - g) * g / (S**2 + g**2))
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(first.double(), S**2 * z.double() / (S**2 + sigma**2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler", ["langevin", "hmc"])
def test_one_mcmc_stage_reaches_its_gaussian_target(sampler):
    """At a fixed sigma the inner chain, with the data gradient through the decoder, samples
    N(z0_hat, r^2 I) x exp(-||y - A Dec(z)||^2 / (2 tau^2)): mean and covariance in closed form. A data term
    weighted twice (the official code's convention) misses the covariance by far more than the tolerance."""
    weight, bias, matrix = random_case(1)
    prior = gaussian_latent_prior(3, S, AffineDecoder(weight, bias))
    n, tau, r = 8000, 0.3, 0.5
    y = torch.tensor([0.4, -0.2, 0.7, 0.1]).expand(n, 4)
    problem = problem_for(matrix, y, tau)
    solver = get_solver("latent-daps", "paper", grad_clamp=math.inf)
    term = solver._data_term(prior, problem, problem.y, (1, 1), tau)
    z0_hat = torch.tensor([0.5, -1.0, 0.2]).view(1, 3, 1, 1).expand(n, 3, 1, 1)
    gen = _chains(n, 3)
    with torch.no_grad():
        if sampler == "langevin":
            z = inner.langevin(problem, problem.y, z0_hat, r, tau, 2e-3, 3000, gen, data_term=term)
        else:
            z = inner.hmc(problem, problem.y, z0_hat, r, tau, 2e-3, 1500, 0.9, gen, data_term=term)
    G = matrix @ weight
    mean, cov = gaussian_target(z0_hat[0].flatten(), r, G, y[0] - matrix @ bias, tau)
    z = z.flatten(1).double()
    emp_cov = torch.cov(z.T)
    assert (z.mean(0) - mean).abs().max() < 0.01
    assert (emp_cov - cov).abs().max() < 0.006
    _, doubled = gaussian_target(z0_hat[0].flatten(), r, G, y[0] - matrix @ bias, tau / 2**0.5)
    assert (doubled - cov).abs().max() > 0.02  # the tolerance can tell the two conventions apart


def _annealing_samples(r_t: str, n: int = 4000):
    """Posterior samples of a problem where the prior matters (2 measurements of a 3-d latent)."""
    weight, bias, matrix = random_case(2, m=2)
    sy = 0.3
    prior = gaussian_latent_prior(3, S, AffineDecoder(weight, bias))
    truth = torch.tensor([0.8, -0.5, 0.3])
    y = (matrix @ (weight @ truth + bias)).expand(n, 2)
    problem = problem_for(matrix, y, sy)
    # exact conditional: x0_hat = D(z_t, sigma) (one denoiser step to 0), r_t = the true std of z0 | z_t
    # (r_t="jacobian": for a Gaussian prior sigma sqrt(tr J / d) is exactly s sigma / sqrt(s^2 + sigma^2))
    solver = get_solver("latent-daps", "paper", steps=30, ode_steps=1, ode_grid="denoise", sigma_max=10.0,
                        sigma_min=0.3, r_t=r_t, inner="langevin", langevin_steps=400, lr=0.02, lr_min_ratio=0.1,
                        tau=sy, lr_reference_tau=0, grad_clamp=math.inf)
    z = solver.run(prior, problem, generator=_chains(n, 5))  # images = Dec(z)
    G = matrix @ weight
    mean, cov = exact_posterior(S, G, y[0] - matrix @ bias, sy)
    # the image is affine in z: compare in image space
    x = z.flatten(1).double()
    return x, weight.double() @ mean + bias.double(), weight.double() @ cov @ weight.double().T


def test_annealing_with_the_exact_conditional_recovers_the_posterior():
    x, mean, cov = _annealing_samples("jacobian")
    assert (x.mean(0) - mean).abs().max() < 0.03  # 4000 chains: standard errors ~0.01 (mean), ~0.007 (cov)
    assert (torch.cov(x.T) - cov).abs().max() < 0.035


def test_the_papers_r_t_is_measurably_not_exact():
    """With r_t = sigma (the paper's approximation) the same run is off by more than the exact run's tolerance:
    the closed-form test can tell the two apart."""
    x, _, cov = _annealing_samples("sigma")
    assert (torch.cov(x.T) - cov).abs().max() > 0.06  # measured 0.10: r_t = sigma gets the covariance wrong


class PixelView(Prior):
    """The latent prior's denoiser seen as a pixel prior (for the identity-decoder comparison)."""

    def __init__(self, latent) -> None:
        self.latent = latent
        self.sigma_min, self.sigma_max = latent.sigma_min, latent.sigma_max
        self.channels = latent.latent_channels
        self.clip_range = None

    def denoise(self, x, sigma):
        return self.latent.denoise(x, sigma)


def test_with_an_identity_decoder_latent_daps_is_pixel_daps_bitwise():
    _, _, matrix = random_case(3, d=6, p=6, m=4)
    prior = gaussian_latent_prior(6, S, AffineDecoder(None, channels=6))
    y = torch.randn(5, 4, generator=_chains(5, 9))
    problem = problem_for(matrix, y, 0.2)
    settings = dict(steps=12, ode_steps=2, ode_grid="euler", ode_sigma_min=0.001, sigma_max=10.0, sigma_min=0.1,
                    inner="hmc", langevin_steps=7, lr=1e-4, lr_min_ratio=0.5, momentum=0.8, tau=0.2,
                    lr_reference_tau=0)
    generators = [torch.Generator().manual_seed(i) for i in range(5)]
    solver = get_solver("latent-daps", "paper", grad_clamp=math.inf, **settings)
    latent = solver.run(prior, problem, generator=generators)
    generators = [torch.Generator().manual_seed(i) for i in range(5)]
    pixel = get_solver("daps", "paper", **settings).run(PixelView(prior), problem, generator=generators)
    assert torch.equal(latent, pixel)


def test_the_gradient_clamp_bounds_each_latent_element():
    weight, bias, matrix = random_case(4)
    prior = gaussian_latent_prior(3, S, AffineDecoder(50 * weight, bias))
    problem = problem_for(matrix, torch.full((2, 4), 30.0), 0.1)
    tau = 0.1
    z = torch.zeros(2, 3, 1, 1)
    clamped = get_solver("latent-daps", "paper", grad_clamp=0.5)._data_term(prior, problem, problem.y, (1, 1), tau)
    free = get_solver("latent-daps", "paper", grad_clamp=math.inf)._data_term(prior, problem, problem.y, (1, 1), tau)
    assert free(z).abs().max() * tau**2 > 0.5
    assert torch.allclose(clamped(z).abs().max() * tau**2, torch.tensor(0.5))


def test_vq_decoding_passes_the_gradient_straight_through():
    """LDM decodes through the VQ quantiser; the gradient with respect to the latent is the decoder's gradient at
    the quantised latent (straight-through), what the LDM code and diffusers' VQModel do."""
    from diffusers import VQModel

    from diffrestore.priors.latent import DiffusersLatentPrior

    torch.manual_seed(0)
    vq = VQModel(in_channels=3, out_channels=3, latent_channels=2, block_out_channels=(4, 4),
                 down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                 norm_num_groups=2, num_vq_embeddings=7, vq_embed_dim=2)
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=4, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(4, 4),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=2)
    from latent_cases import sd_scheduler

    prior = DiffusersLatentPrior(unet, vq, sd_scheduler(), latent_scale=1.0)
    assert prior.autoencoder_kind == "vq"
    h = torch.randn(1, 2, 4, 4, requires_grad=True)
    weights = torch.randn(1, 3, 8, 8)
    (grad,) = torch.autograd.grad((prior.decode(h) * weights).sum(), h)
    quantised = vq.quantize(h.detach())[0].requires_grad_(True)
    plain = vq.decode(quantised, force_not_quantize=True).sample
    (expected,) = torch.autograd.grad((plain * weights).sum(), quantised)
    assert torch.allclose(grad, expected, atol=1e-6)
    assert not torch.allclose(prior.decode(h.detach()), vq.decode(h.detach(), force_not_quantize=True).sample)
