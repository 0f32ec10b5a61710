"""A gray file restored with an RGB prior is one noisy look at the luminance: y = A(L x) + n with x in RGB and L
the BT.601 luminance, one noise draw per pixel (copying the gray file into three channels counted it 3 times)."""

from __future__ import annotations

import torch
from cli_support import run_main, write_image

from diffrestore import tasks
from diffrestore.operators import BT601_WEIGHTS
from diffrestore.priors.analytic import GaussianPrior, gaussian_posterior
from diffrestore.run import engine

H = W = 4
NOISE_SIGMA = 0.05  # [0, 1] scale: 0.1 in tensor units


def _rgb_prior() -> GaussianPrior:
    """Correlated colour channels (so the luminance says something about each channel) x a smooth spatial kernel;
    std 0.3, so posterior means stay inside the [-1, 1] clamp of the outputs."""
    pos = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij"), -1).reshape(-1, 2).double()
    spatial = torch.exp(-torch.cdist(pos, pos).square() / (2 * 1.5**2)) + 1e-3 * torch.eye(H * W, dtype=torch.float64)
    colour = 0.09 * torch.tensor([[1.0, 0.8, 0.6], [0.8, 1.0, 0.8], [0.6, 0.8, 1.0]], dtype=torch.float64)
    return GaussianPrior(torch.full((3, H, W), 0.1), torch.kron(colour, spatial))


class ExactPosteriorMean:
    """A stand-in solver that returns the closed-form posterior mean of whatever problem the engine built."""

    name = "exact"
    prior_kind = "pixel"

    def check_channels(self, image_channels: int, prior_channels: int) -> None:
        return None

    def resolved(self, prior, x_shape, problem=None) -> dict:
        return {}  # nothing derived at run time (as Solver.resolved)

    def run(self, prior, problem, *, generator, progress=None) -> torch.Tensor:
        mean, _ = gaussian_posterior(prior, problem.operator, problem.y, float(problem.noise.std))
        return mean.to(torch.float32)


def _closed_form_gray(prior: GaussianPrior, y: torch.Tensor, noise_std: float) -> torch.Tensor:
    """E[L x | y] for y = L x + n, built by hand from the prior's mean and covariance (float64)."""
    luma = torch.kron(torch.tensor([BT601_WEIGHTS], dtype=torch.float64), torch.eye(H * W, dtype=torch.float64))
    cov, mu = prior.covariance.double(), prior.mean.double()
    gain = cov @ luma.T @ torch.linalg.inv(luma @ cov @ luma.T + noise_std**2 * torch.eye(H * W, dtype=torch.float64))
    x_mean = mu + gain @ (y.double().reshape(-1) - luma @ mu)
    return (luma @ x_mean).reshape(1, 1, H, W)


def test_gray_denoising_with_an_rgb_prior_matches_the_closed_form() -> None:
    prior = _rgb_prior()
    gray = prior.sample(1, torch.Generator().manual_seed(0)).mul(torch.tensor(BT601_WEIGHTS).view(1, 3, 1, 1))
    y = gray.sum(dim=1, keepdim=True) + 0.1 * torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(1))
    task = tasks.resolve_task("denoise", {"noise_sigma": NOISE_SIGMA})
    [result] = engine.restore_batch(prior, ExactPosteriorMean(), task, [y], mask=None, num_samples=1, seed=0)
    assert result.image.shape == (1, 1, H, W)  # gray in, gray out
    expected = _closed_form_gray(prior, y, 2 * NOISE_SIGMA)
    assert torch.allclose(result.image.double(), expected, atol=1e-4)
    # the old model (three copies of y, each with its own noise) is measurably different: the test can fail
    tripled = _closed_form_gray_three_looks(prior, y, 2 * NOISE_SIGMA)
    assert float((tripled - expected).abs().max()) > 1e-2


def _closed_form_gray_three_looks(prior: GaussianPrior, y: torch.Tensor, noise_std: float) -> torch.Tensor:
    identity = torch.eye(3 * H * W, dtype=torch.float64)
    cov, mu = prior.covariance.double(), prior.mean.double()
    y3 = y.double().reshape(-1).repeat(3)
    x_mean = mu + cov @ torch.linalg.solve(cov + noise_std**2 * identity, y3 - mu)
    return x_mean.reshape(3, H, W).mean(dim=0).reshape(1, 1, H, W)


def test_simulating_a_gray_file_draws_one_noise_per_pixel() -> None:
    task = tasks.resolve_task("deblur", {"kernel_size": 3, "sigma": 1.0, "noise_sigma": NOISE_SIGMA}, simulate=True)
    op = task.operator((3, H, W), seed=0, input_channels=1)
    gray = torch.zeros(1, 1, H, W)
    y, ref = task.measurement(op, task.noise_model(), gray, channels=3, generator=torch.Generator().manual_seed(0))
    assert y.shape == (1, 1, H, W) and ref is not None and ref.shape == (1, 3, H, W)
    assert float(y.std()) > 0.05  # noise was drawn once, on the one measured channel


def test_mmse_refuses_a_gray_image_on_an_rgb_model(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "gray.png", mode="L")
    result = run_main(["denoise", image, "--method", "mmse", "--device", "cpu", "--noise-sigma", "0.1"], capsys)
    assert result.code == 2
    assert "method mmse needs an image with the model's 3 channel(s)" in result.err and "--method daps" in result.err
    assert not (tmp_path / "gray_denoise.png").exists()
