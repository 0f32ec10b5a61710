"""Kernel grids from a .npy array or a folder of ROW_COL files: normalised, in grid order, bad grids refused in one
line naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffrestore.errors import EXIT_USAGE, InputError
from diffrestore.imageio.kernel_grid import load_kernel_grid


def _grid(rows=2, cols=3, k=5, seed=0):
    return np.random.default_rng(seed).random((rows, cols, k, k)).astype(np.float32) + 0.01


def test_a_npy_grid_reads_in_order_and_normalised(tmp_path):
    grid = _grid()
    path = tmp_path / "g.npy"
    np.save(path, grid * 7)
    kernels = load_kernel_grid(path)
    assert tuple(kernels.shape) == (2, 3, 5, 5)
    np.testing.assert_allclose(kernels.sum(dim=(2, 3)).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kernels[1, 2].numpy(), grid[1, 2] / grid[1, 2].sum(), rtol=1e-5)


def test_a_folder_grid_reads_by_row_and_column(tmp_path):
    grid = _grid(2, 2, 3)
    for r in range(2):
        for c in range(2):
            np.save(tmp_path / f"{r}_{c}.npy", grid[r, c])
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "preview.png")  # ignored: not a node name
    kernels = load_kernel_grid(tmp_path)
    np.testing.assert_allclose(kernels[1, 0].numpy(), grid[1, 0] / grid[1, 0].sum(), rtol=1e-5)
    np.testing.assert_allclose(kernels[0, 1].numpy(), grid[0, 1] / grid[0, 1].sum(), rtol=1e-5)


def _bad(tmp_path, case):
    if case == "not_4d":
        np.save(tmp_path / "g.npy", np.ones((5, 5)))
        return tmp_path / "g.npy", "rows, cols, kh, kw"
    if case == "negative":
        grid = _grid()
        grid[1, 0, 2, 2] = -1.0
        np.save(tmp_path / "g.npy", grid)
        return tmp_path / "g.npy", r"kernel \(1, 0\)"
    if case == "zero_sum":
        grid = _grid()
        grid[0, 2] = 0.0
        np.save(tmp_path / "g.npy", grid)
        return tmp_path / "g.npy", r"kernel \(0, 2\).*sums to 0"
    if case == "missing_node":
        for r, c in ((0, 0), (0, 1), (1, 1)):
            np.save(tmp_path / f"{r}_{c}.npy", np.ones((3, 3)))
        return tmp_path, "lacks 1_0"
    if case == "mixed_sizes":
        np.save(tmp_path / "0_0.npy", np.ones((3, 3)))
        np.save(tmp_path / "0_1.npy", np.ones((5, 5)))
        return tmp_path, "share one size"
    if case == "empty_folder":
        return tmp_path, "no file named ROW_COL"
    if case == "png_file":
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "g.png")
        return tmp_path / "g.png", "neither a .npy array nor a folder"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["not_4d", "negative", "zero_sum", "missing_node", "mixed_sizes", "empty_folder",
                                  "png_file"])
def test_bad_grids_are_one_line_usage_errors(tmp_path, case):
    path, pattern = _bad(tmp_path, case)
    with pytest.raises(InputError, match=pattern) as caught:
        load_kernel_grid(path)
    assert caught.value.exit_code == EXIT_USAGE and "\n" not in str(caught.value)
