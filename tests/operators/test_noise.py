"""Noise models: scales, statistics, likelihoods against scipy, and randomness only from the passed generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.operators import (
    NOISE_NAMES,
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonNoise,
    Problem,
    build_noise,
    build_operator,
    paper_sigma_to_unit,
    simulate,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clean(shape=(4, 3, 64, 64), seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=_gen(seed)) * 2 - 1


NOISES = [
    pytest.param(NoNoise(), id="none"),
    pytest.param(GaussianNoise(0.025), id="gaussian"),
    pytest.param(PoissonNoise(50.0), id="poisson"),
]


def test_kinds_cover_the_names() -> None:
    assert {model.values[0].kind for model in NOISES} == set(NOISE_NAMES)
    assert all(isinstance(model.values[0], NoiseModel) for model in NOISES)


def test_paper_sigma_converts_to_the_user_scale() -> None:
    assert paper_sigma_to_unit(0.05) == pytest.approx(0.025)
    assert GaussianNoise(paper_sigma_to_unit(0.05)).std == pytest.approx(0.05)
    assert GaussianNoise(0.1).sigma == 0.1 and GaussianNoise(0.1).std == pytest.approx(0.2)


def test_gaussian_noise_has_the_stated_std_in_tensor_units() -> None:
    ax = _clean((8, 3, 64, 64))
    noise = GaussianNoise(0.05)  # 0.05 on [0, 1] = 0.1 on [-1, 1]
    residual = noise.sample(ax, _gen(1)) - ax
    assert float(residual.std()) == pytest.approx(0.1, rel=0.01)
    assert abs(float(residual.mean())) < 0.002
    # Seen on the user's [0, 1] scale, the std is sigma.
    assert float((residual / 2).std()) == pytest.approx(0.05, rel=0.01)


@pytest.mark.parametrize("rate", [5.0, 200.0])
def test_poisson_noise_mean_and_variance(rate: float) -> None:
    intensity = torch.tensor([0.0, 0.1, 0.5, 0.9])
    ax = (intensity * 2 - 1).view(1, 4, 1, 1).expand(20000, 4, 1, 1).contiguous()
    y = PoissonNoise(rate).sample(ax, _gen(2))
    y01 = ((y + 1) / 2).squeeze(-1).squeeze(-1).double()
    assert torch.allclose(y01.mean(0), intensity.double(), atol=0.01)
    # Var(counts / rate) = intensity / rate.
    assert torch.allclose(y01.var(0), intensity.double() / rate, rtol=0.05, atol=1e-6)
    counts = y01 * rate
    assert torch.allclose(counts, counts.round(), atol=1e-3), "y01 * rate must be whole photon counts"
    assert (y[:, 0] == -1).all(), "zero intensity gives zero photons"


def test_poisson_clamps_negative_intensity_to_zero() -> None:
    ax = torch.full((2, 1, 3, 3), -1.5)  # below black, e.g. an operator overshoot
    assert (PoissonNoise(10.0).sample(ax, _gen(3)) == -1).all()


@pytest.mark.parametrize("noise", NOISES)
def test_same_seed_same_noise_and_only_the_passed_generator_counts(noise: NoiseModel) -> None:
    ax = _clean((2, 3, 16, 16))
    torch.manual_seed(1)
    a = noise.sample(ax, _gen(7))
    torch.manual_seed(2)  # changing the global RNG must not matter
    b = noise.sample(ax, _gen(7))
    c = noise.sample(ax, _gen(8))
    assert torch.equal(a, b)
    assert a.shape == ax.shape and a.dtype == torch.float32
    if noise.kind == "none":
        assert torch.equal(a, ax) and torch.equal(c, ax)
    else:
        assert not torch.equal(a, c)


def test_gaussian_log_likelihood_matches_scipy_up_to_a_constant() -> None:
    from scipy import stats

    noise = GaussianNoise(0.05)
    y = _clean((3, 2, 5, 4), 4)
    ax1, ax2 = _clean((3, 2, 5, 4), 5), _clean((3, 2, 5, 4), 6)
    ours = noise.log_likelihood(y, ax1) - noise.log_likelihood(y, ax2)
    reference = [
        stats.norm.logpdf(y[i].numpy(), ax1[i].numpy(), noise.std).sum()
        - stats.norm.logpdf(y[i].numpy(), ax2[i].numpy(), noise.std).sum()
        for i in range(3)
    ]
    assert ours.shape == (3,)
    assert np.allclose(ours.double().numpy(), reference, rtol=1e-4)
    assert torch.allclose(noise.log_likelihood(y, y), torch.zeros(3))


def test_poisson_log_likelihood_is_the_exact_pmf() -> None:
    from scipy import stats

    rate = 30.0
    noise = PoissonNoise(rate)
    ax = torch.rand(2, 1, 4, 5, generator=_gen(9)) * 2 - 1
    y = noise.sample(ax, _gen(10))
    counts = np.rint(rate * (y.numpy() + 1) / 2)
    means = rate * (ax.numpy() + 1) / 2
    reference = [stats.poisson.logpmf(counts[i], means[i]).sum() for i in range(2)]
    ours = noise.log_likelihood(y, ax)
    assert ours.shape == (2,)
    assert np.allclose(ours.double().numpy(), reference, rtol=1e-4)


def test_poisson_log_likelihood_has_finite_gradients_at_black() -> None:
    noise = PoissonNoise(10.0)
    y = noise.sample(torch.zeros(1, 1, 4, 4), _gen(11))
    ax = torch.full((1, 1, 4, 4), -1.0, requires_grad=True)
    (grad,) = torch.autograd.grad(noise.log_likelihood(y, ax).sum(), ax)
    assert torch.isfinite(grad).all()


def test_no_noise_log_likelihood_prefers_the_measurement() -> None:
    y = _clean((2, 1, 4, 4), 12)
    ll = NoNoise().log_likelihood(y, torch.stack([y[0], y[1] + 0.1]))
    assert ll.shape == (2,) and ll[0] == 0 and ll[1] < 0


def test_stds_are_in_tensor_units() -> None:
    assert NoNoise().std == 0.0
    # Poisson at mid-grey: Var(y01) = 0.5 / rate, and tensor units double the std.
    assert PoissonNoise(50.0).std == pytest.approx(2 * math.sqrt(0.5 / 50.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: GaussianNoise(0.0), r"gaussian noise sigma must be > 0 on the \[0, 1\] intensity scale, got 0.0"),
        (lambda: GaussianNoise(float("nan")), r"gaussian noise sigma must be > 0"),
        (lambda: PoissonNoise(-3), r"poisson rate must be > 0 \(photons per unit intensity\), got -3.0"),
        (lambda: build_noise("gaussian"), r"gaussian noise needs sigma"),
        (lambda: build_noise("poisson"), r"poisson noise needs rate"),
        (lambda: build_noise("salt"), r"unknown noise 'salt' \(choose one of: none, gaussian, poisson\)"),
    ],
)
def test_bad_noise_parameters_give_one_line_messages(call, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_build_noise_builds_each_kind() -> None:
    assert isinstance(build_noise("none"), NoNoise)
    assert build_noise("gaussian", sigma=0.02).std == pytest.approx(0.04)
    assert build_noise("poisson", rate=7).rate == 7.0


def test_simulate_makes_a_reproducible_problem() -> None:
    x = _clean((2, 3, 12, 12), 13)
    op = build_operator("sr", (3, 12, 12), factor=2, kernel="box")
    problem = simulate(op, GaussianNoise(0.01), x, _gen(14))
    again = simulate(op, GaussianNoise(0.01), x, _gen(14))
    assert isinstance(problem, Problem) and problem.operator is op
    assert problem.y.shape == (2, 3, 6, 6) and not problem.y.requires_grad
    assert torch.equal(problem.y, again.y)
    assert float((problem.y - op(x)).std()) == pytest.approx(0.02, rel=0.3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("noise", NOISES)
def test_cpu_generator_gives_the_same_noise_on_cuda(noise: NoiseModel) -> None:
    ax = _clean((2, 3, 8, 8))
    on_cpu = noise.sample(ax, _gen(15))
    on_cuda = noise.sample(ax.cuda(), _gen(15))
    assert on_cuda.device.type == "cuda"
    assert torch.allclose(on_cuda.cpu(), on_cpu, atol=1e-6)
