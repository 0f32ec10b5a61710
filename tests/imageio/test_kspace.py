"""imageio/kspace.py: k-space layouts (.npy, fastMRI .h5), coil maps, mask files, the sampling pattern of
zero-filled k-space, the missing h5py extra, and the files an MRI reconstruction is written to."""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffrestore.errors import ImageReadError, MissingExtraError, SizeMismatchError, UsageError
from diffrestore.imageio import kspace

h5py = pytest.importorskip("h5py")


def _kspace(coils: int = 3, size: tuple[int, int] = (12, 10), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((coils, *size)) + 1j * rng.standard_normal((coils, *size))).astype(np.complex64)


@pytest.mark.parametrize(("shape", "coils"), [((12, 10), 1), ((3, 12, 10), 3)])
def test_npy_kspace_of_one_or_several_coils(tmp_path, shape, coils) -> None:
    values = _kspace(coils).reshape(shape)
    np.save(tmp_path / "k.npy", values)
    info = kspace.probe_kspace(tmp_path / "k.npy")
    assert (info.format, info.slices, info.coils, info.size) == ("npy", 1, coils, (12, 10))
    assert np.array_equal(kspace.read_kspace(info, None), values.reshape(coils, 12, 10))


@pytest.mark.parametrize("multicoil", [True, False])
def test_fastmri_h5_slices_are_read_one_at_a_time(tmp_path, multicoil) -> None:
    data = np.stack([_kspace(2, seed=s) for s in range(4)])  # (slices, coils, H, W)
    if not multicoil:
        data = data[:, 0]
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("kspace", data=data)
    info = kspace.probe_kspace(tmp_path / "scan.h5")
    assert (info.format, info.slices, info.coils, info.size) == ("h5", 4, 2 if multicoil else 1, (12, 10))
    assert np.array_equal(kspace.read_kspace(info, 2), data[2].reshape(info.coils, 12, 10))
    with pytest.raises(UsageError, match="has 4 slice"):
        kspace.read_kspace(info, 4)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: np.save(p / "k.npy", np.ones((3, 12, 10), np.float32)), "not complex k-space"),
    (lambda p: np.save(p / "k.npy", _kspace(2)[None, None]), "is not k-space"),
])
def test_npy_that_is_not_kspace_is_refused_in_one_line(tmp_path, make, message) -> None:
    make(tmp_path)
    with pytest.raises(UsageError, match=message):
        kspace.probe_kspace(tmp_path / "k.npy")


def test_h5_without_kspace_or_of_the_wrong_layout_is_refused(tmp_path) -> None:
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=np.ones((2, 8, 8), np.float32))
    with pytest.raises(UsageError, match=r"no 'kspace' dataset .found: reconstruction_rss"):
        kspace.probe_kspace(tmp_path / "a.h5")
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("kspace", data=_kspace(2)[0])  # (H, W): no slice axis
    with pytest.raises(UsageError, match="is not k-space"):
        kspace.probe_kspace(tmp_path / "b.h5")
    (tmp_path / "c.h5").write_bytes(b"not hdf5")
    with pytest.raises(ImageReadError, match="not a readable HDF5"):
        kspace.probe_kspace(tmp_path / "c.h5")


