"""Read a grid of blur kernels (spatially varying blur): one ``.npy`` array or a folder of kernel files.

``.npy``: a real 4-D array (rows, cols, kh, kw); kernel (r, c) belongs to the node of row r and column c of a
regular grid over the image (node centres at (j + 0.5) L / n - 0.5 along an axis of L pixels with n nodes: the
centres of equal cells), row 0 at the top, column 0 at the left.

Folder: one kernel file per node, named ``ROW_COL`` plus any kernel extension (``0_0.png``, ``0_1.npy``, ...,
counting from 0; every node present, nothing else named like a node), each read as :func:`~.masks.load_kernel`
reads a single kernel; all of one size. Other files in the folder (a README, a preview) are ignored.

Every kernel gets the single kernel's checks (finite, >= 0, positive sum) and is normalised to sum 1; a failure
names the file and the node.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .common import _limit
from .masks import _read_npy, load_kernel

if TYPE_CHECKING:
    import torch

_NODE_NAME = re.compile(r"^(\d+)_(\d+)$")
GRID_HINT = "give a (rows, cols, kh, kw) .npy array, or a folder of kernels named ROW_COL.png / ROW_COL.npy"


def _check_grid_shape(path: Path):
    def check(shape: tuple[int, ...]) -> None:
        if len(shape) != 4 or 0 in shape:
            raise InputError(f"kernel grid '{path}' has shape {tuple(shape)}; it must be (rows, cols, kh, kw)",
                             hint=GRID_HINT)

    return check


def load_kernel_grid(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """A (rows, cols, kh, kw) float32 tensor of kernels, each summing to 1; InputError (exit 2) naming the file
    and the fix for anything else."""
    import torch

    from ..operators.kernels import normalise_kernel

    path = Path(path)
    if path.is_dir():
        return _load_folder(path, max_pixels)
    if path.suffix.lower() != ".npy":
        raise InputError(f"kernel grid '{path}' is neither a .npy array nor a folder of kernels", hint=GRID_HINT)
    array = _read_npy(path, _limit(max_pixels), check_shape=_check_grid_shape(path))
    values = torch.from_numpy(np.array(array, dtype=np.float64, order="C"))
    rows, cols = int(values.shape[0]), int(values.shape[1])
    return torch.stack([torch.stack([normalise_kernel(values[r, c], f"kernel ({r}, {c}) of grid '{path}'",
                                                      error=InputError) for c in range(cols)])
                        for r in range(rows)])


def _load_folder(folder: Path, max_pixels: int | None) -> torch.Tensor:
    import torch

    nodes: dict[tuple[int, int], Path] = {}
    for entry in sorted(folder.iterdir()):
        match = _NODE_NAME.match(entry.stem)
        if not match or not entry.is_file():
            continue
        key = (int(match.group(1)), int(match.group(2)))
        if key in nodes:
            raise InputError(f"kernel grid '{folder}' has two files for node {key}: '{nodes[key].name}' and "
                             f"'{entry.name}'", hint="keep one file per ROW_COL name")
        nodes[key] = entry
    if not nodes:
        raise InputError(f"kernel grid folder '{folder}' holds no file named ROW_COL (e.g. 0_0.png)",
                         hint=GRID_HINT)
    rows = 1 + max(r for r, _ in nodes)
    cols = 1 + max(c for _, c in nodes)
    missing = [f"{r}_{c}" for r in range(rows) for c in range(cols) if (r, c) not in nodes]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"kernel grid folder '{folder}' spans {rows} x {cols} nodes but lacks {shown}",
                         hint="every node of the grid needs its kernel file")
    kernels = [[load_kernel(nodes[r, c], max_pixels=max_pixels) for c in range(cols)] for r in range(rows)]
    first = tuple(kernels[0][0].shape)
    for r in range(rows):
        for c in range(cols):
            if tuple(kernels[r][c].shape) != first:
                raise InputError(f"kernel '{nodes[r, c]}' is {tuple(kernels[r][c].shape)}, but "
                                 f"'{nodes[0, 0].name}' is {first}: a grid's kernels must share one size",
                                 hint="pad the smaller kernels with zeros to one size")
    return torch.stack([torch.stack(row) for row in kernels])
