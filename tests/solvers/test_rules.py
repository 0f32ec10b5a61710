"""Every method checks its whole config before any model loads (``Solver.check_config``, solvers/rules.py): a bad
``--set`` value for any setting of any method is exit 2 with one line naming the setting, a value of the wrong
type from the Python API's ``solver_options`` is refused the same way, and every preset passes its own checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from cli_support import write_image

from diffrestore.errors import UsageError
from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.run.preflight import make_solver
from diffrestore.run.solver_settings import FLAG_FIELDS, typed_settings
from diffrestore.solvers import METHOD_NAMES, get_solver, solver_class
from diffrestore.solvers.methods import METHOD_KINDS

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: a model of each prior kind, known without loading it (the registry's name, or a folder's layout)
MODELS = {"pixel": "builtin", "none": "builtin", "latent": str(FIXTURES / "latent_digits16"),
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
    "likelihood": "x", "filter": "sideways", "relaxation": "2", "sart_sweeps": "-1",
    "ct_loop": "maybe", "ct_steps": "0", "ct_snr": "-1", "ct_weight": "-1", "ct_lambda_start": "2",
    "ct_lambda_end": "-0.1", "tolerance": "-1", "wavelet": "sideways", "levels": "0",
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
               "g2d2": "temperature", "sart": "relaxation", "tv": "weight"}
    if method not in numbers:  # fbp: a filter name only
        return
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
