"""Closed-form latent problems for the LatentDAPS tests (docs/solvers.md, the closed-form tests): a Gaussian latent
prior with the exact eps network, an affine decoder and a dense linear operator, wrapped so that the real prior class
(``DiffusersLatentPrior``: the VP -> VE conversion through the model's own alpha_bar table) and the real solver run on
them.

    z ~ N(0, s^2 I_d),   x = Dec(z) = W z + b (p pixels),   y = M x + N(0, sy^2 I_m),   G = M W
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from diffrestore.operators import GaussianNoise, Problem
from diffrestore.operators.base import LinearOperator
from diffrestore.priors.latent import DiffusersLatentPrior
from diffrestore.priors.vp import VPDenoiser


def sd_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False)


class GaussianEps(torch.nn.Module):
    """The exact eps prediction for z0 ~ N(0, s^2 I) at a (fractional) timestep of a VP table:
    eps(z_t, t) = sqrt(1 - ab) z_t / (ab s^2 + 1 - ab). The timestep is turned back into alpha_bar by the same
    log-sigma interpolation priors/vp.py uses to make it."""

    def __init__(self, channels: int, s: float, scheduler) -> None:
        super().__init__()
        self.config = SimpleNamespace(in_channels=channels, sample_size=1, block_out_channels=(1,),
                                      cross_attention_dim=None)
        self.s = torch.nn.Parameter(torch.tensor(float(s)))
        self.log_sigmas = VPDenoiser.from_scheduler(scheduler).log_sigmas.double()

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, return_dict: bool = False):
        table = self.log_sigmas
        t = t.double()
        lo = t.floor().long().clamp(0, table.numel() - 2)
        log_s = table[lo] + (t - lo) * (table[lo + 1] - table[lo])
        ab = (1.0 / (1.0 + (2 * log_s).exp())).view(-1, 1, 1, 1)
        s2 = self.s.double() ** 2
        eps = (1 - ab).sqrt() * z_t.double() / (ab * s2 + 1 - ab)
        return (eps.to(z_t.dtype),)


class AffineDecoder(torch.nn.Module):
    """Dec(z) = W z + b on latents (N, d, 1, 1) -> images (N, p, 1, 1); W = None is the identity (exact bits)."""

    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None = None, channels: int = 0) -> None:
        super().__init__()
        p = weight.shape[0] if weight is not None else channels
        self.config = SimpleNamespace(in_channels=p, block_out_channels=(1,))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter, so the prior can freeze and cast it
        self.register_buffer("weight", weight if weight is not None else torch.empty(0))
        self.register_buffer("bias", bias if bias is not None else torch.zeros(p))
        self.identity = weight is None

    def decode(self, h: torch.Tensor):
        if self.identity:
            return SimpleNamespace(sample=h)
        x = h.flatten(1) @ self.weight.T + self.bias
        return SimpleNamespace(sample=x.reshape(h.shape[0], -1, 1, 1))

    def encode(self, x: torch.Tensor):
        """The pseudo-inverse: Enc(Dec(z)) = z for a full-column-rank W (DWGF's consistency term is then 0)."""
        if self.identity:
            return SimpleNamespace(latents=x)
        z = (x.flatten(1) - self.bias) @ torch.linalg.pinv(self.weight).T
        return SimpleNamespace(latents=z.reshape(x.shape[0], -1, 1, 1))


class MatrixOperator(LinearOperator):
    """y = M x for images (N, p, 1, 1) -> (N, m, 1, 1)."""

    name = "matrix"

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__((matrix.shape[1], 1, 1))
        self.output_shape = (matrix.shape[0], 1, 1)
        self.register_buffer("matrix", matrix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.matrix.T).reshape(x.shape[0], *self.output_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y.flatten(1) @ self.matrix).reshape(y.shape[0], *self.image_shape)


def gaussian_latent_prior(d: int, s: float, decoder: AffineDecoder) -> DiffusersLatentPrior:
    scheduler = sd_scheduler()
    return DiffusersLatentPrior(GaussianEps(d, s, scheduler), decoder, scheduler, latent_scale=1.0, name="gaussian")


def random_case(seed: int = 0, d: int = 3, p: int = 6, m: int = 4):
    """(W, b, M) with entries of order one."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(p, d, generator=g) / d**0.5
    bias = 0.3 * torch.randn(p, generator=g)
    matrix = torch.randn(m, p, generator=g) / p**0.5
    return weight, bias, matrix


def problem_for(matrix: torch.Tensor, y: torch.Tensor, sy: float) -> Problem:
    """A problem with y (1, m) repeated as given; noise std ``sy`` in tensor units."""
    return Problem(operator=MatrixOperator(matrix), noise=GaussianNoise(sy / 2.0), y=y.reshape(y.shape[0], -1, 1, 1))


def gaussian_target(prior_mean: torch.Tensor, r: float, G: torch.Tensor, y_eff: torch.Tensor, tau: float):
    """Mean and covariance of N(prior_mean, r^2 I) x N(y_eff; G z, tau^2 I), float64."""
    G = G.double()
    d = G.shape[1]
    precision = torch.eye(d, dtype=torch.float64) / r**2 + G.T @ G / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (prior_mean.double() / r**2 + G.T @ y_eff.double() / tau**2)
    return mean, cov


def exact_posterior(s: float, G: torch.Tensor, y_eff: torch.Tensor, sy: float):
    """p(z | y) for z ~ N(0, s^2 I): mean and covariance, float64."""
    return gaussian_target(torch.zeros(G.shape[1]), s, G, y_eff, sy)
