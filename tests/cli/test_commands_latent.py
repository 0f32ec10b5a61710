"""Latent priors from the command line and the loaders: --method daps / latent-daps on tiny Stable Diffusion and LDM
components (registry ``tiny`` family and ``--model DIR`` pipeline folders), prompts, odd image sizes, outputs, and
the one-line errors for what cannot work."""

from __future__ import annotations

import json
import shutil
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

QUICK = ["--steps", "2", "--device", "cpu"]
needs_transformers = pytest.mark.skipif(not files.transformers_available(), reason="needs transformers")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return build_tiny(reg.load_registry().get("tiny-latent-kl"), tmp_path_factory.mktemp("sd") / "sd")


@pytest.fixture(scope="module")
def ldm_folder(tmp_path_factory) -> Path:
    return build_tiny(reg.load_registry().get("tiny-latent-vq"), tmp_path_factory.mktemp("ldm") / "ldm")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("model", ["tiny-latent-vq", "ldm_folder"])
def test_daps_on_a_latent_prior_runs_latent_daps_at_any_size(model, tmp_path, capsys, request):
    """An odd-sized image (not a multiple of the latent grid) comes back at its own size; -n 2 writes both samples
    and the std map; the JSON says the method that ran."""
    model = str(request.getfixturevalue(model)) if model.endswith("_folder") else model
    image = write_image(tmp_path / "photo.png", size=(30, 21))
    result = run_main(["inpaint", image, "--box", "4,4,8,6", "--model", model, *QUICK, "-n", "2", "--json"], capsys)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["method"] == "latent-daps" and summary["done"] == 1
    item = summary["items"][0]
    out = Image.open(tmp_path / item["output"])
    assert out.size == (30, 21)
    assert len(item["samples"]) == 2 and item["std_map"]
    # the known pixels of a real photo are kept exactly
    before = np.asarray(Image.open(image)).astype(int)
    after = np.asarray(out).astype(int)
    keep = np.ones((21, 30), bool)
    keep[4:10, 4:12] = False
    assert np.array_equal(before[keep], after[keep])


@needs_transformers
def test_prompt_and_guidance_on_stable_diffusion(sd_folder, tmp_path, capsys):
    image = write_image(tmp_path / "small.png", size=(16, 12))
    base = ["superres", image, "--scale", "2", "--model", str(sd_folder), "--method", "latent-daps", *QUICK]
    a = run_main([*base, "-o", tmp_path / "a.png"], capsys)
    b = run_main([*base, "-o", tmp_path / "b.png", "--prompt", "a red car", "--guidance", "3"], capsys)
    c = run_main([*base, "-o", tmp_path / "c.png", "--prompt", "a red car", "--guidance", "3",
                  "--negative-prompt", "blurry"], capsys)
    assert a.code == b.code == c.code == 0, a.err + b.err + c.err
    pixels = [np.asarray(Image.open(tmp_path / f"{k}.png")) for k in "abc"]
    assert pixels[0].shape == (24, 32, 3)
    assert not np.array_equal(pixels[0], pixels[1])  # the prompt reaches the network
    assert not np.array_equal(pixels[1], pixels[2])  # so does the negative prompt


def test_latent_results_do_not_depend_on_batching(ldm_folder, tmp_path, capsys):
    """Two images restored in one batch give the bytes each gives alone (per-item decoder calls on the CPU)."""
    folder = tmp_path / "in"
    for seed in range(2):
        write_image(folder / f"p{seed}.png", seed=seed, size=(16, 16))
    flags = ["--random-fraction", "0.5", "--model", str(ldm_folder), *QUICK]
    assert run_main(["inpaint", folder, *flags, "-o", tmp_path / "batch", "--batch-size", "2"], capsys).code == 0
    assert run_main(["inpaint", folder / "p1.png", *flags, "-o", tmp_path / "alone.png"], capsys).code == 0
    assert (tmp_path / "batch" / "p1_inpaint.png").read_bytes() == (tmp_path / "alone.png").read_bytes()


