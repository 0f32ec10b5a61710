"""priors/posterior_rms.py: the denoiser's rms error by sigma (DAPS's r_t = "mmse"), measured and stored."""

from __future__ import annotations

import json
import math

import pytest
import torch
from benchmark_scripts import load_benchmark
from cli_support import make_tiny_model, write_image

from diffrestore.errors import ModelError, UsageError
from diffrestore.priors.analytic import GaussianPrior
from diffrestore.priors.builtin import load_model_dir
from diffrestore.priors.posterior_rms import PosteriorRMS, crops_of, log_grid, measure, table_problem
from diffrestore.solvers import get_solver


def test_interpolation_is_exact_at_the_knots_log_linear_between_and_never_above_sigma():
    table = PosteriorRMS([0.1, 1.0], [0.05, 0.2])
    assert table(0.1) == pytest.approx(0.05) and table(1.0) == pytest.approx(0.2)
    # halfway in log sigma: the geometric mean of the ratios 0.5 and 0.2
    assert table(math.sqrt(0.1)) == pytest.approx(math.sqrt(0.1) * math.sqrt(0.5 * 0.2))
    assert table(10.0) == pytest.approx(2.0) and table(0.01) == pytest.approx(0.005)  # end ratios kept
    assert PosteriorRMS([0.1, 1.0], [0.3, 0.5])(0.1) == pytest.approx(0.1)  # capped at sigma
    assert PosteriorRMS.from_json_dict(table.to_json_dict())(0.5) == pytest.approx(table(0.5))


@pytest.mark.parametrize("data, words", [
    ([1, 2], "a table"), ({"sigma": [1.0]}, "a table"), ({"sigma": [1.0], "rms": [0.5]}, "at least 2"),
    ({"sigma": [1.0, 2.0], "rms": [0.5]}, "same length"), ({"sigma": [1.0, 2.0], "rms": [0.5, -1]}, "positive"),
    ({"sigma": [2.0, 1.0], "rms": [0.5, 0.4]}, "increasing"), ({"sigma": [1.0, 2.0], "rms": [0.5, "a"]}, "positive"),
])
def test_bad_tables_are_described(data, words):
    assert words in table_problem(data)
    if isinstance(data, dict) and set(data) == {"sigma", "rms"}:
        with pytest.raises(ValueError, match=words):
            PosteriorRMS(data["sigma"], data["rms"])


def test_measure_matches_the_closed_form_error_of_a_gaussian_prior():
    # Stationary Gaussian prior: the exact denoiser's mean squared error is mean_k lam_k s^2 / (lam_k + s^2).
    prior = GaussianPrior.stationary((1, 12, 12), length_scale=2.0, std=0.5)
    gen = torch.Generator().manual_seed(0)
    images = list(prior.sample(400, gen))
    sigmas = log_grid(0.02, 5.0, 5)
    table = measure(prior, images, sigmas, seed=1)
    for sigma, rms in zip(sigmas, table.rms, strict=True):
        exact = math.sqrt(float((prior.eigvals * sigma**2 / (prior.eigvals + sigma**2)).mean()))
        assert rms == pytest.approx(exact, rel=0.03), sigma
        assert prior.posterior_rms(sigma) == pytest.approx(exact, rel=1e-5)
    assert table.rms[0] < 0.9 * sigmas[0]  # far below sigma where the prior is informative


