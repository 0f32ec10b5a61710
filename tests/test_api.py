"""`diffrestore.restore(...)`: the Python API reaches what the CLI reaches, with the same errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import H, W, make_tiny_model, write_image
from PIL import Image

import diffrestore
from diffrestore.errors import UsageError


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def prior(model):
    from diffrestore.run.engine import load_prior

    return load_prior(str(model), device=torch.device("cpu"), dtype=torch.float32)


FAST = {"steps": 2, "method": "dps", "device": "cpu"}


def test_import_diffrestore_stays_light() -> None:
    code = "import diffrestore, sys; assert callable(diffrestore.restore); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_restore_a_path_with_a_mask_file_and_save(tmp_path, model) -> None:
    from cli_support import write_mask

    image = write_image(tmp_path / "a.png")
    mask = write_mask(tmp_path / "m.png")
    result = diffrestore.restore(image, task="inpaint", mask=mask, model=str(model), **FAST)
    assert isinstance(result, diffrestore.Restoration)
    assert tuple(result.image.shape) == (1, 3, H, W) and result.image.dtype == torch.float32
    assert result.std is None and result.metrics == {}
    saved = result.save(tmp_path / "out.png")
    with Image.open(saved) as out:
        assert out.size == (W, H)
    with pytest.raises(Exception, match="exists"):
        result.save(tmp_path / "out.png")
    assert result.to_numpy().shape == (H, W, 3) and 0.0 <= result.to_numpy().min() <= result.to_numpy().max() <= 1.0


def test_restore_arrays_with_an_array_mask_keeps_known_pixels_close(prior) -> None:
    rng = np.random.default_rng(0)
    picture = rng.uniform(0.2, 0.8, (H, W, 3)).astype(np.float32)
    mask = np.zeros((H, W), bool)
    mask[4:10, 5:15] = True
    result = diffrestore.restore(picture, task="inpaint", mask=mask, prior=prior, noise_sigma=0.01, **FAST)
    restored = result.to_numpy()
    assert restored.shape == (H, W, 3)
    assert tuple(result.measurement.shape) == (1, 3, H, W)
    # The measurement holds the known pixels only (the operator zeroes the hole).
    y = result.measurement[0].permute(1, 2, 0).numpy()
    assert np.allclose(y[~mask], picture[~mask] * 2 - 1, atol=1e-6) and np.all(y[mask] == 0)


def test_restore_pil_grayscale_and_tensor_inputs(prior) -> None:
    gray = Image.fromarray((np.arange(H * W).reshape(H, W) % 255).astype(np.uint8), mode="L")
    result = diffrestore.restore(gray, task="denoise", prior=prior, **FAST)
    assert result.image.shape[1] == 1 and result.to_pil().mode == "L"
    tensor = torch.zeros(3, H, W)
    result = diffrestore.restore(tensor, task="sr", scale=2, prior=prior, **FAST)
    assert tuple(result.image.shape) == (1, 3, 2 * H, 2 * W)


def test_samples_std_and_simulated_metrics(tmp_path, prior) -> None:
    image = write_image(tmp_path / "a.png")
    result = diffrestore.restore(image, task="inpaint", box=(4, 4, 8, 6), num_samples=3, simulate=True, prior=prior,
                                 **FAST)
    assert tuple(result.samples.shape) == (3, 3, H, W)
    assert torch.allclose(result.image, result.samples.mean(dim=0, keepdim=True), atol=1e-6)
    expected_std = ((result.samples + 1) / 2).std(dim=0, keepdim=True).mean(dim=1, keepdim=True)
    assert torch.allclose(result.std, expected_std, atol=1e-6)
    assert set(result.metrics) == {"psnr", "ssim"}
    from diffrestore.metrics import psnr

    assert result.metrics["psnr"] == pytest.approx(psnr(result.image, result.reference).item(), abs=1e-4)
    result.save_std_map(tmp_path / "std.png")
    assert (tmp_path / "std.png").is_file()


def test_progress_callback_and_seed(prior) -> None:
    calls = []
    picture = np.full((H, W, 3), 0.5, np.float32)
    a = diffrestore.restore(picture, task="denoise", prior=prior, seed=3,
                            progress=lambda done, total, what: calls.append((done, total)), **FAST)
    b = diffrestore.restore(picture, task="denoise", prior=prior, seed=3, **FAST)
    assert calls and calls[-1][0] == calls[-1][1]
    assert torch.equal(a.image, b.image)


def test_api_errors_have_the_cli_messages(prior) -> None:
    picture = np.zeros((H, W, 3), np.float32)
    with pytest.raises(UsageError, match=r"unknown option.*noise_sgima"):
        diffrestore.restore(picture, task="denoise", prior=prior, noise_sgima=0.1)
    with pytest.raises(UsageError, match="unknown task 'blurry'"):
        diffrestore.restore(picture, task="blurry", prior=prior)
    with pytest.raises(UsageError, match="inpaint needs a mask"):
        diffrestore.restore(picture, task="inpaint", prior=prior, **FAST)
    with pytest.raises(UsageError, match=r"mask of shape \(3, 3\) does not fit"):
        diffrestore.restore(picture, task="inpaint", mask=np.ones((3, 3), bool), prior=prior, **FAST)
    with pytest.raises(UsageError, match="fp16 is not supported on the CPU"):
        diffrestore.restore(picture, task="denoise", device="cpu", dtype="fp16")


def test_a_classical_reconstruction_through_the_api_loads_no_model(tmp_path, monkeypatch) -> None:
    """restore(method="fbp") needs no network: the task's prior is never loaded."""
    import diffrestore.priors.load as load
    from diffrestore.operators import ParallelBeamCT

    def refuse(*args, **kwargs):
        raise AssertionError("a classical reconstruction loaded a model")

    monkeypatch.setattr(load, "load_prior", refuse)
    phantom = torch.zeros(1, 1, 16, 16)
    phantom[..., 4:12, 5:11] = 0.5
    np.save(tmp_path / "sinogram.npy", ParallelBeamCT((1, 16, 16), views=30)(phantom)[0, 0].numpy())
    result = diffrestore.restore(tmp_path / "sinogram.npy", task="ct", method="fbp", views=30, seed=0)
    assert result.image.shape[-2:] == (16, 16)


