"""Border extension along one axis, as small dense matrices.

Blur and super-resolution read pixels past the image border. Writing the extension as matrices ``E_before`` /
``E_after`` (one 1 per row, picking the source pixel) gives an exact adjoint without autograd (their transposes fold
the border back), and the same result on every device.
"""

from __future__ import annotations

import torch


def _source_index(i: int, n: int, mode: str) -> int:
    """Which pixel of a length-``n`` row sits at (possibly out-of-range) position ``i`` after extension."""
    if mode == "zero":
        return -1
    if mode == "replicate" or n == 1:
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    # reflect without repeating the edge (torch's "reflect"), continued periodically for any distance
    period = 2 * (n - 1)
    i = i % period
    return i if i < n else period - i


def extension_matrices(n: int, before: int, after: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices ``E_b (before, n)`` and ``E_a (after, n)`` whose rows pick the source pixel of each padded one
    (an all-zero row for ``mode="zero"``)."""
    e_before = torch.zeros(before, n)
    e_after = torch.zeros(after, n)
    for matrix, positions in ((e_before, range(-before, 0)), (e_after, range(n, n + after))):
        for row, i in enumerate(positions):
            source = _source_index(i, n, mode)
            if source >= 0:
                matrix[row, source] = 1.0
    return e_before, e_after


def extend(x: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor, axis: int) -> torch.Tensor:
    """Extend ``x`` along ``axis`` (-2 = rows, -1 = columns) by the extension matrices."""
    if axis == -2:
        return torch.cat([e_before @ x, x, e_after @ x], dim=-2)
    return torch.cat([x @ e_before.T, x, x @ e_after.T], dim=-1)


def extend_adjoint(g: torch.Tensor, e_before: torch.Tensor, e_after: torch.Tensor, axis: int) -> torch.Tensor:
    """Adjoint of ``extend``: fold the padded border back onto the pixels it was copied from."""
    nb, na = e_before.shape[0], e_after.shape[0]
    n = g.shape[axis] - nb - na
    if axis == -2:
        gb, gi, ga = g[..., :nb, :], g[..., nb : nb + n, :], g[..., nb + n :, :]
        return gi + e_before.T @ gb + e_after.T @ ga
    gb, gi, ga = g[..., :nb], g[..., nb : nb + n], g[..., nb + n :]
    return gi + gb @ e_before + ga @ e_after


def register_blur_extension(module: torch.nn.Module, height: int, width: int, kernel_shape: tuple[int, int],
                            mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The extension a linear convolution by a (kh, kw) kernel (centre at (kh // 2, kw // 2)) needs: kh - 1 -
    kh // 2 rows above, kh // 2 below (columns alike), registered on ``module`` as ``rows_before``,
    ``rows_after``, ``cols_before``, ``cols_after`` buffers (so ``.to()`` moves them) and returned."""
    kh, kw = kernel_shape
    rb, ra = extension_matrices(height, kh - 1 - kh // 2, kh // 2, mode)
    cb, ca = extension_matrices(width, kw - 1 - kw // 2, kw // 2, mode)
    for name, matrix in (("rows_before", rb), ("rows_after", ra), ("cols_before", cb), ("cols_after", ca)):
        module.register_buffer(name, matrix)
    return rb, ra, cb, ca
