"""``--set KEY=VALUE`` (and the API's ``solver_options``): a solver's hyper-parameters typed by its config, on top
of the preset, refused with one line before any model loads when the key, the value or its range is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import make_tiny_model, run_main, write_image
from PIL import Image

from diffrestore.errors import UsageError
from diffrestore.run.preflight import make_solver
from diffrestore.run.solver_settings import parse_pairs, parse_value, typed_settings


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _daps(model: Path) -> list[str]:
    return ["--model", str(model), "--steps", "3", "--device", "cpu", "--method", "daps", "--seed", "1"]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize(
    ("annotation", "text", "expected"),
    [
        (int, "12", 12),
        (float, "1", 1.0),
        (float, "2.5e-3", 2.5e-3),
        (float | None, "none", None),
        (float | None, "0.5", 0.5),
        (int | None, "NULL", None),
        (bool, "false", False),
        (bool | str, "true", True),
        (bool | str, "least_squares", "least_squares"),
        (str, "langevin", "langevin"),
        (tuple[float, float], "0.9, 0.999", (0.9, 0.999)),
    ],
)
def test_values_are_parsed_as_the_field_type(annotation, text, expected) -> None:
    value = parse_value("key", text, annotation)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "text"),
    [(int, "1.5"), (float, "nan"), (float, "inf"), (float, "abc"), (bool, "maybe"), (float, "none"),
     (tuple[float, float], "0.9"), (str, "")],
)
def test_values_of_the_wrong_type_are_refused(annotation, text) -> None:
    with pytest.raises(UsageError, match="takes"):
        parse_value("key", text, annotation)


def test_pairs_need_an_equals_sign_and_distinct_keys() -> None:
    assert parse_pairs(["inner-spread=1", " r_t = sigma "]) == {"inner_spread": "1", "r_t": "sigma"}
    with pytest.raises(UsageError, match="not KEY=VALUE"):
        parse_pairs(["inner_spread"])
    with pytest.raises(UsageError, match="given twice"):
        parse_pairs(["tau=0.1", "tau=0.2"])


def test_settings_go_on_top_of_the_preset_and_none_unsets_a_preset_value() -> None:
    paper = make_solver("daps", "paper", None)
    assert paper.config.inner_spread == 1.0 and paper.config.ode_steps == 5
    unset = make_solver("daps", "paper", None, typed_settings("daps", {"inner_spread": "none", "ode_steps": "2"}))
    assert unset.config.inner_spread is None and unset.config.ode_steps == 2
    assert unset.config.steps == paper.config.steps and unset.config.langevin_steps == paper.config.langevin_steps


def test_flag_owned_and_unknown_settings_are_refused() -> None:
    with pytest.raises(UsageError, match="use --steps"):
        typed_settings("daps", {"steps": "10"})
    with pytest.raises(UsageError, match="use --guidance"):
        typed_settings("latent-daps", {"guidance": "3"})
    with pytest.raises(UsageError, match="has no setting 'zeta'") as error:
        typed_settings("daps", {"zeta": "1"})
    assert "inner_spread" in str(error.value.hint)
    with pytest.raises(UsageError, match="has no setting") as error:
        typed_settings("mmse", {"tau": "1"})
    assert "takes no --set settings" in str(error.value.hint)


def test_a_setting_changes_the_run_and_the_summary_records_it(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    plain = run_main(["denoise", image, *_daps(model), "-o", tmp_path / "plain.png"], capsys)
    mean = run_main(["denoise", image, *_daps(model), "--set", "inner_spread=0", "-o", tmp_path / "mean.png"],
                    capsys)
    drawn = run_main(["denoise", image, *_daps(model), "--set", "inner_spread=1", "--set", "r_t=sigma",
                      "-o", tmp_path / "drawn.png", "--json"], capsys)
    assert plain.code == mean.code == drawn.code == 0, (plain.err, mean.err, drawn.err)
    # the fast preset's inner step on Gaussian noise is the mean (spread 0): --set 0 is the same run, 1 is not
    assert np.array_equal(_pixels(tmp_path / "plain.png"), _pixels(tmp_path / "mean.png"))
    assert np.abs(_pixels(tmp_path / "plain.png") - _pixels(tmp_path / "drawn.png")).max() > 0
    summary = json.loads(drawn.out)
    assert summary["settings"] == {"inner_spread": 1.0, "r_t": "sigma"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "inner_spread=-1"], "inner_spread must be >= 0"),
        (["--set", "inner_spread=wide"], "inner_spread takes a finite number or none"),
        (["--set", "r_t=sigm"], "r_t must be one of"),
        (["--set", "zeta=1"], "method daps has no setting 'zeta'"),
        (["--set", "steps=4"], "use --steps"),
        (["--set", "inner_spread"], "not KEY=VALUE"),
        (["--set", "sigma_min=5", "--set", "sigma_max=1"], "must be above sigma_min"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2_before_any_output(tmp_path, capsys, model, flags, message) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, *_daps(model), *flags], capsys)
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) <= 2  # the error and its hint
    assert not (tmp_path / "photo_denoise.png").exists()


def test_the_python_api_takes_solver_options(tmp_path, model) -> None:
    import diffrestore

    image = write_image(tmp_path / "photo.png")
    kwargs = {"model": str(model), "steps": 3, "device": "cpu", "seed": 1, "noise_sigma": 0.1}
    plain = diffrestore.restore(image, "denoise", **kwargs).image
    drawn = diffrestore.restore(image, "denoise", solver_options={"inner_spread": 1.0, "r_t": "sigma"}, **kwargs).image
    parsed = diffrestore.restore(image, "denoise", solver_options={"inner_spread": "1", "r_t": "sigma"}, **kwargs).image
    assert not np.array_equal(np.asarray(plain), np.asarray(drawn))
    assert np.array_equal(np.asarray(drawn), np.asarray(parsed))
    with pytest.raises(UsageError, match="has no setting"):
        diffrestore.restore(image, "denoise", solver_options={"nope": 1}, **kwargs)


def test_the_tweedie_rule_is_refused_where_it_does_not_apply(tmp_path, capsys, model) -> None:
    """r_t=tweedie solves a Gaussian inner target: a nonlinear operator is one line before any output, as is a
    latent solver (its own inner loop has no such step) and a negative CG budget."""
    image = write_image(tmp_path / "photo.png")
    nonlinear = run_main(["phase-retrieval", image, *_daps(model), "--set", "r_t=tweedie"], capsys)
    assert nonlinear.code != 0 and "needs a linear operator and Gaussian noise" in nonlinear.err
    with pytest.raises(UsageError, match="pixel DAPS"):
        make_solver("latent-daps", "fast", None, typed_settings("latent-daps", {"r_t": "tweedie"}))
    with pytest.raises(UsageError, match="tweedie_steps must be >= 0"):
        make_solver("daps", "fast", None, typed_settings("daps", {"r_t": "tweedie", "tweedie_steps": "-1"}))
    drawn = run_main(["denoise", image, *_daps(model), "--set", "r_t=tweedie", "--set", "inner_spread=1",
                      "-o", tmp_path / "t.png"], capsys)
    assert drawn.code == 0, drawn.err


def test_network_calls_count_the_tweedie_products() -> None:
    """The cost unit of the benchmarks: 1 call for x0_hat, 1 + tweedie_steps for the CG solve, and
    tweedie_root_steps more when the step is drawn."""
    settings = typed_settings("daps", {"r_t": "tweedie"})
    assert make_solver("daps", "fast", None, settings).network_calls() == 100 * (1 + 1 + 2)
    drawn = typed_settings("daps", {"r_t": "tweedie", "inner_spread": "1", "tweedie_root_steps": "6"})
    assert make_solver("daps", "fast", None, drawn).network_calls() == 100 * (1 + 1 + 2 + 6)
    assert make_solver("daps", "fast", None).network_calls() == 100


def test_latent_daps_lists_only_the_settings_it_uses() -> None:
    # LatentDAPS inherited DAPS's config and took (and listed) inner_spread and tweedie_* without ever reading them.
    for unused in ("inner_spread", "tweedie_steps", "tweedie_root_steps"):
        with pytest.raises(UsageError, match=f"method latent-daps has no setting '{unused}'") as error:
            typed_settings("latent-daps", {unused: "1"})
        assert "inner_spread" not in str(error.value.hint) and "tweedie" not in str(error.value.hint)
    assert typed_settings("latent-daps", {"langevin_steps": "3"}) == {"langevin_steps": 3}
