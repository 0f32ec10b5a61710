"""diffrestore.operators.nonlinear: phase retrieval against numpy's FFT, HDR as a scaled clip, and finite
gradients everywhere for every nonlinear case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from operator_cases import NONLINEAR_CASES, build_case, randn

from diffrestore.operators import build_operator


def test_phase_retrieval_is_the_centred_fft_magnitude_of_the_padded_image() -> None:
    x = randn((1, 1, 5, 7), 14).clamp(-1, 1)
    y = build_operator("phase_retrieval", (1, 5, 7))(x)
    canvas = np.zeros((10, 14))
    canvas[2:7, 3:10] = ((x[0, 0] + 1) / 2).double().numpy()
    expected = np.abs(np.fft.fftshift(np.fft.fft2(canvas))) / math.sqrt(10 * 14)
    assert np.allclose(y[0, 0].numpy(), expected, atol=1e-5)
    # The magnitude forgets where the object sits: moving it inside the frame leaves y unchanged.
    patch = randn((1, 1, 3, 3), 19).clamp(-1, 1)
    here, there = -torch.ones(1, 1, 5, 7), -torch.ones(1, 1, 5, 7)
    here[..., 0:3, 0:3] = patch
    there[..., 2:5, 3:6] = patch
    op = build_operator("phase_retrieval", (1, 5, 7))
    assert torch.allclose(op(here), op(there), atol=1e-5)


def test_hdr_is_a_scaled_clip() -> None:
    x = torch.linspace(-1, 1, 21).view(1, 1, 3, 7)
    y = build_operator("hdr", (1, 3, 7))(x)
    assert torch.allclose(y, torch.from_numpy(np.clip(2 * x.numpy(), -1, 1)))


@pytest.mark.parametrize(("name", "params"), NONLINEAR_CASES)
@pytest.mark.parametrize("start", ["random", "zero", "minus_one", "plus_one"])
def test_nonlinear_operators_have_finite_gradients(name: str, params: dict, start: str) -> None:
    shape = (2, 3, 9, 8)
    x = {"random": randn(shape, 15).clamp(-1, 1), "zero": torch.zeros(shape), "minus_one": -torch.ones(shape)}.get(
        start, torch.ones(shape)
    )
    x = x.clone().requires_grad_(True)
    op = build_case(name, params, shape)
    target = randn((shape[0], *op.output_shape), 16).abs()
    loss = (op(x) - target).square().sum()
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all()
    if start == "random":
        assert grad.abs().sum() > 0
