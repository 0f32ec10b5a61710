"""Every solver x every operator on a tiny seeded UNet: shapes, finiteness, determinism from the generator,
per-image guidance, progress, presets and error messages."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from operator_cases import tiny_bkse_generator

from diffrestore.errors import UsageError
from diffrestore.operators import OPERATOR_NAMES, GaussianNoise, PoissonNoise, Problem, build_operator
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior
from diffrestore.solvers import SOLVER_NAMES, get_solver

SHAPE = (3, 8, 8)
#: small kernels keep the tests fast; the defaults (61 x 61) are the papers' and are exercised elsewhere
OPERATOR_PARAMS: dict[str, dict] = {
    "inpaint": {"fraction": 0.5},
    "sr": {"factor": 2},
    "gaussian_blur": {"kernel_size": 5, "sigma": 1.0},
    "motion_blur": {"kernel_size": 5},
    "kernel_blur": {"kernel": torch.tensor([[0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 0.0]])},
    "varying_blur": {"field": "shake", "grid": 2, "kernel_size": 3},
    "bkse": {"weights": tiny_bkse_generator()},  # bkse's network at test size (random weights)
    "mri": {"coils": 2},  # random lines at 4x, two simulated coils: the exact per-line Gram solve
}
#: operators whose images are not RGB: MRI's are complex, 2 channels (real, imaginary), with a prior to match
SHAPE_BY_OPERATOR: dict[str, tuple[int, int, int]] = {"mri": (2, 8, 8)}
FEW_STEPS: dict[str, dict] = {
    "dps": {"steps": 3},
    "mcg": {"steps": 3},
    "daps": {"steps": 3, "ode_steps": 2, "langevin_steps": 3},
}


@pytest.fixture(scope="module")
def prior() -> DiffusersPixelPrior:
    return _tiny_prior(3)


@pytest.fixture(scope="module")
def complex_prior() -> DiffusersPixelPrior:
    return _tiny_prior(2)


def _tiny_prior(channels: int) -> DiffusersPixelPrior:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    return DiffusersPixelPrior(unet, DDPMScheduler(num_train_timesteps=1000), native_size=None)


def make_problem(name: str, batch: int = 2, noise=None, seed: int = 0) -> Problem:
    shape = SHAPE_BY_OPERATOR.get(name, SHAPE)
    op = build_operator(name, shape, generator=torch.Generator().manual_seed(1), **OPERATOR_PARAMS.get(name, {}))
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    noise = noise or GaussianNoise(0.025)
    with torch.no_grad():
        y = noise.sample(op(x), torch.Generator().manual_seed(seed + 1))
    return Problem(op, noise, y.repeat(batch, *([1] * (y.dim() - 1))))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("operator_name", OPERATOR_NAMES)
@pytest.mark.parametrize("solver_name", SOLVER_NAMES)
def test_every_solver_runs_on_every_operator(prior, complex_prior, solver_name: str, operator_name: str) -> None:
    solver = get_solver(solver_name, "fast", **FEW_STEPS[solver_name])
    problem = make_problem(operator_name)
    shape = SHAPE_BY_OPERATOR.get(operator_name, SHAPE)
    prior = complex_prior if shape[0] == 2 else prior
    a = solver.run(prior, problem, generator=gen(0))
    assert a.shape == (2, *shape) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    torch.manual_seed(123)  # the global RNG must play no part
    b = solver.run(prior, problem, generator=gen(0))
    assert torch.equal(a, b)
    c = solver.run(prior, problem, generator=gen(1))
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # two posterior samples, not one copied


@pytest.mark.parametrize("solver_name", SOLVER_NAMES)
def test_guidance_is_per_image_not_pooled_over_the_batch(prior, solver_name: str) -> None:
    # Image 0 sees the same y and the same noise draws in both runs; only image 1's measurement differs.
    solver = get_solver(solver_name, "fast", **FEW_STEPS[solver_name])
    p1 = make_problem("sr", seed=0)
    p2 = make_problem("sr", seed=0)
    p2.y[1] = make_problem("sr", seed=5).y[1] * 3.0
    a = solver.run(prior, p1, generator=gen(0))
    b = solver.run(prior, p2, generator=gen(0))
    torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=0)
    assert not torch.allclose(a[1], b[1])


@pytest.mark.parametrize("solver_name", SOLVER_NAMES)
def test_poisson_noise_runs(prior, solver_name: str) -> None:
    solver = get_solver(solver_name, "fast", **FEW_STEPS[solver_name])
    problem = make_problem("gaussian_blur", noise=PoissonNoise(50.0))
    out = solver.run(prior, problem, generator=gen(0))
    assert torch.isfinite(out).all()


def test_progress_reports_every_step(prior) -> None:
    calls = []
    get_solver("daps", "fast", steps=4, ode_steps=1, langevin_steps=2).run(
        prior, make_problem("inpaint"), generator=gen(0), progress=lambda d, t, w: calls.append((d, t, w))
    )
    assert calls == [(1, 4, "daps"), (2, 4, "daps"), (3, 4, "daps"), (4, 4, "daps")]


def test_presets_hold_the_papers_settings() -> None:
    dps = get_solver("dps", "paper")
    assert dps.config.steps == 1000 and dps.network_calls() == 1000 and dps.needs_network_gradient()
    daps = get_solver("daps", "paper")
    assert (daps.config.steps, daps.config.ode_steps, daps.config.langevin_steps) == (200, 5, 100)
    assert daps.network_calls() == 1000 and not daps.needs_network_gradient()
    assert (daps.config.sigma_max, daps.config.sigma_min) == (100.0, 0.1)
    assert get_solver("daps", "fast").config.sigma_min == 0.01  # our preset: no visible final Langevin noise
    assert get_solver("mcg", "paper").config.steps == 1000
    assert get_solver("dps", "fast", steps=7).config.steps == 7


def test_per_task_step_sizes_follow_the_official_configs() -> None:
    from diffrestore.solvers.daps import default_lr

    dps = get_solver("dps", "paper")
    assert dps.guidance_scale(make_problem("inpaint")) == 0.5
    assert dps.guidance_scale(make_problem("sr")) == 0.3
    assert dps.guidance_scale(make_problem("phase_retrieval")) == 1.0
    assert get_solver("dps", "fast").guidance_scale(make_problem("sr")) == pytest.approx(3.0)  # 0.3 * 1000 / 100
    box = build_operator("inpaint", SHAPE, box=(2, 2, 4, 4))
    assert default_lr(box) == 5e-5 and default_lr(make_problem("inpaint").operator) == 1e-4
    assert default_lr(make_problem("hdr").operator) == 2e-5


def test_fast_dps_takes_the_step_its_model_recommends() -> None:
    """A model folder's recommended.dps_zeta (a number or a table by operator kind) replaces the official table in
    the fast preset; the paper preset and an explicit zeta ignore it; a model without one keeps the table."""
    from types import SimpleNamespace

    from diffrestore.operators import Problem

    prior = SimpleNamespace(recommended={"dps_zeta": {"default": 1.0, "superres": 3.0}})
    box = make_problem("inpaint")
    box = Problem(build_operator("inpaint", SHAPE, box=(2, 2, 4, 4)), box.noise, box.y)
    for name in ("dps", "mcg"):
        fast = get_solver(name, "fast")
        assert fast.guidance_scale(make_problem("sr"), prior) == pytest.approx(3.0 * 10)  # x 1000 / 100 steps
        assert fast.guidance_scale(make_problem("inpaint"), prior) == pytest.approx(1.0 * 10)
        assert fast.guidance_scale(box, prior) == pytest.approx(1.0 * 10)
        assert fast.guidance_scale(make_problem("sr"), SimpleNamespace()) == pytest.approx(3.0)
        assert fast.guidance_scale(make_problem("inpaint"), SimpleNamespace(recommended={"dps_zeta": 2})) == \
            pytest.approx(20.0)
        assert get_solver(name, "paper").guidance_scale(make_problem("sr"), prior) == pytest.approx(0.3)
        assert get_solver(name, "fast", zeta=0.2).guidance_scale(make_problem("sr"), prior) == pytest.approx(2.0)


def test_a_recommended_zeta_with_its_image_size_keeps_its_step_per_pixel_at_other_sizes() -> None:
    """recommended.dps_zeta_pixels: the zeta was measured at that C x H x W; DPS and MCG scale it by
    sqrt(values / reference), the per-pixel size of the unsquared norm's unit step (docs/benchmarks.md)."""
    from math import prod, sqrt
    from types import SimpleNamespace

    values = prod(SHAPE)
    measured_at_4x = SimpleNamespace(recommended={"dps_zeta": {"default": 1.0, "superres": 2.0},
                                                  "dps_zeta_pixels": 4 * values})
    measured_here = SimpleNamespace(recommended={"dps_zeta": 1.0, "dps_zeta_pixels": values})
    for name in ("dps", "mcg"):
        fast = get_solver(name, "fast")
        assert fast.guidance_scale(make_problem("sr"), measured_at_4x) == pytest.approx(2.0 * sqrt(1 / 4) * 10)
        assert fast.guidance_scale(make_problem("inpaint"), measured_at_4x) == pytest.approx(1.0 * 0.5 * 10)
        assert fast.guidance_scale(make_problem("inpaint"), measured_here) == pytest.approx(10.0)
        # the official table and an explicit zeta are never scaled
        assert get_solver(name, "paper").guidance_scale(make_problem("sr"), measured_at_4x) == pytest.approx(0.3)
        assert get_solver(name, "fast", zeta=0.2).guidance_scale(make_problem("sr"), measured_at_4x) == \
            pytest.approx(2.0)