def _model_with_table(tmp_path, table, recommended=None):
    folder = make_tiny_model(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["posterior_rms"] = table
    if recommended is not None:
        config["recommended"] = recommended
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_folder_carries_its_table_and_a_bad_one_is_refused_on_load(tmp_path):
    prior = load_model_dir(_model_with_table(tmp_path / "good", {"sigma": [0.1, 1.0], "rms": [0.05, 0.2]}))
    assert prior.posterior_rms(1.0) == pytest.approx(0.2)
    assert load_model_dir(make_tiny_model(tmp_path / "plain")).posterior_rms is None
    with pytest.raises(ModelError, match="increasing"):
        load_model_dir(_model_with_table(tmp_path / "bad", {"sigma": [1.0, 0.1], "rms": [0.05, 0.2]}))


def test_daps_mmse_rule_uses_the_table_blended_with_sigma_and_refuses_a_prior_without_one(tmp_path):
    prior = load_model_dir(_model_with_table(tmp_path, {"sigma": [0.01, 100.0], "rms": [0.005, 0.5]}))
    x = torch.zeros(1, 3, 16, 16)
    mmse = prior.posterior_rms(1.0)
    assert mmse < 0.5
    assert get_solver("daps", "fast", r_t="mmse", r_t_blend=1.0)._r(prior, x, 1.0, x, None) == pytest.approx(mmse)
    assert get_solver("daps", "fast", r_t="mmse", r_t_blend=0.0)._r(prior, x, 1.0, x, None) == pytest.approx(1.0)
    assert get_solver("daps", "fast", r_t="mmse", r_t_blend=0.5)._r(prior, x, 1.0, x, None) == pytest.approx(
        math.sqrt(mmse))
    with pytest.raises(UsageError, match="r_t_blend must be in"):
        get_solver("daps", "fast", r_t="mmse", r_t_blend=1.5)._r(prior, x, 1.0, x, None)
    prior.posterior_rms = None
    with pytest.raises(UsageError, match="r_t='mmse' needs the prior's measured posterior spread"):
        get_solver("daps", "fast", r_t="mmse")._r(prior, x, 1.0, x, None)


def test_the_fast_preset_takes_the_inner_mean_where_the_target_is_gaussian_and_r_t_auto_follows_the_model(tmp_path):
    from diffrestore.operators import GaussianNoise, PoissonNoise, Problem, build_operator

    table = {"sigma": [0.01, 100.0], "rms": [0.005, 0.5]}
    recommending = load_model_dir(_model_with_table(tmp_path / "r", table, {"daps_r_t_blend": 0.25}))
    table_only = load_model_dir(_model_with_table(tmp_path / "t", table))  # what `diffrestore train` writes
    without = load_model_dir(make_tiny_model(tmp_path / "plain"))
    fast, paper = get_solver("daps", "fast"), get_solver("daps", "paper")
    op = build_operator("inpaint", (3, 16, 16), generator=torch.Generator().manual_seed(0), fraction=0.5)
    linear = Problem(operator=op, noise=GaussianNoise(0.05), y=torch.zeros(1, 3, 16, 16))
    poisson = Problem(operator=op, noise=PoissonNoise(100.0), y=torch.zeros(1, 3, 16, 16))
    # fast: r_t = sigma_t for every prior, the inner target's mean (spread 0) where it is Gaussian ...
    for prior in (recommending, table_only, without):
        assert fast.r_rule(prior) == "sigma"
    assert fast.inner_spread(linear) == 0.0 and fast.inner_sampler(linear, "sigma") == "exact"
    # ... and the paper's Langevin draw where it is not (Poisson's weighted likelihood)
    assert fast.inner_spread(poisson) == 1.0 and fast.inner_sampler(poisson, "sigma") == "langevin"
    # a positive spread at r_t = sigma_t: Langevin, which beats that too-wide exact draw on photos
    assert get_solver("daps", "fast", inner_spread=1.0).inner_sampler(linear, "sigma") == "langevin"
    # r_t="auto" follows a model folder's measured blend (for draws at spread 1), else the paper's sigma_t
    auto = get_solver("daps", "fast", r_t="auto", inner_spread=1.0)
    assert auto.r_rule(recommending) == "mmse" and auto.inner_sampler(linear, "mmse") == "exact"
    assert auto.r_blend(recommending) == 0.25
    x = torch.zeros(1, 3, 16, 16)
    assert auto._r(recommending, x, 1.0, x, None) == pytest.approx(recommending.posterior_rms(1.0) ** 0.25)
    for prior in (table_only, without):
        assert auto.r_rule(prior) == "sigma" and auto.inner_sampler(linear, "sigma") == "langevin"
    # the paper preset is the paper's algorithm whatever the prior carries
    assert paper.r_rule(recommending) == "sigma" and paper.inner_sampler(linear, "sigma") == "langevin"
    assert paper.inner_spread(linear) == 1.0
    assert fast.network_calls() == 100
    # an explicit r_t="mmse" without a blend: the recommendation, else pure moment matching
    assert get_solver("daps", "fast", r_t="mmse").r_blend(table_only) == 1.0
    assert get_solver("daps", "fast", r_t="mmse").r_blend(recommending) == 0.25
    with pytest.raises(UsageError, match="inner_spread must be >= 0"):
        get_solver("daps", "fast", inner_spread=-0.5).inner_spread(linear)


def test_a_recommended_blend_is_checked_when_the_folder_loads(tmp_path):
    table = {"sigma": [0.01, 100.0], "rms": [0.005, 0.5]}
    with pytest.raises(ModelError, match="daps_r_t_blend' must be a number in"):
        load_model_dir(_model_with_table(tmp_path / "a", table, {"daps_r_t_blend": 2}))
    folder = make_tiny_model(tmp_path / "b")
    config = json.loads((folder / "config.json").read_text())
    config["recommended"] = {"daps_r_t_blend": 0.5}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="needs the 'posterior_rms' table"):
        load_model_dir(folder)


