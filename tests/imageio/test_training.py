"""diffrestore.imageio.training: complex .npy arrays and magnitudes for 2-channel priors (scaled by the 99th
percentile of the magnitude), DICOM slices on the CT scale, and the clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from diffrestore.errors import ImageReadError, MissingExtraError
from diffrestore.imageio.training import find_images, load_training_images


def _complex(seed: int, shape=(24, 20)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64) * 7.0


def test_complex_arrays_become_two_channels_scaled_by_their_99th_percentile(tmp_path):
    z = _complex(0)
    np.save(tmp_path / "a.npy", z)
    np.save(tmp_path / "b.npy", _complex(1).astype(np.complex128) * 100)
    images, channels, skipped = load_training_images(tmp_path, 16)
    assert channels == 2 and skipped == [] and len(images) == 2
    a = images[0]
    assert a.shape == (2, 24, 20) and a.dtype == torch.float32
    scale = np.percentile(np.abs(z), 99.0)
    np.testing.assert_allclose(a[0].numpy() + 1j * a[1].numpy(), z / scale, rtol=1e-5, atol=1e-6)
    # each image on its own scale: the 100x brighter one lands in the same range
    for img in images:
        magnitude = torch.sqrt(img[0] ** 2 + img[1] ** 2)
        assert abs(torch.quantile(magnitude.flatten(), 0.99).item() - 1.0) < 1e-3


def test_magnitudes_stay_one_channel_for_a_complex_prior(tmp_path):
    arr = (np.linspace(0, 1, 32 * 32).reshape(32, 32) * 255).astype(np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "m.png")
    np.save(tmp_path / "real.npy", np.linspace(0, 5, 32 * 32).reshape(32, 32))
    images, channels, _ = load_training_images(tmp_path, 16, channels=2)
    assert channels == 2 and [img.shape[0] for img in images] == [1, 1]
    for img in images:
        assert img.min() >= 0 and abs(torch.quantile(img.flatten(), 0.99).item() - 1.0) < 1e-2


def test_npy_files_are_ignored_for_grey_and_colour_priors_and_bad_arrays_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", _complex(0))
    Image.fromarray(np.zeros((20, 20), np.uint8), "L").save(tmp_path / "g.png")
    assert [p.name for p in find_images(tmp_path)] == ["g.png"]
    assert len(find_images(tmp_path, complex_files=True)) == 2
    np.save(tmp_path / "stack.npy", np.zeros((2, 3, 20, 20), np.complex64))
    with pytest.raises(ImageReadError, match="one \\(H, W\\) complex image"):
        load_training_images(tmp_path, 16, channels=2)
    (tmp_path / "stack.npy").unlink()
    bad = _complex(2)
    bad[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ImageReadError, match="NaN"):
        load_training_images(tmp_path, 16, channels=2)


@pytest.fixture
def dicom_folder(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    folder = tmp_path / "slices"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "IM0002")  # no suffix: found by its preamble
    return folder


def test_dicom_slices_are_grey_on_the_ct_scale(dicom_folder):
    from diffrestore.imageio.dicom import read_ct_slice

    images, channels, _ = load_training_images(dicom_folder, 64)
    assert channels == 1 and len(images) == 2
    hu = read_ct_slice(dicom_folder / "a.dcm").hu
    expected = np.clip((hu + 1024.0) / 4096.0, 0, 1) * 2 - 1
    np.testing.assert_allclose(images[0][0].numpy(), expected, atol=1e-6)
    assert images[0].shape == (1, 128, 128)


def test_dicom_without_pydicom_is_the_missing_extra_error(dicom_folder, without_pydicom):
    with pytest.raises(MissingExtraError) as info:
        load_training_images(dicom_folder, 64)
    assert info.value.exit_code == 3 and "pydicom" in str(info.value)
