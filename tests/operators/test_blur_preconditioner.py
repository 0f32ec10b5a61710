"""operators/blur.py's preconditioner for reflect / replicate blur by a kernel far from separable (a motion kernel):
the circular blur's exact solve on a zero-padded torus, cropped back, ``S (s C C^T + t I)^-1 S^T``. Checked
against that matrix built densely in float64 (at real-photo noise, sigma 1/255 on [0, 1], and at 0.1, one scale
per item; the shift is tau^2, tau = 2 sigma in tensor units), and against the image-sized torus it replaces."""

from __future__ import annotations

import math

import pytest
import torch

from diffrestore.operators import build_operator
from diffrestore.operators.blur import BlurOperator

SCALES = torch.tensor([0.05, 2.0])  # DAPS's r_t^2, one per item


def _padded_matrix(op: BlurOperator, size: tuple[int, int], scale: float, shift: float) -> torch.Tensor:
    """S (scale C C^T + shift I)^-1 S^T in float64: C the circular blur on the ``size`` torus, S the image's
    pixels (the torus's top-left corner)."""
    circular = BlurOperator((1, *size), op.kernel.double(), boundary="circular").to(torch.float64)
    pixels = math.prod(size)
    c = circular(torch.eye(pixels, dtype=torch.float64).view(-1, 1, *size)).flatten(1).T
    inverse = torch.linalg.inv(scale * c @ c.T + shift * torch.eye(pixels, dtype=torch.float64))
    _, height, width = op.image_shape
    keep = torch.zeros(size, dtype=torch.bool)
    keep[:height, :width] = True
    keep = keep.flatten()
    return inverse[keep][:, keep]


@pytest.mark.parametrize("sigma", [1 / 255, 0.1], ids=["sigma1/255", "sigma0.1"])
@pytest.mark.parametrize("boundary", ["reflect", "replicate"])
def test_the_padded_preconditioner_is_the_dense_padded_solve(sigma: float, boundary: str) -> None:
    op = build_operator("motion_blur", (1, 9, 11), kernel_size=9, boundary=boundary)
    assert op.axis_matrices() is None  # far from separable: the padded torus preconditions it
    v = torch.randn(2, 1, 9, 11, generator=torch.Generator().manual_seed(0))
    shift = (2 * sigma) ** 2
    with torch.no_grad():
        got = op.gram_preconditioner(SCALES, shift)(v).double().flatten(1)
    size = (18, 20)  # the FFT grid: 9 + 8 = 17 rows and 11 + 8 = 19 columns rounded up to fast lengths
    for i in range(2):
        want = _padded_matrix(op, size, float(SCALES[i]), shift) @ v[i].double().flatten()
        assert float((got[i] - want).norm() / want.norm()) < 1e-4, i


def _products(op: BlurOperator, v: torch.Tensor, scale: float, shift: float) -> int:
    calls, forward = [0], op.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return forward(x)

    op.forward = counted
    try:
        with torch.no_grad():
            op.gram_solve(v, scale, shift, tol=1e-3)
    finally:
        del op.forward
    return calls[0]


def test_padding_the_torus_saves_steps_over_the_image_sized_one() -> None:
    """The image-sized torus lets C C^T couple the top border with the bottom one, which the reflect border never
    does; on a 32 px image with a 9-px motion kernel the padded torus needs fewer CG steps at photo noise."""
    op = build_operator("motion_blur", (1, 32, 32), kernel_size=9)
    v = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    shift = (2 / 255) ** 2
    op.gram_cg_max_iter = 1000  # both run to the tolerance
    padded = _products(op, v, 0.3, shift)
    op._padded_gram_inverse = op._circulant_gram_inverse  # the image-sized torus, as before
    assert padded < _products(op, v, 0.3, shift)
