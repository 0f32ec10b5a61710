"""DICOM CT slices: Hounsfield units in, the same header out with new UIDs, one-line refusals."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from diffrestore.errors import EXIT_MODEL, EXIT_USAGE, ImageReadError, MissingExtraError
from diffrestore.imageio import dicom

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402


@pytest.fixture
def ct_file(tmp_path):
    """pydicom's real 128 x 128 CT slice (int16, slope 1, intercept -1024), copied so tests may alter it."""
    path = tmp_path / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), path)
    return path


def test_a_ct_slice_reads_in_hounsfield_units_from_slope_and_intercept(ct_file):
    stored = pydicom.dcmread(ct_file).pixel_array
    ct = dicom.read_ct_slice(ct_file)
    assert ct.hu.dtype == np.float32 and ct.hu.shape == (128, 128) and ct.size == (128, 128)
    np.testing.assert_array_equal(ct.hu, stored.astype(np.float32) - 1024.0)
    # a real body slice: air near -1000 HU, dense tissue above water
    assert ct.hu.min() < -800 and ct.hu.max() > 500


def test_a_rescale_slope_is_applied(ct_file):
    dataset = pydicom.dcmread(ct_file)
    dataset.RescaleSlope, dataset.RescaleIntercept = 0.5, -100
    dataset.save_as(ct_file)
    np.testing.assert_allclose(dicom.read_ct_slice(ct_file).hu, dataset.pixel_array * 0.5 - 100)


def test_writing_back_keeps_the_header_values_and_dtype_and_makes_new_uids(ct_file, tmp_path):
    ct = dicom.read_ct_slice(ct_file)
    restored = ct.hu + 7.0
    data = dicom.ct_slice_bytes(ct, restored)
    out = tmp_path / "out.dcm"
    out.write_bytes(data)
    written = pydicom.dcmread(out)
    source = pydicom.dcmread(ct_file)
    for keyword in ("PatientID", "StudyInstanceUID", "PixelSpacing", "SliceThickness", "RescaleIntercept",
                    "RescaleSlope", "BitsStored", "PixelRepresentation", "Rows", "Columns"):
        assert written.get(keyword) == source.get(keyword), keyword
    assert written.SOPInstanceUID != source.SOPInstanceUID
    assert written.SeriesInstanceUID != source.SeriesInstanceUID
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert list(written.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert written.pixel_array.dtype == source.pixel_array.dtype
    np.testing.assert_array_equal(dicom.read_ct_slice(out).hu, restored)
    # the source's dataset was not changed by writing
    assert pydicom.dcmread(ct_file).SOPInstanceUID == ct.dataset.SOPInstanceUID


def test_values_beyond_the_stored_range_are_clipped_and_counted(ct_file):
    ct = dicom.read_ct_slice(ct_file)
    hu = ct.hu.copy()
    hu[0, :3] = 40000.0  # int16 with intercept -1024 holds at most 32767 - 1024
    assert dicom.clipped_on_write(ct, hu) == 3
    back = pydicom.dcmread(io.BytesIO(dicom.ct_slice_bytes(ct, hu)))
    assert int(back.pixel_array[0, 0]) == 32767


def test_the_ct_scale_is_linear_with_air_at_zero_and_round_trips():
    hu = np.array([-1024.0, -1000.0, 0.0, 1000.0, 3071.0], dtype=np.float32)
    unit = dicom.hu_to_unit(hu)
    assert unit[0] == 0.0 and unit[-1] == pytest.approx(4095 / 4096)
    # linear: equal HU steps are equal unit steps (a sinogram is a line integral of attenuation)
    assert unit[3] - unit[2] == pytest.approx(unit[2] - unit[1]) == pytest.approx(1000 / 4096)
    np.testing.assert_allclose(dicom.unit_to_hu(unit), hu, atol=1e-3)


def test_the_display_window_maps_centre_and_edges(ct_file):
    hu = np.array([-140.0, 40.0, 240.0, 1000.0], dtype=np.float32)
    np.testing.assert_allclose(dicom.window_to_unit(hu, (40.0, 400.0)), [0.05, 0.5, 1.0, 1.0], atol=1e-6)
    ct = dicom.read_ct_slice(ct_file)
    assert ct.window is None  # CT_small names no window
    assert dicom.display_window(ct) == dicom.SOFT_TISSUE_WINDOW
    assert dicom.display_window(ct, (300.0, 1500.0)) == (300.0, 1500.0)
    with pytest.raises(ValueError):
        dicom.window_to_unit(hu, (40.0, 0.0))


def test_a_files_own_window_is_used_first_value_when_several(ct_file):
    dataset = pydicom.dcmread(ct_file)
    dataset.WindowCenter, dataset.WindowWidth = [50, 300], [350, 1500]
    dataset.save_as(ct_file)
    assert dicom.read_ct_slice(ct_file).window == (50.0, 350.0)


def test_dicom_is_recognised_by_preamble_without_pydicom(ct_file, tmp_path):
    renamed = tmp_path / "slice0001"
    shutil.copy(ct_file, renamed)
    assert dicom.is_dicom(renamed) and dicom.is_dicom(ct_file)
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert not dicom.is_dicom(png)


def test_without_pydicom_the_error_names_the_extra_with_exit_3(ct_file, without_pydicom):
    with pytest.raises(MissingExtraError) as caught:
        dicom.read_ct_slice(ct_file)
    assert caught.value.exit_code == EXIT_MODEL
    assert "diffrestore[dicom]" in str(caught.value.hint)


@pytest.mark.parametrize("damage", ["cut", "not_dicom", "multi_frame", "no_pixels"])
def test_bad_dicom_files_are_one_line_usage_errors(ct_file, damage):
    data = ct_file.read_bytes()
    if damage == "cut":
        ct_file.write_bytes(data[: len(data) // 2])
    elif damage == "not_dicom":
        ct_file.write_bytes(b"hello, this is text" * 20)
    elif damage == "multi_frame":
        dataset = pydicom.dcmread(ct_file)
        dataset.NumberOfFrames = 2
        dataset.save_as(ct_file)
    else:
        dataset = pydicom.dcmread(ct_file)
        del dataset.PixelData
        dataset.save_as(ct_file)
    with pytest.raises(ImageReadError) as caught:
        dicom.read_ct_slice(ct_file)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert "\n" not in message and str(ct_file) in message
