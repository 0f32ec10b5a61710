"""diffrestore.priors.analytic: the Gaussian and mixture denoisers, samples and the Gaussian posterior
against independent float64 formulas."""

from __future__ import annotations

import torch

from diffrestore.priors.analytic import GaussianMixturePrior, GaussianPrior, gaussian_posterior


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
