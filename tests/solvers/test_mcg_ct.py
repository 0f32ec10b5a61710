"""MCG's sparse-view CT loop (solvers/mcg_ct.py): selected by --method mcg on the ct task, its schedules, the
unmeasured-view step, determinism, and the data step pulling A x towards y with an analytic Gaussian prior."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from cli_support import make_tiny_model

from diffrestore.cli import main
from diffrestore.errors import UsageError
from diffrestore.operators import ParallelBeamCT, Problem, build_noise, build_operator
from diffrestore.priors.analytic import GaussianPrior
from diffrestore.solvers import get_solver
from diffrestore.solvers.mcg import MCG
from diffrestore.solvers.mcg_ct import (
    UnmeasuredViews,
    full_view_geometry,
    lambda_schedule,
    ve_sigmas,
)

SIDE = 12


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior.stationary((1, SIDE, SIDE), length_scale=2.0, std=0.5, jitter=0.01)


def _problem(prior: GaussianPrior, views: int = 18) -> Problem:
    op = ParallelBeamCT((1, SIDE, SIDE), views=views)
    truth = 0.5 * torch.randn(1, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    return Problem(op, build_noise("none", sigma=0.0), op(truth))


def _residual(problem: Problem, x: torch.Tensor) -> float:
    return float((problem.operator(x) - problem.y).norm() / problem.y.norm())


def test_the_presets_run_the_official_step_counts_on_ct_and_steps_sets_them() -> None:
    assert get_solver("mcg", "paper").ct_settings().steps == 2000  # the code's num_scales
    assert get_solver("mcg", "paper").config.steps == 1000  # photos keep the DDPM loop's 1000
    assert get_solver("mcg", "fast").ct_settings().steps == 100
    assert get_solver("mcg", "paper", steps=4).ct_settings().steps == 4  # --steps: whichever loop runs
    assert get_solver("mcg", "paper", steps=4, ct_steps=7).ct_settings().steps == 7
    loop = get_solver("mcg", "paper").ct_settings()
    assert (loop.snr, loop.weight, loop.lambda_start, loop.lambda_end) == (0.16, 0.1, 1.0, 0.6)


def test_the_schedules_end_where_the_code_says() -> None:
    lam = lambda_schedule(2000, 1.0, 0.6)
    assert lam[0] == 1.0 and lam[-1] == pytest.approx(0.6, abs=1e-12) and len(lam) == 2000
    assert all(a > b for a, b in itertools.pairwise(lam))  # linear, falling
    assert lambda_schedule(4, 1.0, 0.6) == pytest.approx([1.0, 1.0 - 0.4 / 3, 1.0 - 0.8 / 3, 0.6])
    sig = ve_sigmas(2000, 0.01, 378.0)
    assert sig[0] == pytest.approx(378.0) and sig[-1] == 0.0 and len(sig) == 2001
    assert sig[-2] == pytest.approx(0.01 * (378 / 0.01) ** 1e-5)  # t_min = 1e-5, as sampling_eps
    ratios = [a / b for a, b in itertools.pairwise(sig[:-1])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)  # geometric in sigma


def test_the_full_scan_masks_exactly_the_measured_views() -> None:
    op = ParallelBeamCT((1, SIDE, SIDE), views=18)
    full, mask = full_view_geometry(op)
    assert full.views == 180 and mask.sum() == 18
    assert torch.nonzero(mask).flatten().tolist() == list(range(0, 180, 10))
    # off-grid angles: the grid's views near them make way, the measured ones are appended and marked
    odd = ParallelBeamCT((1, SIDE, SIDE), angles_deg=(0.25, 90.3, 179.9))
    full, mask = full_view_geometry(odd)
    assert full.angles_deg[-3:] == (0.25, 90.3, 179.9) and full.views == 181  # 0 and 90 make way for 3
    assert mask.tolist()[-3:] == [1.0] * 3 and mask.sum() == 3
    assert 0.0 not in full.angles_deg and 90.0 not in full.angles_deg and 91.0 in full.angles_deg


def test_the_unmeasured_view_step_leaves_the_measured_views_out_of_the_sinogram_it_inverts() -> None:
    op = ParallelBeamCT((1, SIDE, SIDE), views=18)
    step = UnmeasuredViews(op)
    g = torch.randn(2, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    sino, whole = step.sinogram(g), step.full(g)
    measured = list(range(0, 180, 10))
    assert sino[..., measured].abs().max() == 0  # exactly: these columns never reach the FBP
    others = [v for v in range(180) if v not in measured]
    assert torch.equal(sino[..., others], whole[..., others])
    assert torch.allclose(step(g), step.full.fbp(whole) - step.full.fbp(whole * (1 - step.keep)), atol=1e-5)
    # every view measured: nothing is left to add
    all_views = UnmeasuredViews(ParallelBeamCT((1, SIDE, SIDE), views=180))
    assert all_views(g).abs().max() == 0


def test_the_data_step_drives_a_x_towards_y(prior) -> None:
    problem = _problem(prior)
    free = get_solver("mcg", "fast", steps=60, ct_lambda_start=0.0, ct_lambda_end=0.0, ct_weight=0.0)
    guided = get_solver("mcg", "fast", steps=60)
    x_free = free.run(prior, problem, generator=torch.Generator().manual_seed(0))
    x_guided = guided.run(prior, problem, generator=torch.Generator().manual_seed(0))
    # measured (seed 0): 1.70 relative without the data and MCG steps, 0.32 with them
    assert _residual(problem, x_free) > 0.7
    assert _residual(problem, x_guided) < 0.3 * _residual(problem, x_free)


def test_same_seed_same_result_and_items_do_not_depend_on_batch_mates(prior) -> None:
    problem = _problem(prior)
    solver = get_solver("mcg", "fast", steps=8)
    a = solver.run(prior, problem, generator=torch.Generator().manual_seed(3))
    b = solver.run(prior, problem, generator=torch.Generator().manual_seed(3))
    c = solver.run(prior, problem, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c) and torch.isfinite(a).all()
    two = Problem(problem.operator, problem.noise, problem.y.repeat(2, 1, 1, 1))
    gens = [torch.Generator().manual_seed(3), torch.Generator().manual_seed(9)]
    pair = solver.run(prior, two, generator=gens)
    assert torch.allclose(pair[:1], a, atol=1e-5)  # per-image Langevin steps and norms


def test_the_ct_loop_is_what_runs_on_ct_and_only_there(prior, monkeypatch) -> None:
    import diffrestore.solvers.mcg_ct as mcg_ct

    calls: list[int] = []
    real = mcg_ct.sample
    monkeypatch.setattr(mcg_ct, "sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    problem = _problem(prior, views=6)
    solver = get_solver("mcg", "paper", steps=2)
    solver.run(prior, problem, generator=torch.Generator().manual_seed(0))
    assert calls == [1]
    assert solver.resolved(prior, (1, SIDE, SIDE), problem) == {
        "loop": "ct", "ct_steps": 2, "sigma_max": pytest.approx(1e3), "sigma_min": pytest.approx(1e-3, rel=1e-3),
        "network_calls": 4}
    get_solver("mcg", "paper", steps=2, ct_loop=False).run(prior, problem, generator=torch.Generator())
    op = build_operator("inpaint", (1, SIDE, SIDE), fraction=0.5, generator=torch.Generator().manual_seed(0))
    photo = Problem(op, build_noise("none", sigma=0.0), torch.zeros(1, 1, SIDE, SIDE))
    get_solver("mcg", "paper", steps=2).run(prior, photo, generator=torch.Generator())
    assert calls == [1]


@pytest.mark.parametrize(("field", "value"), [("ct_lambda_start", 2.0), ("ct_snr", -0.1), ("ct_steps", 0),
                                              ("ct_loop", "yes")])
def test_ct_settings_are_checked_before_loading(field: str, value: object) -> None:
    with pytest.raises(UsageError, match=f"mcg: {field}"):
        MCG.from_preset("paper", **{field: value})


def test_mcg_on_the_ct_command_runs_the_ct_loop(tmp_path, capsys) -> None:
    model = make_tiny_model(tmp_path / "tiny1", channels=1)
    yy, xx = np.mgrid[0:16, 0:16]
    slice_ = ((yy - 8) ** 2 + (xx - 7) ** 2 < 30).astype(np.float32) * 0.6
    path = tmp_path / "slice.npy"
    np.save(path, slice_)
    args = ["ct", str(path), "--simulate", "--views", "18", "--model", str(model), "--method", "mcg",
            "--preset", "paper", "--steps", "4", "--device", "cpu", "--seed", "0", "--json"]
    assert main(args) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    text = json.dumps(doc)
    assert '"loop": "ct"' in text and '"ct_steps": 4' in text, text[:2000]
    out = np.load(tmp_path / "slice_ct.npy")
    assert out.shape == (16, 16) and np.isfinite(out).all()
    first = out.copy()
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert np.array_equal(np.load(tmp_path / "slice_ct.npy"), first)  # same seed, same slice
