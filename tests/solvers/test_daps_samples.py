"""DAPS's inner step follows the run's sample count: one sample (-n 1) takes the Gaussian inner target's
mean, the sharpest single restoration; several (-n N, N > 1) draw it, so that their spread, the std map, is the
posterior's and not a fraction of it; ``--set inner_spread=...`` overrides the rule either way. The count reaches
the solver's config from -n (``methods.sample_settings`` in ``preflight``), and the run's summary shows it
("solver": num_samples; "resolved": inner_spread and the inner sampler)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from diffrestore import api, tasks
from diffrestore.errors import UsageError
from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.analytic import GaussianPrior
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior
from diffrestore.run import engine
from diffrestore.run.options import RunOptions
from diffrestore.run.preflight import validate
from diffrestore.solvers import get_solver

SHAPE = (1, 8, 8)
#: the fast preset, shortened (the spread's ratio below does not need its 100 steps)
FEW = {"steps": 30, "langevin_steps": 20}
SAMPLES = 32


@pytest.fixture(scope="module")
def gaussian_case():
    """A Gaussian prior, random inpainting of half the pixels, y repeated SAMPLES times, one generator per item."""
    prior = GaussianPrior.stationary(SHAPE, length_scale=1.5, std=0.5, jitter=0.01)
    x = prior.sample(1, torch.Generator().manual_seed(0))
    op = build_operator("inpaint", SHAPE, generator=torch.Generator().manual_seed(1), fraction=0.5)
    noise = GaussianNoise(0.025)
    with torch.no_grad():
        y = noise.sample(op(x), torch.Generator().manual_seed(2))
    return prior, Problem(op, noise, y.repeat(SAMPLES, 1, 1, 1))


def _run(solver, case) -> torch.Tensor:
    prior, problem = case
    return solver.run(prior, problem, generator=[torch.Generator().manual_seed(k) for k in range(SAMPLES)])


def _spread(samples: torch.Tensor) -> float:
    return float(samples.flatten(1).std(0).mean())


def test_one_sample_takes_the_inner_mean_as_before(gaussian_case) -> None:
    solver = get_solver("daps", "fast", **FEW)
    assert solver.config.num_samples == 1 and solver.config.inner_spread is None
    resolved = solver.resolved(gaussian_case[0], SHAPE, gaussian_case[1])
    assert resolved["inner_spread"] == 0.0 and resolved["inner"] == "exact"
    assert torch.equal(_run(solver, gaussian_case), _run(get_solver("daps", "fast", **FEW, inner_spread=0.0),
                                                         gaussian_case))


def test_several_samples_draw_the_inner_step_and_spread_wider(gaussian_case) -> None:
    """The measured std ratios to the exact posterior (docs/benchmarks.md): the mean about 0.75, the draw about
    1.1 on inpainting; here the draw's samples must spread clearly wider than the mean's."""
    drawn = get_solver("daps", "fast", **FEW, num_samples=4)
    resolved = drawn.resolved(gaussian_case[0], SHAPE, gaussian_case[1])
    assert resolved["inner_spread"] == 1.0 and resolved["inner"] == "langevin"  # the paper's draw at r_t = sigma_t
    mean_step = _spread(_run(get_solver("daps", "fast", **FEW), gaussian_case))
    assert _spread(_run(drawn, gaussian_case)) > 1.25 * mean_step


def test_inner_spread_set_by_hand_wins_over_the_sample_count(gaussian_case) -> None:
    old = _run(get_solver("daps", "fast", **FEW), gaussian_case)
    assert torch.equal(_run(get_solver("daps", "fast", **FEW, num_samples=4, inner_spread=0.0), gaussian_case), old)
    one_drawn = get_solver("daps", "fast", **FEW, inner_spread=1.0)
    assert torch.equal(_run(one_drawn, gaussian_case), _run(get_solver("daps", "fast", **FEW, num_samples=4),
                                                            gaussian_case))
    assert get_solver("daps", "paper").spread_for(gaussian=True) == 1.0  # the paper preset always draws


def test_nonlinear_or_poisson_targets_keep_the_draw_for_one_sample() -> None:
    assert get_solver("daps", "fast").spread_for(gaussian=False) == 1.0


def test_the_tweedie_step_counts_its_root_products_when_several_samples_draw() -> None:
    one = get_solver("daps", "fast", r_t="tweedie")
    several = get_solver("daps", "fast", r_t="tweedie", num_samples=4)
    assert several.extra_calls_per_step() == one.extra_calls_per_step() + int(several.config.tweedie_root_steps)


# ------------------------------------------------------------------------------------ -n reaches the solver
PIXEL = SimpleNamespace(kind="pixel")


@pytest.mark.parametrize(("num_samples", "expected"), [(None, 1), (1, 1), (2, 2), (4, 4)])
def test_validate_gives_daps_the_runs_sample_count(num_samples, expected) -> None:
    job = validate(RunOptions(task="denoise", num_samples=num_samples), prior=PIXEL)
    assert job.solver.config.num_samples == expected == job.num_samples
    assert job.solver.settings()["num_samples"] == expected  # the --json "solver" block


def test_other_methods_have_no_sample_count_setting() -> None:
    job = validate(RunOptions(task="denoise", method="dps", num_samples=4), prior=PIXEL)
    assert "num_samples" not in job.solver.settings()


def test_set_inner_spread_overrides_the_rule_and_num_samples_has_its_flag() -> None:
    job = validate(RunOptions(task="denoise", num_samples=4, solver_options={"inner_spread": "0"}), prior=PIXEL)
    assert job.solver.config.inner_spread == 0.0 and job.solver.spread_for(gaussian=True) == 0.0
    with pytest.raises(UsageError, match="--num-samples"):
        validate(RunOptions(task="denoise", num_samples=4, solver_options={"num_samples": "1"}), prior=PIXEL)


# ------------------------------------------------------------------------------- the run, end to end (API)
@pytest.fixture(scope="module")
def tiny_prior() -> DiffusersPixelPrior:
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    return DiffusersPixelPrior(unet, DDPMScheduler(num_train_timesteps=1000), native_size=None)


def _image(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_summary_shows_the_resolved_inner_step(tiny_prior) -> None:
    common = {"prior": tiny_prior, "steps": 3, "device": "cpu", "noise_sigma": 0.1}
    several = api.restore(_image(1), "denoise", num_samples=2, **common)
    assert several.settings["num_samples"] == 2 and several.settings["inner_spread"] is None
    assert several.resolved["inner_spread"] == 1.0 and several.resolved["inner"] == "langevin"
    one = api.restore(_image(1), "denoise", **common)
    assert one.resolved["inner_spread"] == 0.0 and one.resolved["inner"] == "exact"
    set_by_hand = api.restore(_image(1), "denoise", num_samples=2, solver_options={"inner_spread": 0}, **common)
    assert set_by_hand.resolved["inner_spread"] == 0.0
    assert torch.equal(set_by_hand.samples[0], one.samples[0])  # -n 2 with the mean: sample 1 is -n 1's
    assert not torch.equal(several.samples[0], one.samples[0])  # drawn: sample 1 of -n 2 differs from -n 1


def _restore(prior, images, num_samples: int) -> list[engine.Restored]:
    task = tasks.resolve_task("denoise", {"noise_sigma": 0.1}, simulate=True)
    solver = validate(RunOptions(task="denoise", steps=3, num_samples=num_samples), prior=prior).solver
    return engine.restore_batch(prior, solver, task, images, mask=None, num_samples=num_samples, seed=7)


def test_drawn_samples_keep_the_batch_order_and_count_invariance(tiny_prior) -> None:
    a, b = _image(1), _image(2)
    [alone] = _restore(tiny_prior, [a], 2)
    batched = _restore(tiny_prior, [b, a], 2)
    assert torch.equal(alone.samples, batched[1].samples)  # batch and position do not matter
    [four] = _restore(tiny_prior, [a], 4)
    assert torch.equal(four.samples[:2], alone.samples)  # sample k of -n 4 is sample k of -n 2 (both drawn)
