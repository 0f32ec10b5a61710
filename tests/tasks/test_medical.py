"""The CT task as a value: flags resolved and checked, the CT scale -> tensor units -> sinogram mapping (air
projects to 0, the operator stays linear), photon noise, restored sizes and output rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffrestore.errors import OutputError, UsageError
from diffrestore.operators import ParallelBeamCT
from diffrestore.tasks import resolve_task
from diffrestore.tasks.medical import CTInput, parse_window


def test_defaults_and_description() -> None:
    task = resolve_task("ct", {})
    assert task.params["views"] == 30 and task.params["angles_deg"][:3] == (0.0, 6.0, 12.0)
    assert task.noise == "gaussian" and task.noise_sigma == 0.05 and not task.estimates_noise
    assert task.describe()["views"] == 30


def test_angles_list_and_file(tmp_path: Path) -> None:
    assert resolve_task("ct", {"angles": "0,45,90"}).params["views"] == 3
    path = tmp_path / "angles.txt"
    path.write_text("0 10\n20, 30\n")
    assert resolve_task("ct", {"angles": str(path)}).params["angles_deg"] == (0.0, 10.0, 20.0, 30.0)
    with pytest.raises(UsageError, match="--views 5 but --angles lists 3"):
        resolve_task("ct", {"angles": "0,45,90", "views": 5})
    with pytest.raises(UsageError, match="--angles file not found"):
        resolve_task("ct", {"angles": str(tmp_path / "missing.txt")})


@pytest.mark.parametrize(("values", "message"), [
    ({"views": 2.5}, "--views"),
    ({"photons": 1e4}, "--photons draws photon counts for --simulate"),
    ({"noise_sigma": "auto"}, "cannot be estimated"),
    ({"noise": "gaussian", "photons": 1e4}, "--photons applies to --noise photons"),
    ({"window": "40"}, "invalid --window"),
])
def test_bad_flags_are_usage_errors(values: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_task("ct", values)


def test_window_parses_centre_and_width() -> None:
    assert parse_window("-600,1500") == (-600.0, 1500.0)


def test_the_measurement_is_linear_in_tensor_units_and_air_projects_to_zero() -> None:
    task = resolve_task("ct", {"views": 12})
    op = task.operator((1, 16, 16), seed=0)
    u = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    p = ParallelBeamCT((1, 16, 16), views=12)(u)  # the user's sinogram of the CT scale
    y = task.spec.measure_file(op, 2 * p - 1, 1)  # the file as read: 2 p - 1
    assert torch.allclose(y, op(2 * u - 1), atol=1e-4)
    assert float(ParallelBeamCT((1, 16, 16), views=12)(torch.zeros(1, 1, 16, 16)).abs().max()) == 0.0


def test_restored_size_inverts_the_detector_count() -> None:
    task = resolve_task("ct", {})
    for n in (1, 7, 64, 256, 512):
        assert task.restored_size((30, math.ceil(math.sqrt(2) * n))) == (n, n)
    assert resolve_task("ct", {}, simulate=True).restored_size((40, 30)) == (40, 30)


def test_photon_noise_is_beer_lambert_on_the_ct_scale() -> None:
    task = resolve_task("ct", {"photons": 1e6, "views": 20}, simulate=True)
    noise = task.noise_model()
    op = task.operator((1, 32, 32), seed=0)
    x = torch.full((1, 1, 32, 32), 2 * 0.25 - 1)  # water
    y = noise.sample(op(x), torch.Generator().manual_seed(0))
    relative = float((y - op(x)).norm() / op(x).norm())
    assert 0 < relative < 0.01
    assert noise.kind == "gaussian" and noise.std > 0
    quieter = resolve_task("ct", {"photons": 1e8, "views": 20}, simulate=True).noise_model()
    quieter.sample(op(x), torch.Generator().manual_seed(0))
    assert quieter.std < noise.std


def test_dicom_output_needs_a_dicom_input(tmp_path: Path) -> None:
    task = resolve_task("ct", {})
    npy = CTInput(tensor=torch.zeros(1, 1, 23, 30), path=tmp_path / "s.npy", format="npy", bit_depth=32)
    with pytest.raises(OutputError, match="header from a DICOM input"):
        task.check_output(tmp_path / "out.dcm", npy)
    with pytest.raises(OutputError, match="no extension ct can write"):
        task.check_output(tmp_path / "out.xyz", npy)
    task.check_output(tmp_path / "out.png", npy)


def test_a_float_npy_slice_in_hounsfield_units_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hu.npy"
    np.save(path, np.full((8, 8), -1000.0, np.float32))
    with pytest.raises(UsageError, match="not on the CT scale"):
        resolve_task("ct", {}, simulate=True).read_input(path)


def test_the_default_prior_is_the_shipped_ct_prior() -> None:
    from diffrestore.registry import load_registry
    from diffrestore.run.options import RunOptions

    assert RunOptions(task="ct").model == "ct-phantom"
    assert load_registry().get("ct-phantom").family == "builtin"  # no download
