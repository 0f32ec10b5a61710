"""DWGF from the command line and the engine: particles as samples (-n, its default of 4), bitwise independence
of batching, frozen autoencoder, prompts, any image size, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_main, write_image
from PIL import Image

from diffrestore import registry as reg
from diffrestore.priors import files
from diffrestore.priors.load import load_prior
from diffrestore.priors.tiny import build_tiny
from diffrestore.solvers import get_solver

QUICK = ["--method", "dwgf", "--steps", "3", "--device", "cpu"]
DIGITS = Path(__file__).parents[1] / "fixtures" / "latent_digits16"
needs_transformers = pytest.mark.skipif(not files.transformers_available(), reason="needs transformers")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _digit(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.uniform(0, 1, (16, 16)) > 0.6).astype(np.uint8) * 220
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def test_the_particles_are_the_samples_and_default_to_four(tmp_path, capsys):
    image = _digit(tmp_path / "d.png", 0)
    result = run_main(["superres", image, "--scale", "2", "--simulate", "--model", DIGITS, *QUICK, "--json"], capsys)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    item = summary["items"][0]
    assert summary["method"] == "dwgf" and summary["num_samples"] == 4
    assert len(item["samples"]) == 4 and item["std_map"]
    samples = [np.asarray(Image.open(tmp_path / s), dtype=np.float64) for s in item["samples"]]
    assert not np.array_equal(samples[0], samples[1])  # each particle has its own start and noise
    mean = np.asarray(Image.open(tmp_path / item["output"]), dtype=np.float64)
    assert np.abs(mean - np.mean(samples, axis=0)).max() <= 1.0  # the output is their mean (8-bit rounding)


def test_results_do_not_depend_on_batching(tmp_path, capsys):
    """Images after images in one solver call (each with 2 interacting particles) give the bytes each gives alone."""
    folder = tmp_path / "in"
    for seed in range(3):
        _digit(folder / f"d{seed}.png", seed)
    flags = ["--random-fraction", "0.5", "--model", DIGITS, *QUICK, "-n", "2"]
    assert run_main(["inpaint", folder, *flags, "-o", tmp_path / "batch", "--batch-size", "3"], capsys).code == 0
    assert run_main(["inpaint", folder, *flags, "-o", tmp_path / "single", "--batch-size", "1"], capsys).code == 0
    assert run_main(["inpaint", folder / "d1.png", *flags, "-o", tmp_path / "alone.png"], capsys).code == 0
    for name in ("d1_inpaint.png", "d1_inpaint_s1.png", "d1_inpaint_s2.png", "d1_inpaint_std.png"):
        assert (tmp_path / "batch" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    assert (tmp_path / "batch" / "d1_inpaint.png").read_bytes() == (tmp_path / "alone.png").read_bytes()


def test_the_particles_interact(tmp_path):
    """Two particles of one image are one flow: particle 1 differs from a run where it is alone, and from one where
    the same two particles run independently (interact=False)."""
    from test_quality_digits_pixel import _problem

    prior = load_prior(str(DIGITS))
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4:12, 6:10] = 0.8
    problem = _problem("sr", x)
    pair = type(problem)(operator=problem.operator, noise=problem.noise, y=problem.y.expand(2, -1, -1, -1))

    def run(samples_per_image: int, **over) -> torch.Tensor:
        solver = get_solver("dwgf", "fast", steps=20, **over)
        return solver.run(prior, pair, generator=[torch.Generator().manual_seed(i) for i in range(2)],
                          samples_per_image=samples_per_image)

    together, independent = run(2), run(2, interact=False)
    assert torch.equal(independent, run(1))  # interact=False is the same as two images of one particle
    assert not torch.allclose(together, independent, atol=1e-4)


def test_the_engine_moves_an_images_samples_together():
    """restore_batch hands the solver each image's -n samples as one group: with the interaction on they differ
    from the same run with it off (were the grouping lost, every particle would run alone and both would match)."""
    from diffrestore.run import engine
    from diffrestore.tasks import resolve_task

    prior = load_prior(str(DIGITS))
    image = torch.zeros(1, 1, 16, 16)
    image[..., 3:13, 7:10] = 0.9

    def samples(**over) -> torch.Tensor:
        solver = get_solver("dwgf", "fast", steps=6, **over)
        task = resolve_task("superres", {"scale": 2}, simulate=True)
        [result] = engine.restore_batch(prior, solver, task, [image], mask=None, num_samples=3, seed=1)
        return result.samples

    assert not torch.allclose(samples(), samples(interact=False), atol=1e-4)


def test_the_autoencoder_gets_no_gradients(tmp_path):
    from test_quality_digits_pixel import _problem

    prior = load_prior(str(DIGITS))
    problem = _problem("inpaint", torch.zeros(1, 1, 16, 16))
    get_solver("dwgf", "fast", steps=2).run(prior, problem, generator=[torch.Generator().manual_seed(0)])
    parameters = list(prior.autoencoder.parameters()) + list(prior.unet.parameters())
    assert parameters and all(not p.requires_grad and p.grad is None for p in parameters)
    assert not prior.autoencoder.training


@pytest.mark.parametrize("model", ["digits", "tiny-latent-vq"])
@pytest.mark.parametrize("size", [(13, 11), (40, 24)])
def test_any_image_size(tmp_path, capsys, model, size):
    """Odd sizes are padded to the latent grid and cropped back; sizes past the model's native one (16 px for the
    digits) go through latent tiling; VQ autoencoders (LDM) as well as KL ones."""
    rng = np.random.default_rng(1)
    image = tmp_path / "odd.png"
    pixels = (rng.uniform(0, 1, (size[1], size[0])) > 0.6).astype(np.uint8) * 220
    Image.fromarray(pixels, mode="L").convert("L" if model == "digits" else "RGB").save(image)
    model = str(DIGITS) if model == "digits" else model
    result = run_main(["inpaint", image, "--box", "2,2,5,4", "--model", model, *QUICK, "-n", "2", "--json"], capsys)
    assert result.code == 0, result.err
    if model == str(DIGITS):
        assert (json.loads(result.out)["items"][0].get("tiles", 1) > 1) == (size[0] > 16)
    out = np.asarray(Image.open(tmp_path / "odd_inpaint.png"))
    before = np.asarray(Image.open(image))
    assert out.shape == before.shape
    keep = np.ones(before.shape[:2], dtype=bool)
    keep[2:6, 2:7] = False
    assert np.array_equal(before[keep], out[keep])  # a real photo keeps its known pixels


@needs_transformers
def test_prompts_reach_the_network(tmp_path, capsys, tmp_path_factory):
    sd = build_tiny(reg.load_registry().get("tiny-latent-kl"), tmp_path_factory.mktemp("sd") / "sd")
    image = write_image(tmp_path / "small.png", size=(16, 12))
    base = ["superres", image, "--scale", "2", "--model", str(sd), *QUICK, "-n", "2"]
    a = run_main([*base, "-o", tmp_path / "a.png"], capsys)
    b = run_main([*base, "-o", tmp_path / "b.png", "--prompt", "a red car", "--guidance", "3"], capsys)
    assert a.code == b.code == 0, a.err + b.err
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


# ----------------------------------------------------------------------------------------------- bad input


def test_dwgf_on_a_pixel_prior_names_the_methods_that_fit(tmp_path, capsys):
    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = run_main(["inpaint", image, "--box", "2,2,4,4", *QUICK], capsys)
    assert result.code == 2
    line = _one_line(result.err)
    assert "method dwgf needs a latent prior" in line and "daps" in line and "dps" in line
    assert not (tmp_path / "photo_inpaint.png").exists()


def test_too_many_steps_and_a_prompt_on_an_unconditional_model(tmp_path, capsys):
    image = _digit(tmp_path / "d.png", 0)
    result = run_main(["denoise", image, "--model", DIGITS, *QUICK, "--steps", "999"], capsys)
    assert result.code == 2 and "at most 998" in _one_line(result.err)
    result = run_main(["denoise", image, "--model", DIGITS, *QUICK, "--prompt", "a seven"], capsys)
    assert result.code == 2 and "unconditional: it takes no prompt or guidance" in _one_line(result.err)


def test_half_precision_networks_keep_the_particles_in_float32():
    """UNet and autoencoder in a 16-bit dtype (fp16 on CUDA; bf16 here): the particles, their gradient and the
    output stay float32."""
    from diffrestore.operators import GaussianNoise, Problem, build_operator
    from diffrestore.priors.base import Conditioning

    prior = load_prior("tiny-latent-vq", offline=True, dtype=torch.bfloat16)
    x = torch.rand(2, 3, 12, 20) * 2 - 1
    op = build_operator("sr", (3, 12, 20), factor=2)
    problem = Problem(operator=op, noise=GaussianNoise(0.01), y=op(x))
    solver = get_solver("dwgf", "fast", steps=2)
    z = torch.randn(2, *prior.latent_shape(prior.padded_shape((3, 12, 20))))
    canvas = prior.padded_shape((3, 12, 20))
    grad = solver.flow_gradient(prior, problem, problem.y, z, 500, torch.randn_like(z), torch.zeros(2, *canvas),
                                cond=Conditioning(), group=2, measured=torch.full((2,), 90.0), size=(12, 20))
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    out = solver.run(prior, problem, generator=[torch.Generator().manual_seed(i) for i in range(2)],
                     samples_per_image=2)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 12, 20) and torch.isfinite(out).all()
