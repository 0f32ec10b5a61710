"""The product-convolution blur: exact adjoint, the one-kernel case is the uniform blur bit for bit, constants kept,
each region blurred by its own kernel, the Gram solve against a dense one."""

from __future__ import annotations

import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.operators.blur import BlurOperator
from diffrestore.operators.kernels import motion_blur_kernel
from diffrestore.operators.varying_blur import VaryingBlurOperator, hat_weights

BOUNDARIES = ("reflect", "replicate", "circular")


def _grid(rows: int, cols: int, size: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, cols, size, size, generator=g) + 0.01


def _dense(op, shape) -> torch.Tensor:
    """The operator as a dense matrix (float64), column j = A e_j."""
    n = int(torch.tensor(shape).prod())
    eye = torch.eye(n, dtype=getattr(op, "kernels", torch.empty(0)).dtype).reshape(n, *shape)
    return op(eye).reshape(n, -1).T.double()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_the_adjoint_is_exact(boundary):
    op = VaryingBlurOperator((3, 20, 23), _grid(3, 2), boundary=boundary)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 3, 20, 23, generator=g), torch.randn(2, 3, 20, 23, generator=g)
    lhs, rhs = (op(x) * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-5 * float(op(x).norm() * y.norm())
    # and the adjoint is the dense matrix's transpose, entry by entry
    small = VaryingBlurOperator((1, 7, 6), _grid(2, 2, size=3), boundary=boundary)
    dense = _dense(small, (1, 7, 6))
    adjoint_dense = _dense(type("Adj", (), {"__call__": lambda self, v: small.adjoint(v)})(), (1, 7, 6))
    torch.testing.assert_close(adjoint_dense, dense.T, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_one_kernel_is_the_uniform_blur_bit_for_bit(boundary):
    kernel = motion_blur_kernel(9, generator=torch.Generator().manual_seed(3))
    uniform = BlurOperator((3, 32, 29), kernel, boundary=boundary)
    varying = VaryingBlurOperator((3, 32, 29), kernel[None, None], boundary=boundary)
    x = torch.randn(2, 3, 32, 29, generator=torch.Generator().manual_seed(0))
    assert torch.equal(varying(x), uniform(x))
    assert torch.equal(varying.adjoint(x), uniform.adjoint(x))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_light_is_conserved_and_equal_kernels_make_the_uniform_blur(boundary):
    # Each scene point's light is spread by its own (blended) kernel: on the torus the image's sum is kept and
    # A^T 1 = sum_k w_k = 1 exactly. (A constant image is kept only where the weights are linear over a kernel's
    # support and the kernels share their centroid: the model conserves light, not pixel values.)
    op = VaryingBlurOperator((1, 24, 24), _grid(3, 3), boundary=boundary)
    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(6))
    if boundary == "circular":
        torch.testing.assert_close(op(x).sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
        torch.testing.assert_close(op.adjoint(torch.ones(1, 1, 24, 24)), torch.ones(1, 1, 24, 24))
    kernel = _grid(1, 1, size=7)[0, 0]
    same = VaryingBlurOperator((1, 24, 24), kernel.expand(2, 4, 7, 7), boundary=boundary)
    torch.testing.assert_close(same(x), BlurOperator((1, 24, 24), kernel, boundary=boundary)(x),
                               atol=1e-5, rtol=1e-5)


def test_each_region_is_blurred_by_its_own_kernel():
    # left half of the grid: the identity kernel; right half: a horizontal 7-tap box
    identity = torch.zeros(7, 7)
    identity[3, 3] = 1.0
    box = torch.zeros(7, 7)
    box[3, :] = 1.0
    grid = torch.stack([torch.stack([identity, box])])  # (1, 2, 7, 7)
    op = VaryingBlurOperator((1, 16, 64), grid)
    x = torch.zeros(1, 1, 16, 64)
    x[..., 8, 4] = 1.0  # left of the first node (weight 1 on the identity)
    x[..., 8, 56] = 1.0  # right of the last node (weight 1 on the box), clear of the border
    y = op(x)[0, 0]
    assert float(y[8, 4]) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(y[8, 53:60], torch.full((7,), 1 / 7), atol=1e-6, rtol=0)
    assert float(y[8, 60:].abs().max()) < 1e-6 and float(y[7].abs().max()) < 1e-6


def test_hat_weights_are_a_partition_of_unity():
    for length, nodes in ((64, 1), (64, 2), (65, 3), (10, 10), (100, 7)):
        w = hat_weights(length, nodes)
        assert w.shape == (nodes, length) and bool((w >= 0).all())
        torch.testing.assert_close(w.sum(dim=0), torch.ones(length))
    w = hat_weights(64, 4)
    # the first node sits at 7.5: pixels 0..7 take its kernel alone, 8 already blends in the next
    assert float(w[0, :8].min()) == 1.0 and float(w[0, 8]) < 1.0


@pytest.mark.parametrize("sigma", [1 / 255, 0.1])
@pytest.mark.parametrize("boundary", ["reflect", "circular"])
def test_gram_solve_agrees_with_a_dense_solve(boundary, sigma):
    # float64: at sigma 1/255 the system's condition number (~1e5) leaves float32 CG a rounding floor near 1e-3
    op = VaryingBlurOperator((1, 12, 10), _grid(2, 2, size=3, seed=4), boundary=boundary).to(torch.float64)
    op.gram_cg_max_iter = 500
    dense = _dense(op, (1, 12, 10))
    v = torch.randn(2, 1, 12, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    scale = torch.tensor([1.0, 0.25], dtype=torch.float64)
    u = op.gram_solve(v, scale, sigma**2, tol=1e-7)
    for i in range(2):
        system = float(scale[i]) * dense @ dense.T + sigma**2 * torch.eye(120, dtype=torch.float64)
        expected = torch.linalg.solve(system, v[i].reshape(-1).double())
        err = (u[i].reshape(-1).double() - expected).norm() / expected.norm()
        assert float(err) < 1e-4


def test_bad_grids_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="rows, cols, kh, kw"):
        VaryingBlurOperator((1, 16, 16), torch.ones(3, 5, 5))
    with pytest.raises(UsageError, match=r"kernel \(0, 1\) of the grid"):
        bad = torch.ones(1, 2, 3, 3)
        bad[0, 1, 1, 1] = -1.0
        VaryingBlurOperator((1, 16, 16), bad)
    with pytest.raises(UsageError, match="finer than"):
        VaryingBlurOperator((1, 4, 4), torch.ones(5, 1, 3, 3))


def test_it_moves_with_to_and_its_norm_is_about_one():
    op = VaryingBlurOperator((1, 16, 16), _grid(2, 2)).to(torch.float64)
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    assert op(x).dtype == torch.float64
    assert 0.9 < VaryingBlurOperator((1, 32, 32), _grid(2, 2)).norm() < 1.3
