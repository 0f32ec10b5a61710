"""--method mmse: the one-call posterior mean for Gaussian denoising (diffrestore/solvers/mmse.py)."""

from __future__ import annotations

import pytest
import torch
from cli_support import make_tiny_model, run_main, write_image

from diffrestore.errors import UsageError
from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.analytic import GaussianPrior, gaussian_posterior
from diffrestore.solvers import get_solver

SHAPE = (1, 8, 8)


def _denoising_problem(prior: GaussianPrior, noise: GaussianNoise, seed: int = 0) -> Problem:
    x = prior.sample(2, torch.Generator().manual_seed(seed))
    op = build_operator("identity", SHAPE)
    y = noise.sample(op(x), torch.Generator().manual_seed(seed + 1))
    return Problem(op, noise, y)


def test_mmse_is_the_exact_posterior_mean_under_a_gaussian_prior() -> None:
    prior = GaussianPrior.stationary(SHAPE, length_scale=1.5, std=0.5, jitter=0.01)
    noise = GaussianNoise(0.1)  # std 0.2 in tensor units
    problem = _denoising_problem(prior, noise)
    x_hat = get_solver("mmse").run(prior, problem, generator=torch.Generator().manual_seed(0))
    exact, _ = gaussian_posterior(prior, problem.operator, problem.y, noise.std)
    assert x_hat.shape == problem.y.shape
    torch.testing.assert_close(x_hat.double(), exact, atol=1e-4, rtol=0)
    # not the identity either: the estimate moved well away from y
    assert float((x_hat - problem.y).abs().mean()) > 0.05


def test_mmse_refuses_what_it_cannot_solve() -> None:
    prior = GaussianPrior.stationary(SHAPE, length_scale=1.5, std=0.5, jitter=0.01)
    op = build_operator("inpaint", SHAPE, fraction=0.5, generator=torch.Generator().manual_seed(0))
    y = op(prior.sample(1, torch.Generator().manual_seed(0)))
    with pytest.raises(UsageError, match="identity operator"):
        get_solver("mmse").run(prior, Problem(op, GaussianNoise(0.01), y), generator=torch.Generator())
    with pytest.raises(UsageError, match="one denoiser call"):
        get_solver("mmse", "fast", steps=10)


def test_cli_denoise_with_mmse_writes_a_deterministic_estimate(tmp_path, capsys) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    image = write_image(tmp_path / "photo.png")
    outputs = []
    for seed in (0, 1):
        out = tmp_path / f"out{seed}.png"
        result = run_main(["denoise", image, "--method", "mmse", "--model", model, "--device", "cpu",
                           "--seed", seed, "-o", out], capsys)
        assert result.code == 0, result.err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]  # no randomness beyond the (real) measurement


@pytest.mark.parametrize(("argv", "message"), [
    (["inpaint", "--box", "2,2,4,4"], "only restores 'denoise'"),
    (["denoise", "--noise", "poisson"], "needs gaussian noise"),
    (["denoise", "--num-samples", "3"], "not samples"),
    (["denoise", "--steps", "4"], "exactly one denoiser call"),
])
def test_cli_refuses_mmse_misuse_with_a_usage_error(tmp_path, capsys, argv, message) -> None:
    image = write_image(tmp_path / "photo.png")
    missing_model = tmp_path / "no-such-model"  # the check comes before any model loads
    result = run_main([argv[0], image, *argv[1:], "--method", "mmse", "--model", missing_model], capsys)
    assert result.code == 2, result.err
    assert message in result.err and "Traceback" not in result.err
    assert not any(p.name.startswith("photo_") for p in tmp_path.iterdir())
