"""DWGF's closed forms (docs/solvers.md, the closed-form tests) on the real prior class and solver code: a Gaussian
latent prior with the exact eps network, an affine decoder with its pseudo-inverse as encoder, a dense linear operator
(tests/latent_cases.py).

    z ~ N(0, s^2 I_d),   x = W z + b,   y = M x + noise,   G = M W
"""

from __future__ import annotations

import math

import pytest
import torch
from latent_cases import AffineDecoder, gaussian_latent_prior, problem_for, random_case

from diffrestore.errors import UsageError
from diffrestore.priors.base import Conditioning
from diffrestore.solvers import get_solver
from diffrestore.solvers.dwgf import flow_timesteps, kde_score, measured_entries


def _timestep_near(prior, alpha_bar: float) -> int:
    return int((prior.alphas_cumprod - alpha_bar).abs().argmin())


def test_the_kde_score_is_the_gradient_of_the_log_mixture():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)
    points = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)
    scale, var = 0.7, 0.4

    def log_mixture(x):
        d2 = (x.flatten(1)[:, None, :] - scale * centers.flatten(1)[None]).square().sum(-1)
        return torch.logsumexp(-d2 / (2 * var), dim=1).sum()  # constants drop out of the gradient

    xg = points.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(log_mixture(xg), xg)
    assert torch.allclose(kde_score(points, centers, scale, var), expected, atol=1e-12)
    # one point: its own Gaussian kernel, -(x - scale c) / var
    alone = kde_score(points[:1], centers[:1], scale, var)
    assert torch.allclose(alone, -(points[:1] - scale * centers[:1]) / var, atol=1e-12)


@pytest.mark.parametrize("t", [999, 500, 20])
def test_with_one_particle_the_prior_gradient_is_red_diffs(t):
    weight, bias, _ = random_case(1)
    s = 0.8
    prior = gaussian_latent_prior(3, s, AffineDecoder(weight, bias))
    solver = get_solver("dwgf", "paper")
    g = torch.Generator().manual_seed(2)
    z, eps = torch.randn(5, 3, 1, 1, generator=g), torch.randn(5, 3, 1, 1, generator=g)
    got = solver.prior_gradient(prior, z, t, eps, Conditioning(), group=1)
    ab = float(prior.alphas_cumprod[t])
    z_t = math.sqrt(ab) * z + math.sqrt(1 - ab) * eps
    eps_theta = prior.unet(z_t, torch.full((5,), float(t)))[0]
    red_diff = 0.15 * math.sqrt((1 - ab) / ab) * (eps_theta - eps) / 3
    assert torch.allclose(got, red_diff, rtol=2e-4, atol=1e-7)


def test_the_frozen_time_flow_stops_at_the_ridge_solution():
    """At a frozen timestep with one particle the expected gradient vanishes at
    z* = (G^T G / M + kappa I)^-1 G^T (y - M b) / M, kappa = w (1 - ab) / ((ab s^2 + 1 - ab) P); the solver's own
    gradient (prior + data + consistency, decoder noise on) drives 4000 gradient-descent chains there."""
    d, p, m, s = 3, 6, 4, 1.0
    weight, bias, matrix = random_case(3, d=d, p=p, m=m)
    prior = gaussian_latent_prior(d, s, AffineDecoder(weight, bias))
    chains = 4000
    y = torch.tensor([0.4, -0.3, 0.8, 0.1])
    problem = problem_for(matrix, y.expand(chains, m).contiguous(), 0.01)
    solver = get_solver("dwgf", "paper")
    t = _timestep_near(prior, 0.3)
    ab = float(prior.alphas_cumprod[t])
    measured = measured_entries(problem, (chains, p, 1, 1), torch.device("cpu"))
    assert torch.equal(measured, torch.full((chains,), float(m)))
    g = torch.Generator().manual_seed(4)
    z = torch.zeros(chains, d, 1, 1)
    with torch.no_grad():
        for _ in range(3000):
            eps = torch.randn(z.shape, generator=g)
            noise = 0.01 * torch.randn(chains, p, 1, 1, generator=g)
            z = z - 0.05 * solver.flow_gradient(prior, problem, problem.y, z, t, eps, noise, cond=Conditioning(),
                                                group=1, measured=measured, size=(1, 1))
    G = (matrix @ weight).double()
    kappa = 0.15 * (1 - ab) / ((ab * s**2 + 1 - ab) * d)
    rhs = G.T @ (y.double() - matrix.double() @ bias.double()) / m
    ridge = torch.linalg.solve(G.T @ G / m + kappa * torch.eye(d, dtype=torch.float64), rhs)
    least_squares = torch.linalg.lstsq(G.T @ G / m, rhs[:, None]).solution[:, 0]
    mean = z.flatten(1).double().mean(0)
    assert (mean - ridge).abs().max() < 3e-3, (mean, ridge)
    assert (least_squares - ridge).abs().max() > 0.05  # the prior's pull is what the test sees


def _pair_velocity(interact: bool, t: int = 999) -> float:
    """E[(v_1 - v_2) . (z_1 - z_2)] for two particles at +-a (v = -gradient): > 0 moves them apart."""
    prior = gaussian_latent_prior(3, 1.0, AffineDecoder(None, channels=3))
    solver = get_solver("dwgf", "paper", interact=interact)
    a = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    pairs = 4000
    z = torch.cat([a, -a]).repeat(pairs, 1, 1, 1)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(5))
    v = -solver.prior_gradient(prior, z, t, eps, Conditioning(), group=2).view(pairs, 2, 3)
    return float(((v[:, 0] - v[:, 1]) * (2 * a.view(3))).sum(-1).mean())


def test_two_particles_at_large_noise_move_apart_and_independent_runs_do_not():
    assert _pair_velocity(interact=True) > 0  # the kernel-density term repels a crowded cloud
    assert _pair_velocity(interact=False) < 0  # N RED-diff runs all shrink towards the prior mean


def test_the_time_grid():
    assert flow_timesteps(998, 1000) == list(range(999, 1, -1))  # the official 999-point grid, last dropped
    grid = flow_timesteps(100, 1000)
    assert len(grid) == 100 and grid[0] == 999 and grid == sorted(grid, reverse=True) and grid[-1] > 1
    with pytest.raises(UsageError, match="1 to 998 steps"):
        flow_timesteps(999, 1000)


def test_inpainting_counts_only_the_known_pixels():
    from diffrestore.operators import GaussianNoise, Problem, build_operator

    op = build_operator("inpaint", (3, 8, 8), fraction=0.25, generator=torch.Generator().manual_seed(0))
    problem = Problem(operator=op, noise=GaussianNoise(0.01), y=torch.zeros(1, 3, 8, 8))
    known = int((~op.missing).sum()) * 3
    assert known < 3 * 64 and int(measured_entries(problem, (1, 3, 8, 8), torch.device("cpu"))) == known
