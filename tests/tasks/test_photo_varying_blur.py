"""`deblur` with a blur that varies across the image: --kernel-grid (a real input's measured grid) and --blur
shake|defocus (simulated fields drawn from --seed), end to end through the CLI, and the flag rules before loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_support import fast, make_tiny_model, run_main, write_image

from diffrestore.errors import UsageError
from diffrestore.tasks import resolve_task


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _grid_file(tmp_path, rows=2, cols=2, k=5):
    grid = np.random.default_rng(0).random((rows, cols, k, k)).astype(np.float32)
    np.save(tmp_path / "grid.npy", grid)
    return tmp_path / "grid.npy"


def test_a_kernel_grid_restores_a_real_input(tmp_path, capsys, model):
    image = write_image(tmp_path / "photo.png")
    result = run_main(["deblur", image, "--kernel-grid", _grid_file(tmp_path), *fast(model), "--json"], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / "photo_deblur.png").is_file()
    summary = json.loads(result.out)
    assert summary["operator"]["kernel_grid"].endswith("grid.npy") and summary["operator"]["grid"] == [2, 2]


@pytest.mark.parametrize("blur", ["shake", "defocus"])
def test_a_simulated_varying_blur_runs_and_scores(tmp_path, capsys, model, blur):
    image = write_image(tmp_path / "photo.png")
    result = run_main(["deblur", image, "--blur", blur, "--grid", "2", "--kernel-size", "5", "--simulate",
                       *fast(model), "--json"], capsys)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["operator"]["blur"] == blur and summary["operator"]["grid"] == 2
    assert summary["operator"]["kernel_size"] == 5


def test_the_operator_is_the_varying_blur_with_the_grid_or_the_field(tmp_path):
    task = resolve_task("deblur", {"kernel_grid": _grid_file(tmp_path, 3, 2)})
    op = task.operator((3, 24, 20), seed=0)
    assert op.name == "varying_blur" and op.grid == (3, 2)
    shake = resolve_task("deblur", {"blur": "shake"}, simulate=True)
    assert shake.params["kernel_size"] == 31 and shake.kernel_shape() == (31, 31)  # the field's own default
    a = shake.operator((3, 64, 64), seed=1)
    b = shake.operator((3, 64, 64), seed=1)
    c = shake.operator((3, 64, 64), seed=2)
    assert a.grid == (4, 4) and bool((a.kernels == b.kernels).all()) and not bool((a.kernels == c.kernels).all())


@pytest.mark.parametrize(("values", "simulate", "message"), [
    ({"blur": "shake"}, False, "--blur shake is drawn from --seed, so it can only be simulated"),
    ({"grid": 3}, True, "--grid applies to --blur shake or defocus"),
    ({"kernel_grid": "GRID", "kernel_size": 5}, False, "--kernel-grid cannot be combined with --kernel-size"),
    ({"kernel_grid": "GRID", "kernel": "GRID"}, False, "--kernel and --kernel-grid cannot be combined"),
    ({"kernel_grid": "missing.npy"}, False, "kernel grid not found"),
])
def test_flag_rules_are_one_line_usage_errors(tmp_path, values, simulate, message):
    grid = _grid_file(tmp_path)
    values = {k: (grid if v == "GRID" else tmp_path / v if k == "kernel_grid" else v) for k, v in values.items()}
    with pytest.raises(UsageError, match=message):
        resolve_task("deblur", values, simulate=simulate)


def test_a_bad_grid_file_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    bad = np.ones((2, 2, 3, 3), np.float32)
    bad[1, 1] = 0.0
    np.save(tmp_path / "bad.npy", bad)
    image = write_image(tmp_path / "photo.png")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("diffrestore.priors.load.load_prior", no_model)
    result = run_main(["deblur", image, "--kernel-grid", tmp_path / "bad.npy", "--steps", "1"], capsys)
    assert result.code == 2 and "kernel (1, 1) of grid" in result.err and "sums to 0" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_the_python_api_takes_a_kernel_grid(tmp_path, model):
    import diffrestore

    image = write_image(tmp_path / "photo.png")
    grid = _grid_file(tmp_path)
    result = diffrestore.restore(image, "deblur", kernel_grid=grid, model=str(model), steps=2, method="dps",
                                 device="cpu", simulate=True, noise_sigma=0.001)
    assert tuple(result.image.shape) == (1, 3, 20, 24)
    # the measurement is the grid's blur of the photo: rebuilt here from the same grid, it matches
    op = resolve_task("deblur", {"kernel_grid": grid}).operator((3, 20, 24), seed=0)
    with torch.no_grad():
        explained = float((result.measurement - op(result.reference)).abs().mean())
    unexplained = float((result.measurement - result.reference).abs().mean())
    assert explained < 0.1 * unexplained, (explained, unexplained)