def test_v_prediction_stable_diffusion_folder(sd_folder, tmp_path):
    """An SD 2.x-style folder (v-prediction scheduler) loads through --model DIR and denoises as
    x0 = sqrt(ab) z_t - sqrt(1 - ab) v."""
    folder = tmp_path / "sd-v"
    shutil.copytree(sd_folder, folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "prediction_type": "v_prediction"}))
    prior = load_prior(str(folder))
    assert prior.vp.prediction_type == "v_prediction"
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    embeddings = torch.randn(1, 77, prior.unet.config.cross_attention_dim)
    from diffrestore.priors.base import Conditioning

    sigma = 1.5
    with torch.no_grad():
        x0 = prior.denoise(z, sigma, Conditioning(embeddings=embeddings))
        ab = 1 / (1 + sigma**2)
        v = prior.unet(z * ab**0.5, prior.vp.timestep(torch.tensor([sigma])), encoder_hidden_states=embeddings).sample
    assert torch.allclose(x0, ab**0.5 * (z * ab**0.5) - (1 - ab) ** 0.5 * v, atol=1e-5)


# ----------------------------------------------------------------------------------------------- bad input


def test_a_prompt_on_an_unconditional_latent_prior(tmp_path, capsys):
    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = run_main(["denoise", image, "--model", "tiny-latent-vq", "--prompt", "a face", *QUICK], capsys)
    assert result.code == 2
    assert "unconditional: it takes no prompt or guidance" in _one_line(result.err)


def test_a_prompt_with_a_pixel_method(tmp_path, capsys):
    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = run_main(["denoise", image, "--method", "dps", "--guidance", "2", *QUICK], capsys)
    assert result.code == 2
    assert "--guidance: method dps runs on a pixel prior, which takes no prompt" in _one_line(result.err)
    assert not (tmp_path / "photo_denoise.png").exists()


def test_stable_diffusion_without_transformers_says_which_extra(sd_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(files, "transformers_available", lambda: False)
    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = run_main(["denoise", image, "--model", str(sd_folder), *QUICK], capsys)
    assert result.code == 3
    line = _one_line(result.err)
    assert "cannot encode a prompt" in line and "pip install 'diffrestore[text]'" in line


@pytest.mark.parametrize("part", ["unet", "vae", "scheduler"])
def test_a_pipeline_folder_missing_a_component(sd_folder, tmp_path, capsys, part):
    folder = tmp_path / "broken"
    shutil.copytree(sd_folder, folder)
    shutil.rmtree(folder / part)
    image = write_image(tmp_path / "photo.png", size=(16, 16))
    result = run_main(["denoise", image, "--model", str(folder), *QUICK], capsys)
    assert result.code in (2, 3), result.err
    line = _one_line(result.err)
    assert str(folder) in line and part in line


def test_half_precision_networks_keep_the_solver_in_float32():
    """The UNet and autoencoder may run in a 16-bit dtype (fp16 on CUDA; bf16 here, the CPU has no fp16) while the
    latents, the data gradient and the output stay float32."""
    from diffrestore.operators import GaussianNoise, Problem, build_operator
    from diffrestore.solvers import get_solver

    prior = load_prior("tiny-latent-vq", offline=True, dtype=torch.bfloat16)
    assert prior.unet.dtype == torch.bfloat16 and prior.autoencoder.dtype == torch.bfloat16
    x = torch.rand(1, 3, 12, 20) * 2 - 1
    op = build_operator("sr", (3, 12, 20), factor=2)
    problem = Problem(operator=op, noise=GaussianNoise(0.01), y=op(x))
    solver = get_solver("latent-daps", "fast", steps=2)
    term = solver._data_term(prior, problem, problem.y, (12, 20), 0.02)
    z = torch.randn(1, *prior.latent_shape(prior.padded_shape((3, 12, 20))))
    assert term(z).dtype == torch.float32
    out = solver.run(prior, problem, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 12, 20) and torch.isfinite(out).all()