def test_crops_are_seeded_inside_the_images_and_of_one_size():
    images = [torch.rand(3, 40, 36) * 2 - 1, torch.rand(3, 50, 60) * 2 - 1]
    crops = crops_of(images, 2, seed=0)
    assert len(crops) == 4 and all(c.shape == (3, 36, 36) for c in crops)  # the smallest side, under CROP
    assert all(torch.equal(a, b) for a, b in zip(crops, crops_of(images, 2, seed=0), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(crops, crops_of(images, 2, seed=1), strict=True))


def _tiny_training(tmp_path, *, images: int, steps: int):
    """A folder of small pictures and a tiny model trained on them for a few steps: (data, model folder)."""
    from diffrestore.train import train

    data = tmp_path / "data"
    for i in range(images):
        write_image(data / f"p{i}.png", seed=i, size=(40, 36))
    out = train(data, tmp_path / "m", size=16, steps=steps, batch_size=2, base_channels=8, channel_mults=(1, 2),
                pixel_unshuffle=1, device="cpu", checkpoint_every=steps)
    return data, out


def test_train_stores_the_table_and_the_benchmark_command_measures_the_same(tmp_path):
    data, out = _tiny_training(tmp_path, images=3, steps=3)
    stored = json.loads((out / "config.json").read_text())["posterior_rms"]
    assert len(stored["sigma"]) == 25 and all(r > 0 for r in stored["rms"])
    assert load_model_dir(out).posterior_rms is not None
    module = load_benchmark("default_prior")
    assert module.posterior_rms_table(out, data) == stored
    # a model trained before train measured it: --write adds it, loadable
    plain = make_tiny_model(tmp_path / "plain")
    table = module.posterior_rms_table(plain, data, write=True)
    sigma, rms = table["sigma"][1], table["rms"][1]
    assert load_model_dir(plain).posterior_rms(sigma) == pytest.approx(min(rms, sigma), rel=1e-4)
    write_image(data / "astronaut.png", size=(40, 36))
    with pytest.raises(AssertionError, match="held-out"):
        module.posterior_rms_table(plain, data)


def test_ship_writes_float16_weights_with_the_training_record_and_a_table(tmp_path):
    from safetensors.torch import load_file

    data, out = _tiny_training(tmp_path, images=2, steps=2)
    module = load_benchmark("default_prior")
    dest = module.ship(out, data, tmp_path / "shipped", recommended={"daps_r_t_blend": 0.5})
    assert {t.dtype for t in load_file(str(dest / "model.safetensors")).values()} == {torch.float16}
    config = json.loads((dest / "config.json").read_text())
    assert config["training"] == json.loads((out / "config.json").read_text())["training"]
    assert len(config["posterior_rms"]["sigma"]) == 25 and load_model_dir(dest).posterior_rms is not None
    assert config["recommended"] == {"daps_r_t_blend": 0.5}
    with pytest.raises(SystemExit, match="--overwrite"):
        module.ship(out, data, dest)
    module.ship(out, data, dest, overwrite=True)