def test_bad_names_and_fields_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"unknown solver 'dsp'.*dps, mcg, daps"):
        get_solver("dsp")
    with pytest.raises(UsageError, match=r"unknown preset 'quick' for solver daps.*paper, fast"):
        get_solver("daps", "quick")
    with pytest.raises(UsageError, match=r"unknown hyper-parameter\(s\) langevin for solver daps"):
        get_solver("daps", langevin=3)
    with pytest.raises(UsageError, match="dps: steps must be >= 1, got 0"):
        get_solver("dps", steps=0)


def test_solver_refuses_a_prior_of_the_wrong_size(prior) -> None:
    fixed = DiffusersPixelPrior(prior.unet, DDPMScheduler(num_train_timesteps=1000), native_size=(16, 16))
    with pytest.raises(UsageError, match="native size 16x16 but the image is 8x8"):
        get_solver("dps", steps=2).run(fixed, make_problem("identity"), generator=gen(0))
    with pytest.raises(UsageError, match=r"explicit torch\.Generator"):
        get_solver("dps", steps=2).run(prior, make_problem("identity"), generator=None)  # type: ignore[arg-type]


def test_dps_spends_every_step_below_the_priors_sigma_max() -> None:
    """The DDPM table's top (157) is above the default prior's sigma_max (80): clamped, 7 of the fast preset's 100
    steps sat at 80 doing nothing. Respaced over sigma <= 80 every step has its own noise level; a prior that
    covers the table keeps the paper's integer timesteps."""
    from diffrestore.priors.analytic import GaussianPrior
    from diffrestore.solvers.base import ddpm_sigmas

    prior = GaussianPrior.stationary((1, 4, 4), length_scale=1.0, std=0.5, jitter=0.01)
    prior.sigma_max = 80.0
    seen: list[float] = []
    denoise = prior.denoise
    prior.denoise = lambda x, sigma: seen.append(float(sigma)) or denoise(x, sigma)  # type: ignore[method-assign]
    problem = Problem(build_operator("identity", (1, 4, 4)), GaussianNoise(0.05), torch.zeros(1, 1, 4, 4))
    for name in ("dps", "mcg"):
        seen.clear()
        get_solver(name, "fast").run(prior, problem, generator=gen(0))
        assert len(seen) == 100 and seen[0] == pytest.approx(80.0)
        assert all(a > b for a, b in itertools.pairwise(seen)), "a noise level repeats"
    assert torch.equal(ddpm_sigmas(1000, sigma_max=157.5), ddpm_sigmas(1000))
    covering = get_solver("dps", "paper").sigma_schedule(GaussianPrior.stationary((1, 4, 4)))  # sigma_max 1000
    assert torch.equal(torch.tensor(covering), ddpm_sigmas(1000))
