"""``diffrestore ct``: a sinogram file restored end to end with a tiny one-channel model, a DICOM slice through
--simulate back to DICOM (header kept, new series, Hounsfield units), shape errors before anything loads, the
missing pydicom extra, and the classical reconstructions against operators.radon."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_tiny_model

from diffrestore.cli import main
from diffrestore.operators import ParallelBeamCT


def _phantom(size: int = 64) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (size, size), anti_aliasing=True).astype(np.float32).clip(0, 1)


def _sinogram(image: np.ndarray, views: int) -> np.ndarray:
    op = ParallelBeamCT((1, *image.shape), views=views)
    return op(torch.from_numpy(image)[None, None])[0, 0].numpy()


@pytest.fixture(scope="module")
def tiny_ct_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny1", channels=1)


def test_a_sinogram_file_is_restored_with_a_one_channel_model(tmp_path, capsys, tiny_ct_model) -> None:
    sino = tmp_path / "sino.npy"
    np.save(sino, _sinogram(_phantom(16), 12)[None])  # (1, detectors, views) is accepted too
    code = main(["ct", str(sino), "--views", "12", "--model", str(tiny_ct_model), "--method", "dps", "--steps", "2",
                 "--device", "cpu", "--json"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    assert doc["operator"]["views"] == 12 and doc["operator"]["noise_sigma"] == 0.05
    out = np.load(tmp_path / "sino_ct.npy")  # a .npy sinogram gives a .npy slice on the CT scale
    assert out.shape == (16, 16) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize(("args", "expected"), [
    (["--views", "20"], "expected shape (23, 20)"),  # the file has 30 view columns
    (["--angles", "0,90"], "expected shape (23, 2)"),
])
def test_a_sinogram_that_does_not_fit_is_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch,
                                                                          args, expected) -> None:
    import diffrestore.priors.load as load

    monkeypatch.setattr(load, "load_prior", lambda *a, **k: pytest.fail("a model was loaded"))
    sino = tmp_path / "sino.npy"
    np.save(sino, np.zeros((23, 30), np.float32))
    assert main(["ct", str(sino), *args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_a_detector_count_no_square_image_has_names_the_shapes_that_fit(tmp_path, capsys) -> None:
    sino = tmp_path / "sino.npy"
    np.save(sino, np.zeros((24, 30), np.float32))  # ceil(sqrt(2) N) is 23 for N = 16 and 25 for N = 17
    assert main(["ct", str(sino), "--method", "fbp", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "23 (a 16 x 16 image) or 25 (a 17 x 17 image)" in err


def test_a_dicom_slice_goes_back_to_dicom_with_its_header_and_a_new_series(tmp_path, capsys) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("CT_small.dcm"))
    original = pydicom.dcmread(source)
    code = main(["ct", str(source), "--simulate", "--method", "fbp", "--views", "90", "--noise-sigma", "0",
                 "-o", str(tmp_path / "slice.dcm"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert "PSNR" in capsys.readouterr().out
    restored = pydicom.dcmread(tmp_path / "slice.dcm")
    assert restored.PatientName == original.PatientName and restored.StudyInstanceUID == original.StudyInstanceUID
    assert restored.SeriesInstanceUID != original.SeriesInstanceUID
    assert restored.SOPInstanceUID != original.SOPInstanceUID
    assert list(restored.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    hu = restored.pixel_array * float(restored.RescaleSlope) + float(restored.RescaleIntercept)
    want = original.pixel_array * float(original.RescaleSlope) + float(original.RescaleIntercept)
    # Hounsfield units back: 90 views of a 128 px slice by FBP stay within a few tens of HU on average
    assert abs(float(np.median(hu)) - float(np.median(want))) < 30
    assert float(np.abs(hu - want).mean()) < 60


def test_a_dicom_slice_without_simulate_is_refused(tmp_path, capsys) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    code = main(["ct", get_testdata_file("CT_small.dcm"), "--method", "fbp", "-o", str(tmp_path / "x.dcm")])
    assert code == 2 and "not a sinogram" in capsys.readouterr().err


def test_without_pydicom_a_dicom_input_is_exit_3(tmp_path, capsys, request) -> None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    request.getfixturevalue("without_pydicom")  # after the line above found the test file
    code = main(["ct", get_testdata_file("CT_small.dcm"), "--simulate", "--method", "fbp",
                 "-o", str(tmp_path / "x.dcm")])
    err = capsys.readouterr().err.strip()
    assert code == 3 and "pydicom" in err and "\n" not in err


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((np.clip(a, 0, 1) - b) ** 2)))


def test_fbp_matches_the_operator_and_improves_with_views(tmp_path, capsys) -> None:
    phantom = _phantom(64)
    scores = []
    for views in (18, 30, 60):
        sino = tmp_path / f"sino{views}.npy"
        np.save(sino, _sinogram(phantom, views))
        out = tmp_path / f"fbp{views}.npy"
        assert main(["ct", str(sino), "--views", str(views), "--method", "fbp", "-o", str(out)]) == 0
        op = ParallelBeamCT((1, 64, 64), views=views)
        direct = op.fbp(torch.from_numpy(np.load(sino))[None, None])[0, 0].numpy()
        got, want = _psnr(np.load(out), phantom), _psnr(direct, phantom)
        assert abs(got - want) < 0.5, (views, got, want)
        scores.append(got)
    assert scores[0] < scores[1] < scores[2], scores
    assert scores[1] > 25  # docs/ct.md: 26.9 dB at 30 views


def test_simulated_png_slice_scored_for_each_classical_method(tmp_path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "phantom.png"
    Image.fromarray((_phantom(32) * 65535).round().astype(np.uint16)).save(png)
    psnr = {}
    for method in ("fbp", "sart"):
        out = tmp_path / f"{method}.png"
        assert main(["ct", str(png), "--simulate", "--method", method, "--noise-sigma", "0", "-o", str(out)]) == 0
        line = capsys.readouterr().out
        psnr[method] = float(line.split("PSNR ")[1].split()[0])
        assert Image.open(out).mode.startswith("I;16")  # a 16-bit PNG slice keeps its linear scale and depth
    assert psnr["sart"] > psnr["fbp"]


def test_classical_methods_refuse_other_tasks_in_one_line(tmp_path, capsys) -> None:
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("L", (8, 8)).save(photo)
    assert main(["denoise", str(photo), "--method", "fbp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "reconstructs CT sinograms" in err


def test_photons_need_simulate(tmp_path, capsys) -> None:
    sino = tmp_path / "sino.npy"
    np.save(sino, np.zeros((23, 30), np.float32))
    assert main(["ct", str(sino), "--photons", "1e4", "--method", "fbp"]) == 2
    assert "--photons" in capsys.readouterr().err
