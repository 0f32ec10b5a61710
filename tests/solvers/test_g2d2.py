"""G2D2 (solvers/g2d2.py) on the tiny random VQ-Diffusion components (registry ``tiny-discrete-vq``: 16 px
images, 8 x 8 tokens, 12 codes, 12 timesteps): grids and schedules, the star step's counts on strided grids, both
processes end to end, images smaller than the native size, no gradient into the networks, the CLI and its
one-line errors. Quality on a trained prior: tests/test_quality_digits_g2d2.py; closed forms:
tests/solvers/test_g2d2_closed_form.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_main
from PIL import Image

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors import files
from diffrestore.solvers import get_solver
from diffrestore.solvers.g2d2 import log_linear, mask_counts, timesteps_for

needs_transformers = pytest.mark.skipif(not files.transformers_available(), reason="needs transformers")
QUICK = ["--model", "tiny-discrete-vq", "--method", "g2d2", "--steps", "3", "--device", "cpu"]


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path_factory.getbasetemp() / "g2d2-cache"))


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    import os

    os.environ["DIFFRESTORE_CACHE"] = str(tmp_path_factory.getbasetemp() / "g2d2-cache")
    from diffrestore.priors.load import load_prior

    return load_prior("tiny-discrete-vq", offline=True)


def test_grids_and_schedules():
    assert timesteps_for(100, 100) == list(range(99, -1, -1))  # the official grid
    strided = timesteps_for(25, 100)
    assert len(strided) == 25 and strided[0] == 96 and strided[-1] == 0
    with pytest.raises(Exception, match="1 to 100 steps"):
        timesteps_for(101, 100)
    sr = log_linear(10.0, 2.0, 100)
    assert sr[0] == pytest.approx(100.0) and sr[-1] == pytest.approx(1.0)
    blur = log_linear(15.0, 1.0, 100)
    assert blur[0] == pytest.approx(47.43, abs=0.01) and blur[-1] == pytest.approx(4.743, abs=0.001)


def test_the_star_step_reads_the_schedule_at_the_next_timestep_used():
    """The official code reads gamma_bar at t - 1 whatever the grid; on a strided grid that masks far too many."""
    gamma = torch.linspace(0.0, 1.0, 10)
    grid = [9, 6, 3, 0]
    assert mask_counts(gamma, grid, 64) == [int(64 * float(gamma[6])), int(64 * float(gamma[3])), 0, 0]
    official = [int(64 * float(gamma[t - 1])) for t in grid[:-1]] + [0]
    assert mask_counts(gamma, grid, 64) != official
    assert mask_counts(gamma, list(range(9, -1, -1)), 64)[:-1] == official[:1] + [
        int(64 * float(gamma[t - 1])) for t in range(8, 0, -1)]  # on the full grid the two agree


@needs_transformers
@pytest.mark.parametrize("process", ["star", "markov"])
def test_both_processes_restore_any_size_up_to_the_native_one(prior, process):
    x = torch.rand(2, 3, 12, 14, generator=torch.Generator().manual_seed(0)) * 2 - 1
    op = build_operator("sr", (3, 12, 14), factor=2)
    problem = Problem(operator=op, noise=GaussianNoise(0.01), y=op(x))
    solver = get_solver("g2d2", "fast", steps=12 if process == "markov" else 4, inner_steps=2, process=process)
    solver.prepare(prior)
    out = solver.run(prior, problem, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert out.shape == (2, 3, 12, 14) and out.dtype == torch.float32 and torch.isfinite(out).all()
    for network in (prior.transformer, prior.vqvae):
        assert all(p.grad is None and not p.requires_grad for p in network.parameters())


@needs_transformers
def test_the_inner_optimisation_fits_the_measurement(prior):
    """RAdam on the logits lowers the residual of the soft decode (gradients through the decoder only)."""
    x = prior.decode_tokens(torch.randint(0, 12, (1, 64), generator=torch.Generator().manual_seed(1)))
    op = build_operator("sr", (3, 16, 16), factor=2)
    y = op(x.detach())
    problem = Problem(operator=op, noise=GaussianNoise(0.01), y=y)
    solver = get_solver("g2d2", "paper", inner_steps=40, kl_weight=0.0)
    cond = prior.condition()
    with torch.no_grad():
        logp = prior.log_p0(torch.full((1, 64), prior.mask_id), 11, cond)

    def residual(logits: torch.Tensor) -> float:
        return float((y - op(prior.decode_soft(logits.softmax(dim=1).transpose(1, 2)))).norm())

    fitted = solver.optimise(prior, problem, y, logp, logp, 1.0, 0.0, torch.Generator().manual_seed(2), (16, 16))
    assert torch.allclose(torch.logsumexp(fitted, dim=1), torch.zeros(1, 64), atol=1e-4)
    assert residual(fitted) < 0.7 * residual(logp)


@needs_transformers
def test_the_command_line(tmp_path: Path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.uniform(0, 255, (16, 16, 3)).astype(np.uint8)).save(folder / f"p{i}.png")
    flags = ["--simulate", "--kernel-size", "5", *QUICK, "-n", "2"]
    batch = run_main(["deblur", folder, *flags, "-o", tmp_path / "batch", "--batch-size", "2", "--json"], capsys)
    assert batch.code == 0, batch.err
    summary = json.loads(batch.out)
    assert summary["method"] == "g2d2" and len(summary["items"][0]["samples"]) == 2
    alone = run_main(["deblur", folder / "p1.png", *flags, "-o", tmp_path / "alone.png"], capsys)
    assert alone.code == 0, alone.err
    assert (tmp_path / "batch" / "p1_deblur.png").read_bytes() == (tmp_path / "alone.png").read_bytes()
    markov = run_main(["deblur", folder / "p0.png", *flags, "--g2d2-process", "markov", "-o", tmp_path / "m.png"],
                      capsys)
    assert markov.code == 2 and "markov walks every timestep: give --steps 12" in markov.err
    assert len(markov.err.strip().splitlines()) == 1 and not (tmp_path / "m.png").exists()
    big = tmp_path / "big.png"
    Image.fromarray(rng.uniform(0, 255, (24, 20, 3)).astype(np.uint8)).save(big)
    result = run_main(["deblur", big, *flags], capsys)
    assert result.code != 0 and "up to its native size 16x16 but the image is 20x24" in result.err


def test_the_process_flag_belongs_to_g2d2(tmp_path: Path, capsys):
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    result = run_main(["denoise", image, "--g2d2-process", "star", "--device", "cpu"], capsys)
    assert result.code == 2 and "--g2d2-process: method daps has no such setting" in result.err