def test_a_dicom_slice_restored_through_the_api_saves_as_dicom_with_its_header(tmp_path) -> None:
    """Restoration.save writes what the CLI writes for the task: a CT slice in DICOM keeps its header, in HU."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("CT_small.dcm"))
    result = diffrestore.restore(source, task="ct", method="fbp", views=30, simulate=True, seed=0)
    written = result.save(tmp_path / "restored.dcm")
    original, restored = pydicom.dcmread(source), pydicom.dcmread(written)
    assert restored.StudyInstanceUID == original.StudyInstanceUID
    assert restored.SeriesInstanceUID != original.SeriesInstanceUID
    hu = restored.pixel_array * float(restored.RescaleSlope) + float(restored.RescaleIntercept)
    reference = original.pixel_array * float(original.RescaleSlope) + float(original.RescaleIntercept)
    assert np.abs(hu - reference).mean() < 0.4 * np.abs(reference - reference.mean()).mean()  # HU, not [0, 1]
    with pytest.raises(Exception, match="exists"):
        result.save(written)


def test_an_mri_result_is_the_complex_image_in_the_data_s_units(tmp_path) -> None:
    """to_numpy on an MRI restoration: the complex image with the 99th-percentile scale multiplied back (fully
    sampled k-space and zero-filling give the image itself), not a clamped picture."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16] / 16.0
    image = (3.0 + rng.random((16, 16))) * np.exp(1j * (xx - yy))  # magnitudes 3..4: far outside [0, 1]
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho")).astype(np.complex64)
    np.save(tmp_path / "kspace.npy", kspace)
    result = diffrestore.restore(tmp_path / "kspace.npy", task="mri", method="zero-filled")
    array = result.to_numpy()
    assert array.shape == (16, 16) and np.iscomplexobj(array)
    np.testing.assert_allclose(array, image, rtol=0, atol=1e-4 * np.abs(image).max())