def test_without_h5py_an_h5_file_is_the_missing_extra(tmp_path, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(MissingExtraError, match="needs the h5py package") as error:
        kspace.probe_kspace(tmp_path / "scan.h5")
    assert error.value.exit_code == 3 and "diffrestore[mri]" in str(error.value.hint)


def test_coil_maps_from_npy_and_h5_and_their_shape_check(tmp_path) -> None:
    maps = _kspace(3, seed=5)
    np.save(tmp_path / "maps.npy", maps)
    assert np.array_equal(kspace.read_coil_maps(tmp_path / "maps.npy"), maps)
    with h5py.File(tmp_path / "maps.h5", "w") as f:
        f.create_dataset("sens_maps", data=np.stack([maps, 2 * maps]))  # (slices, coils, H, W)
    assert np.array_equal(kspace.read_coil_maps(tmp_path / "maps.h5", slice_index=1), 2 * maps)
    kspace.check_maps(maps, _kspace(3), "maps.npy", Path("k.npy"))
    with pytest.raises(SizeMismatchError, match=r"maps of shape \(3, 12, 10\) do not fit k.npy's k-space of shape "
                       r"\(4, 12, 10\)"):
        kspace.check_maps(maps, _kspace(4), "maps.npy", Path("k.npy"))


def test_mask_files_npy_columns_and_pictures(tmp_path) -> None:
    columns = np.zeros(10, np.int64)
    columns[[1, 4, 5, 8]] = 1
    np.save(tmp_path / "cols.npy", columns)
    mask = kspace.read_mask_file(tmp_path / "cols.npy", (12, 10))
    assert mask.shape == (12, 10) and mask.dtype == bool and (mask == columns.astype(bool)[None]).all()
    picture = np.zeros((12, 10), np.uint8)
    picture[3:9, 2:7] = 255
    Image.fromarray(picture).save(tmp_path / "mask.png")
    assert (kspace.read_mask_file(tmp_path / "mask.png", (12, 10)) == (picture > 0)).all()
    with pytest.raises(SizeMismatchError, match=r"mask of shape \(12, 10\) does not fit k-space of \(H, W\) = "
                       r"\(10, 12\)"):
        kspace.read_mask_file(tmp_path / "mask.png", (10, 12))
    np.save(tmp_path / "bad.npy", np.full((12, 10), 0.5))
    with pytest.raises(UsageError, match=r"only 0 .skipped. and 1"):
        kspace.read_mask_file(tmp_path / "bad.npy", (12, 10))


def test_the_sampling_pattern_of_zero_filled_kspace() -> None:
    values = _kspace(2, (16, 16))
    columns = np.zeros(16, bool)
    columns[[0, 3, 7, 8, 9, 12]] = True
    sampled = values * columns[None, None]
    sampled[0, 5, 3] = sampled[1, 5, 3] = 0  # a sample that happens to be zero keeps its line
    assert (kspace.mask_from_zeros(sampled) == columns[None]).all()
    assert (kspace.mask_from_zeros(values * columns[None, :, None]) == columns[:, None]).all()  # rows
    points = np.random.default_rng(1).random((16, 16)) < 0.3
    assert (kspace.mask_from_zeros(values * points) == points).all()


def test_reconstruction_files() -> None:
    image = _kspace(1)[0]
    assert np.array_equal(np.load(io.BytesIO(kspace.complex_npy_bytes(image))), image)
    with h5py.File(io.BytesIO(kspace.reconstruction_h5_bytes(np.abs(image))), "r") as f:
        assert f["reconstruction"].shape == (1, 12, 10)
        assert np.allclose(f["reconstruction"][0], np.abs(image))


def test_magnitude_images_for_simulation(tmp_path) -> None:
    grey = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000
    Image.fromarray(grey).save(tmp_path / "m.png")
    values, fmt, depth, _ = kspace.read_magnitude(tmp_path / "m.png")
    assert (fmt, depth) == ("png", 16) and np.allclose(values, grey / 65535, atol=1e-6)
    np.save(tmp_path / "m.npy", -np.ones((6, 8), np.float32))
    values, fmt, depth, notes = kspace.read_magnitude(tmp_path / "m.npy")
    assert (fmt, depth) == ("npy", 32) and (values == 1).all() and "absolute value" in notes[0]
    np.save(tmp_path / "black.npy", np.zeros((6, 8), np.float32))
    with pytest.raises(UsageError, match="black"):
        kspace.read_magnitude(tmp_path / "black.npy")


def test_an_mr_dicom_gives_its_stored_values() -> None:
    pytest.importorskip("pydicom")
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("MR_small.dcm"))
    values, fmt, depth, _ = kspace.read_magnitude(path)
    assert (fmt, depth, values.shape) == ("dicom", 32, (64, 64))
    assert np.array_equal(values, dcmread(path).pixel_array.astype(np.float32))  # no rescale in this file
