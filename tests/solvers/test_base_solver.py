"""diffrestore.solvers.base: the settings a run used, as configured (``Solver.settings``) and as derived from
the prior and the problem (``Solver.resolved``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.operators import GaussianNoise, PoissonNoise, Problem, build_operator
from diffrestore.run.preflight import make_solver
from diffrestore.run.solver_settings import recorded, typed_settings
from diffrestore.solvers import METHOD_NAMES, get_solver, solver_class

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: a model of each prior kind, known without loading it (the registry's name, or a folder's layout)
MODELS = {"pixel": "builtin", "latent": str(FIXTURES / "latent_digits16"),
          "discrete": str(FIXTURES / "discrete_digits16")}


def _sr_problem(shape: tuple[int, int, int] = (3, 8, 8), noise: object = None) -> Problem:
    op = build_operator("sr", shape, factor=2)
    return Problem(op, noise or GaussianNoise(0.025), torch.zeros(1, shape[0], shape[1] // 2, shape[2] // 2))


def test_settings_are_every_field_as_configured_and_json_friendly() -> None:
    for method in METHOD_NAMES:
        solver = get_solver(method, "fast")
        settings = solver.settings()
        assert list(settings) == [f.name for f in dataclasses.fields(solver.config)], method
        assert json.loads(json.dumps(settings)) == settings, method
    dwgf = make_solver("dwgf", "fast", None, typed_settings("dwgf", {"betas": "0.8,0.99"}))
    assert dwgf.settings()["betas"] == [0.8, 0.99] and dwgf.settings()["steps"] == 100
    assert recorded(dwgf, {"betas": "0.8,0.99"}) == {"settings": {"betas": [0.8, 0.99]}}  # the summary's --set
    assert recorded(dwgf, {}) == {}
    daps = make_solver("daps", "paper", None, typed_settings("daps", {"inner_spread": "none"}))
    assert daps.settings()["inner_spread"] is None and daps.settings()["ode_steps"] == 5


def test_latent_daps_lists_only_the_settings_it_reads() -> None:
    """LatentDAPS composes the annealing's settings; pixel DAPS's own (the inner mean, the Tweedie covariance)
    are not its settings."""
    latent = set(solver_class("latent-daps").config_class.__dataclass_fields__)
    for pixel_only in ("inner_spread", "tweedie_steps", "tweedie_root_steps"):
        assert pixel_only not in latent
        with pytest.raises(UsageError, match=f"method latent-daps has no setting '{pixel_only}'"):
            typed_settings("latent-daps", {pixel_only: "1"})
    assert {"grad_clamp", "steps_scale", "r_t_blend", "ode_grid", "rho"} <= latent


def test_dps_resolves_the_zeta_its_model_recommends_scaled_to_the_image_and_steps() -> None:
    """recommended.dps_zeta measured at 4x the values: the step is scaled by sqrt(1/4), then by 1000 / steps."""
    shape = (3, 8, 8)
    prior = SimpleNamespace(sigma_max=80.0, clip_range=(-1.0, 1.0),
                            recommended={"dps_zeta": {"superres": 2.0}, "dps_zeta_pixels": 4 * 3 * 8 * 8})
    for method in ("dps", "mcg"):
        resolved = get_solver(method, "fast").resolved(prior, shape, _sr_problem(shape))
        assert resolved["zeta"] == pytest.approx(2.0 * 0.5 * 10) and resolved["zeta_source"] == "model"
        assert resolved["sigma_max"] == pytest.approx(80.0) and resolved["clip_x0"] is True
        paper = get_solver(method, "paper").resolved(prior, shape, _sr_problem(shape))
        assert paper["zeta"] == pytest.approx(0.3) and paper["zeta_source"] == "task"
        assert json.loads(json.dumps(resolved)) == resolved
    assert get_solver("mcg", "fast").resolved(prior, shape, _sr_problem(shape))["project"] is False  # bicubic SR
    assert "zeta" not in get_solver("dps", "fast").resolved(prior, shape)  # the task decides it


def test_daps_resolves_its_inner_step_rule_and_lr() -> None:
    from diffrestore.priors.analytic import GaussianPrior

    prior = GaussianPrior.stationary((3, 8, 8), length_scale=1.0, std=0.5, jitter=0.01)
    fast = get_solver("daps", "fast").resolved(prior, (3, 8, 8), _sr_problem())
    assert fast["inner"] == "exact" and fast["inner_spread"] == 0.0 and fast["r_t"] == "sigma"
    assert fast["tau"] == pytest.approx(0.05) and "lr" not in fast  # the exact step takes no lr
    assert fast["sigma_min"] == pytest.approx(0.01)
    poisson = get_solver("daps", "fast").resolved(prior, (3, 8, 8), _sr_problem(noise=PoissonNoise(100.0)))
    assert poisson["inner"] == "langevin" and poisson["inner_spread"] == 1.0
    assert poisson["lr_source"] == "task" and poisson["lr"] > 0
    tweedie = get_solver("daps", "fast", r_t="tweedie").resolved(prior, (3, 8, 8), _sr_problem())
    assert tweedie["inner"] == "tweedie"


def test_the_latent_and_discrete_methods_resolve_without_the_network(monkeypatch) -> None:
    """On the tiny fixtures: what the run derives from the model (guidance, shapes, timesteps, the task's
    settings), with every network call failing the test."""
    from diffrestore.priors.load import load_prior

    latent = load_prior(MODELS["latent"], offline=True)
    discrete = load_prior(MODELS["discrete"], offline=True)
    for prior in (latent, discrete):
        monkeypatch.setattr(type(prior), "denoise", lambda *a, **k: pytest.fail("network call"), raising=False)
        monkeypatch.setattr(type(prior), "condition", lambda *a, **k: pytest.fail("text encoder"), raising=False)
    problem = _sr_problem((1, 16, 16))
    dwgf = get_solver("dwgf", "fast").resolved(latent, (1, 16, 16), problem)
    assert dwgf["lr"] == 1.0 and dwgf["betas"] == [0.9, 0.999] and dwgf["guidance"] == 1.0
    assert dwgf["timesteps"][0] == int(latent.alphas_cumprod.numel()) - 1
    daps = get_solver("latent-daps", "fast").resolved(latent, (1, 16, 16), problem)
    assert daps["inner_steps"] >= 1 and daps["lr"] > 0 and len(daps["latent_shape"]) == 3
    g2d2 = get_solver("g2d2", "fast", steps=4).resolved(discrete, (1, 16, 16), problem)
    assert g2d2["process"] == "star" and g2d2["likelihood"] == "norm" and g2d2["lr"] == 10.0
    assert json.loads(json.dumps([dwgf, daps, g2d2])) == [dwgf, daps, g2d2]
