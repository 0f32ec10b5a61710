"""One random stream per image: an image's result never depends on what it is batched with, its position, the
batch size or (later) the process that restores it. Also: Poisson weights are per image."""

from __future__ import annotations

import pytest
import torch
from cli_support import run_main, write_image
from diffusers import DDPMScheduler, UNet2DModel

from diffrestore import tasks
from diffrestore.operators import PoissonNoise, Problem, build_operator
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior
from diffrestore.run import engine, runtime
from diffrestore.solvers import get_solver
from diffrestore.solvers.base import data_gradient, residual_norms

FEW_STEPS = {"dps": {"steps": 4}, "mcg": {"steps": 4}, "daps": {"steps": 4, "ode_steps": 1, "langevin_steps": 3}}


@pytest.fixture(scope="module")
def prior() -> DiffusersPixelPrior:
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    return DiffusersPixelPrior(unet, DDPMScheduler(num_train_timesteps=1000), native_size=None)


def _images(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(42)
    return [torch.rand(1, 3, 8, 8, generator=g) * 2 - 1 for _ in range(n)]


def _restore(prior, method: str, images: list[torch.Tensor], task: str = "inpaint", num_samples: int = 1,
             **task_options) -> list[engine.Restored]:
    resolved = tasks.resolve_task(task, task_options, simulate=True)
    mask = None
    if task == "inpaint":
        mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
        mask[..., 2:6, 3:7] = True
    solver = get_solver(method, "fast", **FEW_STEPS[method])
    return engine.restore_batch(prior, solver, resolved, images, mask=mask, num_samples=num_samples, seed=7)


TASKS = {"inpaint": {}, "superres": {"scale": 2}, "deblur": {"kernel_size": 5, "sigma": 1.0}}


@pytest.mark.parametrize(("method", "task"), [("daps", t) for t in TASKS] + [("dps", "inpaint"), ("mcg", "superres")])
def test_an_image_alone_and_batched_in_another_order_is_bitwise_identical(prior, method: str, task: str) -> None:
    a, b, c = _images(3)
    [alone] = _restore(prior, method, [a], task=task, **TASKS[task])
    batched = _restore(prior, method, [c, a, b], task=task, **TASKS[task])
    assert torch.equal(alone.image, batched[1].image)
    assert torch.equal(alone.measurement, batched[1].measurement)  # the simulated noise is the image's own too
    assert not torch.equal(batched[0].image, batched[2].image)  # different images still get different streams


def test_sample_k_does_not_depend_on_how_many_samples_are_drawn(prior) -> None:
    [a] = _images(1)
    [one] = _restore(prior, "daps", [a], num_samples=1)
    [four] = _restore(prior, "daps", [a], num_samples=4)
    assert torch.equal(one.samples[0], four.samples[0])
    assert four.std is not None and float(four.std.max()) > 0  # the four samples differ


def test_cli_results_do_not_depend_on_batch_size_or_folder(tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        write_image(folder / name, size=(16, 12), seed=i)
    common = ["--box", "4,3,6,5", "--steps", "3", "--seed", "5", "--device", "cpu", "--progress", "none"]
    assert run_main(["inpaint", folder, "-o", tmp_path / "batched", "--batch-size", "3", *common], capsys).code == 0
    assert run_main(["inpaint", folder, "-o", tmp_path / "single", "--batch-size", "1", *common], capsys).code == 0
    assert run_main(["inpaint", folder / "b.png", "-o", tmp_path / "alone/", *common], capsys).code == 0
    for name in ("a", "b", "c"):
        assert (tmp_path / "batched" / f"{name}_inpaint.png").read_bytes() == \
            (tmp_path / "single" / f"{name}_inpaint.png").read_bytes()
    assert (tmp_path / "alone" / "b_inpaint.png").read_bytes() == (tmp_path / "batched" / "b_inpaint.png").read_bytes()


def test_seeds_of_any_size_are_accepted_and_streams_are_stable() -> None:
    g = runtime.make_generator(2**70)  # torch alone raises a raw OverflowError beyond 64 bits
    assert torch.rand(1, generator=g).shape == (1,)
    identity = runtime.image_identity(torch.zeros(1, 3, 4, 4))
    assert identity == runtime.image_identity(torch.zeros(1, 3, 4, 4))
    assert identity != runtime.image_identity(torch.zeros(1, 3, 4, 5))  # the shape is part of the identity
    first = [torch.rand(2, generator=g) for g in runtime.sample_generators(1, identity, 2)]
    again = [torch.rand(2, generator=g) for g in runtime.sample_generators(1, identity, 2)]
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], first[1])


# --------------------------------------------------------------------------------------------------- Poisson


def _poisson_problem(images: list[torch.Tensor], rate: float = 30.0) -> Problem:
    op = build_operator("identity", (3, 8, 8))
    return Problem(op, PoissonNoise(rate), torch.cat(images))


def test_poisson_weights_are_per_image_for_daps() -> None:
    bright, dark = _images(2)
    dark = dark * 0.05 - 0.95  # a dark image: weights 1 / y are large
    x = torch.zeros(1, 3, 8, 8)
    alone = data_gradient(_poisson_problem([bright]), bright, x, tau=0.1)
    problem = _poisson_problem([bright, dark])
    beside = data_gradient(problem, problem.y, x.expand(2, -1, -1, -1), tau=0.1)
    assert torch.allclose(alone[0], beside[0], rtol=1e-6, atol=0)  # the dark neighbour changes nothing


def test_poisson_guidance_strength_does_not_depend_on_brightness() -> None:
    """The same residual on a uniformly dark and a uniformly bright image gives the same (scale-free) norm."""
    level_dark, level_bright = torch.full((1, 3, 8, 8), -0.8), torch.full((1, 3, 8, 8), 0.6)
    residual = torch.linspace(-0.05, 0.05, 3 * 64).reshape(1, 3, 8, 8)
    problem = _poisson_problem([level_dark, level_bright])
    norms = residual_norms(problem, problem.y, problem.y - residual.expand(2, -1, -1, -1))
    assert torch.allclose(norms[0], norms[1], rtol=1e-5)
    assert torch.allclose(norms[0], residual.norm(), rtol=1e-5)  # uniform weights normalise to 1


@pytest.mark.parametrize("method", ["daps", "dps"])
def test_poisson_restoration_alone_equals_beside_a_dark_image(prior, method: str) -> None:
    bright, dark = _images(2)
    dark = dark * 0.05 - 0.95
    [alone] = _restore(prior, method, [bright], task="denoise", noise="poisson", poisson_rate=30.0)
    beside = _restore(prior, method, [dark, bright], task="denoise", noise="poisson", poisson_rate=30.0)
    assert torch.equal(alone.image, beside[1].image)
