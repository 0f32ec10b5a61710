"""Every method checks its whole config before any model loads (``Solver.check_config``, solvers/rules.py): a bad
``--set`` value for any setting of any method is exit 2 with one line naming the setting, and a value of the wrong
type from the Python API's ``solver_options`` is refused the same way. The settings a run used, as configured
(``Solver.settings``) and as derived from the prior and the problem (``Solver.resolved``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_cli_support import write_image

from diffrestore.errors import UsageError
from diffrestore.operators import GaussianNoise, PoissonNoise, Problem, build_operator
from diffrestore.run.preflight import make_solver
from diffrestore.run.solver_settings import FLAG_FIELDS, recorded, typed_settings
from diffrestore.solvers import METHOD_NAMES, get_solver, solver_class
from diffrestore.solvers.methods import METHOD_KINDS

FIXTURES = Path(__file__).parent / "fixtures"
#: a model of each prior kind, known without loading it (the registry's name, or a folder's layout)
MODELS = {"pixel": "builtin", "latent": str(FIXTURES / "latent_digits16"),
          "discrete": str(FIXTURES / "discrete_digits16")}
#: a value each setting refuses, as --set writes it: out of range, not one of the choices, or not of its type
BAD_VALUES = {
    "ode_steps": "0", "langevin_steps": "0", "lr": "-1", "lr_min_ratio": "1.5", "tau": "0", "lr_reference_tau": "-1",
    "sigma_max": "-1", "sigma_min": "0", "ode_sigma_min": "0", "inner": "sideways", "momentum": "1.5",
    "r_t": "wide", "r_t_blend": "1.5", "ode_grid": "midpoint", "rho": "0", "inner_spread": "-1",
    "tweedie_steps": "-1", "tweedie_root_steps": "0", "steps_scale": "0", "grad_clamp": "0",
    "default_guidance": "0", "zeta": "-0.3", "clip_x0": "maybe", "zeta_reference_steps": "0",
    "model_zeta": "maybe", "project": "maybe", "weight": "-1", "betas": "0.9,1.0", "adam_eps": "0",
    "ae_weight": "-1", "decoder_std": "-1", "data_weight": "-1", "interact": "maybe", "inner_steps": "0",
    "kl_weight": "-1", "kl_width": "-1", "lr_width": "-1", "forget": "1.5", "temperature": "0", "truncation": "0",
    "likelihood": "x",
}


def settable_fields(method: str) -> list[str]:
    """The config fields ``--set`` takes for this method (the rest have a flag of their own)."""
    config = solver_class(method).config_class
    return [f.name for f in dataclasses.fields(config) if f.name not in FLAG_FIELDS]


def test_a_bad_value_for_any_setting_of_any_method_is_exit_2_before_any_model_loads(tmp_path, capsys, monkeypatch):
    """One run per method and setting (mmse has none: its one setting is --steps). A model load fails the test:
    the check must come first."""
    import diffrestore.priors.load as load
    from diffrestore.cli import main

    loads: list[str] = []

    def no_model(name: str, **kwargs: object) -> None:
        loads.append(name)
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(load, "load_prior", no_model)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))
    image = write_image(tmp_path / "photo.png")
    wrong: list[str] = []
    for method in METHOD_NAMES:
        missing = [field for field in settable_fields(method) if field not in BAD_VALUES]
        assert not missing, f"give BAD_VALUES a value for {method}'s {missing}"
        for field in settable_fields(method):
            setting = f"{field}={BAD_VALUES[field]}"
            code = main(["inpaint", str(image), "--box", "1,1,2,2", "--method", method, "--set", setting,
                         "--model", MODELS[METHOD_KINDS[method]], "--device", "cpu", "-o", str(tmp_path / "out.png")])
            err = capsys.readouterr().err
            lines = [line for line in err.strip().splitlines() if line.strip()]
            if code != 2 or field not in lines[0] or len(lines) > 2:
                wrong.append(f"{method} --set {setting}: exit {code}, {err.strip()!r}")
    assert not wrong, "\n".join(wrong)
    assert not loads
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("method", [m for m in METHOD_NAMES if settable_fields(m)])
def test_a_value_of_the_wrong_type_from_the_python_api_is_refused(method: str) -> None:
    """solver_options values that are not strings arrive as they are: a list, or a bool where a number belongs
    (Python counts True as 1), must be one line naming the setting, not a failure after the model loads."""
    for field in settable_fields(method):
        with pytest.raises(UsageError, match=rf"^{method}: {field} must be") as error:
            make_solver(method, "fast", None, typed_settings(method, {field: [1]}))
        assert "\n" not in str(error.value)
    numbers = {"dps": "zeta", "mcg": "zeta", "daps": "lr", "latent-daps": "steps_scale", "dwgf": "lr",
               "g2d2": "temperature"}
    with pytest.raises(UsageError, match=rf"{numbers[method]} must be a number"):
        make_solver(method, "fast", None, typed_settings(method, {numbers[method]: True}))


def test_the_presets_pass_their_own_checks_and_direct_configs_are_checked_at_run() -> None:
    """The full check runs in from_preset (every preset passes it) and again in run, for a solver built from a
    config directly (the run-time re-checks it replaced are gone)."""
    from diffrestore.priors.analytic import GaussianPrior
    from diffrestore.solvers.mcg import MCG, MCGConfig

    for method in METHOD_NAMES:
        for preset in ("paper", "fast"):
            get_solver(method, preset).check_config()
    prior = GaussianPrior.stationary((1, 4, 4), length_scale=1.0, std=0.5, jitter=0.01)
    op = build_operator("inpaint", (1, 4, 4), fraction=0.5, generator=torch.Generator().manual_seed(0))
    problem = Problem(op, GaussianNoise(0.05), torch.zeros(1, 1, 4, 4))
    with pytest.raises(UsageError, match="mcg: project must be one of true, false, auto, got 'maybe'"):
        MCG(MCGConfig(steps=2, project="maybe")).run(prior, problem, generator=torch.Generator())


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
