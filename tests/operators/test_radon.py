"""diffrestore.operators.radon: parallel-beam CT against scikit-image (``radon(circle=False)``, ``iradon``), closed
forms (a disk's projection, mass per view), the exact adjoint, reconstructions that improve with the number of
views, the sparse/full view layouts, and CT's photon-count noise (``noise.TransmissionNoise``).

The operator is not in ``operator_cases.VARIANTS`` (it has no ``OperatorKind`` yet); the invariants that list
drives (adjointness, pinv, norm, Gram solve, dtype moves, batches) are run here on CT geometries.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from operator_cases import dense_matrix, randn
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

from diffrestore.errors import SizeMismatchError, UsageError
from diffrestore.operators import (
    FBP_FILTERS,
    ParallelBeamCT,
    TransmissionNoise,
    sparse_view_index,
    to_full_views,
    to_sparse_views,
    view_angles,
)
from diffrestore.operators.radon import view_mask

UNEVEN = (0.0, 13.5, 47.0, 90.0, 133.3, 179.5)  # not a uniform grid, includes 90 and nearly 180 degrees


@functools.lru_cache(maxsize=4)
def phantom(height: int, width: int) -> np.ndarray:
    """The Shepp-Logan phantom (values in [0, 1]) resized with anti-aliasing, float64."""
    return resize(shepp_logan_phantom(), (height, width), anti_aliasing=True)


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.tensor(image, dtype=torch.float32)[None, None]


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (x.clamp(0, 1) - reference).square().mean()))


# --- geometry ------------------------------------------------------------------------------------------------------


def test_angle_convention_and_detector_count() -> None:
    assert view_angles(30) == tuple(6.0 * i for i in range(30))  # MCG's 30 views: 0, 6, ..., 174
    op = ParallelBeamCT((1, 256, 256), views=30)
    assert op.angles_deg == view_angles(30)
    assert op.output_shape == (1, 363, 30)  # ceil(sqrt(2) 256) detectors, as skimage and MCG
    assert ParallelBeamCT((3, 40, 64), UNEVEN).output_shape == (3, math.ceil(math.sqrt(2) * 64), 6)
    assert ParallelBeamCT((1, 8, 8), views=3, detectors=5).output_shape == (1, 5, 3)


@pytest.mark.parametrize(("shape", "angles"), [((64, 64), None), ((45, 45), UNEVEN), ((48, 40), UNEVEN)],
                         ids=["64-30views", "45-uneven", "48x40-uneven"])
def test_forward_matches_skimage_radon(shape: tuple[int, int], angles: tuple[float, ...] | None) -> None:
    image = phantom(*shape)
    op = ParallelBeamCT((1, *shape), angles, views=None if angles else 30)
    expected = radon(image, np.array(op.angles_deg), circle=False)
    got = op(as_batch(image))[0, 0].double().numpy()
    assert got.shape == expected.shape
    # Same geometry and the same bilinear interpolation: only float32 rounding separates them (measured 1.2e-6).
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_sinogram_orientation() -> None:
    """At 0 degrees the detector runs along x (column sums); at 90 degrees along -y (row sums, bottom row first)."""
    op = ParallelBeamCT((1, 21, 21), angles_deg=(0.0, 90.0))
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10 + 3, 10 + 5] = 1.0  # 3 rows below and 5 columns right of the rotation axis
    y = op(x)[0, 0]
    centre = op.detectors // 2
    assert int(y[:, 0].argmax()) == centre + 5 and float(y[:, 0].max()) == pytest.approx(1.0)
    assert int(y[:, 1].argmax()) == centre - 3 and float(y[:, 1].max()) == pytest.approx(1.0)


def test_every_view_keeps_the_mass_of_an_image_inside_the_circle() -> None:
    # The padded square covers the image at every angle (circle=False), so each projection sums the whole image:
    # exactly at 0 and 90 degrees (the samples are the pixels), to interpolation error at other angles.
    image = as_batch(phantom(64, 64))
    op = ParallelBeamCT((1, 64, 64), angles_deg=(0.0, 90.0, 17.0, 30.0, 45.0, 123.4))
    sums = op(image)[0, 0].double().sum(0)
    total = float(image.double().sum())
    assert torch.allclose(sums[:2], torch.full((2,), total, dtype=torch.float64), rtol=1e-6)
    assert float(((sums - total).abs() / total).max()) < 1e-3


def _disk(size: int, radius: float, supersample: int = 8) -> torch.Tensor:
    """A disk of value 1 centred on pixel (size // 2, size // 2), each pixel its covered fraction."""
    offsets = (torch.arange(size * supersample, dtype=torch.float64) + 0.5) / supersample - 0.5 - size // 2
    inside = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).double()
    return inside.view(size, supersample, size, supersample).mean((1, 3))


def test_a_centred_disk_projects_to_its_chord_length() -> None:
    radius = 20.0
    op = ParallelBeamCT((1, 64, 64), angles_deg=(0.0, 17.0, 45.0, 90.0, 123.4))
    got = op(_disk(64, radius).float()[None, None])[0, 0].double()
    t = torch.arange(op.detectors, dtype=torch.float64) - op.detectors // 2
    chord = 2 * (radius**2 - t**2).clamp_min(0).sqrt()[:, None]
    error = (got - chord).abs()
    # Away from the rim the pixelated disk and the interpolation cost < 1 % of the peak (measured 0.7 %); at the
    # rim the chord has an infinite slope and one pixel of blur moves it by up to 3.8 (of 40).
    assert float(error[t.abs() < radius - 2].max()) < 0.01 * 2 * radius
    assert float(error.max()) < 0.1 * 2 * radius


# --- the exact adjoint ---------------------------------------------------------------------------------------------

GEOMETRIES = [
    pytest.param((1, 1, 32, 32), {"views": 30}, id="32-30views"),
    pytest.param((2, 3, 17, 23), {"angles_deg": UNEVEN}, id="rgb-17x23-uneven"),
    pytest.param((1, 2, 31, 20), {"views": 7, "detectors": 25}, id="31x20-25detectors"),
    pytest.param((1, 1, 1, 9), {"views": 4}, id="one-row"),
]


def _inner_product_gap(op: ParallelBeamCT, shape: tuple[int, ...], adjoint) -> float:
    x, y = randn(shape, 2), randn((shape[0], *op.output_shape), 3)
    lhs = (op(x).double() * y.double()).sum()
    rhs = (x.double() * adjoint(y).double()).sum()
    return float(abs(lhs - rhs) / abs(lhs))


@pytest.mark.parametrize(("shape", "geometry"), GEOMETRIES)
def test_adjoint_is_exact(shape: tuple[int, ...], geometry: dict) -> None:
    op = ParallelBeamCT(shape[1:], **geometry)
    assert _inner_product_gap(op, shape, op.adjoint) < 1e-5  # float32 rounding; measured up to 1.7e-6


def test_the_adjoint_test_rejects_back_projection_by_interpolation() -> None:
    # FBP's unfiltered back-projection, scaled to match, is what MCG's code uses as A^T. It is close (the scale is
    # right to ~1 %) but not the transpose, and the adjoint test must say so.
    op = ParallelBeamCT((1, 32, 32), views=30)

    def smear(y: torch.Tensor) -> torch.Tensor:
        return op.fbp(y, filter="none") * (2 * op.views / math.pi)

    assert _inner_product_gap(op, (1, 1, 32, 32), smear) > 1e-4


def test_autograd_derivatives_are_the_exact_operators() -> None:
    op = ParallelBeamCT((2, 12, 10), views=5)
    x, y = randn((1, 2, 12, 10), 0), randn((1, *op.output_shape), 1)
    xg = x.clone().requires_grad_(True)
    (grad_x,) = torch.autograd.grad((op(xg) * y).sum(), xg)
    assert torch.allclose(grad_x, op.adjoint(y), atol=1e-5)
    yg = y.clone().requires_grad_(True)
    (grad_y,) = torch.autograd.grad((op.adjoint(yg) * x).sum(), yg)
    assert torch.allclose(grad_y, op(x), atol=1e-5)
    # Differentiable to second order (a gradient through A^T, as through a data term's gradient).
    op64 = ParallelBeamCT((1, 5, 4), views=3).double()
    x64 = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: op64.adjoint(op64(v)), (x64,))


# --- the invariants of operator_cases, on CT geometries ----------------------------------------------------------


@pytest.mark.parametrize(("shape", "geometry"), GEOMETRIES[:3])
def test_pinv_is_a_right_inverse_on_the_range(shape: tuple[int, ...], geometry: dict) -> None:
    op = ParallelBeamCT(shape[1:], **geometry)
    y = op(randn(shape, 4))
    assert float((op(op.pinv(y)) - y).norm() / y.norm()) < 1e-2  # CGLS, 100 steps: measured <= 6e-3


@pytest.mark.parametrize("geometry", [{"views": 7}, {"angles_deg": UNEVEN}, {"views": 30}], ids=str)
def test_norm_and_gram_solve_against_the_dense_matrix(geometry: dict) -> None:
    shape = (1, 9, 11)
    op = ParallelBeamCT(shape, **geometry)
    a = dense_matrix(op, shape)
    op = op.to(torch.float32)
    exact = float(torch.linalg.matrix_norm(a, ord=2))
    assert abs(op.norm() - exact) <= 1e-3 * exact
    # Gram solves run CG (no CT preconditioner yet): accurate while scale ||A||^2 / shift stays moderate. At
    # operator_cases' scale 0.3 (condition number ~3e4) the budget of 50 steps leaves a few % (see docs/ct.md).
    v = randn((1, *op.output_shape), 3)
    scale, shift = 1e-3, 0.05**2
    with torch.no_grad():
        got = op.gram_solve(v, scale, shift).double().flatten()
    want = torch.linalg.solve(scale * a @ a.T + shift * torch.eye(a.shape[0], dtype=torch.float64),
                              v.double().flatten())
    assert torch.allclose(got, want, rtol=0, atol=2e-3 * float(want.abs().max()))


def test_float64_move_and_batch_independence() -> None:
    op = ParallelBeamCT((3, 17, 23), UNEVEN)
    x = randn((3, 3, 17, 23), 6)
    y = op(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    op64 = op.to(torch.float64)
    assert op64.cos.dtype == torch.float64
    y64 = op64(x.double())
    assert y64.dtype == torch.float64 and torch.allclose(y64, y.double(), atol=1e-4)
    assert op64.adjoint(y64).dtype == torch.float64
    op = op.to(torch.float32)
    op.max_samples = 700  # force many chunks of views and channels: an image's result must not depend on them
    whole = ParallelBeamCT((3, 17, 23), UNEVEN)
    for i in range(3):
        assert torch.equal(op(x[i:i + 1]), y[i:i + 1])
        assert torch.equal(op.fbp(y[i:i + 1]), op.fbp(y)[i:i + 1])
        assert torch.allclose(op.fbp(y[i:i + 1]), whole.fbp(y)[i:i + 1], atol=1e-5)
        assert torch.allclose(op.adjoint(y[i:i + 1]), whole.adjoint(y)[i:i + 1], atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_result() -> None:
    op = ParallelBeamCT((1, 32, 32), views=30)
    x = randn((2, 1, 32, 32), 7)
    y = op(x)
    moved = op.to("cuda")
    assert torch.allclose(moved(x.cuda()).cpu(), y, atol=1e-4)
    assert torch.allclose(moved.adjoint(y.cuda()).cpu(), op.to("cpu").adjoint(y), atol=1e-4)
    assert torch.allclose(moved.fbp(y.cuda()).cpu(), op.to("cpu").fbp(y), atol=1e-4)


# --- reconstructions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter_name", [f for f in FBP_FILTERS if f != "none"])
def test_fbp_matches_skimage_iradon(filter_name: str) -> None:
    image = phantom(64, 64)
    op = ParallelBeamCT((1, 64, 64), views=30)
    sinogram = radon(image, np.array(op.angles_deg), circle=False)
    expected = iradon(sinogram, np.array(op.angles_deg), circle=False, filter_name=filter_name)
    got = op.fbp(torch.tensor(sinogram, dtype=torch.float32)[None, None], filter_name)[0, 0].double().numpy()
    assert got.shape == expected.shape
    # The same filter, padding and scale; iradon's np.interp drops samples past the last bin, we fade them out
    # over one bin, which shows at the corners only (measured: 3e-4 relative in norm, 5e-3 at worst).
    assert np.linalg.norm(got - expected) <= 2e-3 * np.linalg.norm(expected)
    assert np.abs(got - expected).max() <= 2e-2 * np.abs(expected).max()


def test_reconstructions_improve_with_the_number_of_views() -> None:
    image = as_batch(phantom(64, 64))
    fbp, sart = [], []
    for views in (18, 30, 60):
        op = ParallelBeamCT((1, 64, 64), views=views)
        y = op(image)
        fbp.append(psnr(op.fbp(y), image))
        sart.append(psnr(op.sart(y, clip=(0, 1)), image))
    # measured: FBP 23.6, 26.9, 28.3 dB; SART (5 sweeps) 30.3, 33.6, 38.8 dB
    assert fbp[0] < fbp[1] < fbp[2] and sart[0] < sart[1] < sart[2]
    assert fbp[1] > 25 and all(s > f + 3 for s, f in zip(sart, fbp, strict=True))


def test_tv_beats_sart_on_noisy_sparse_views() -> None:
    image = as_batch(phantom(64, 64))
    op = ParallelBeamCT((1, 64, 64), views=30)
    y = op(image)
    y = y + 0.5 * randn(y.shape, 0)  # about 2 % of the largest ray sum
    sart = op.sart(y, clip=(0, 1))
    tv = op.tv_reconstruct(y, x0=sart, clip=(0, 1))
    # measured: FBP 23.4, SART 25.8, TV 27.8 dB
    assert psnr(tv, image) > psnr(sart, image) + 1 > psnr(op.fbp(y), image) + 2


def test_sart_weights_cover_the_image() -> None:
    op = ParallelBeamCT((1, 16, 16), angles_deg=(0.0, 90.0))
    rays, cover = op.sart_weights()
    assert rays.shape == (1, 1, op.detectors, 2) and cover.shape == (1, 1, 16, 16)
    assert float(rays[0, 0, op.detectors // 2, 0]) == pytest.approx(16.0)  # a column of 16 pixels
    assert torch.allclose(cover, torch.full_like(cover, 2.0))  # every pixel read once per view at 0 and 90


# --- sparse and full view layouts ----------------------------------------------------------------------------------


def test_sparse_views_are_columns_of_the_full_sinogram() -> None:
    full = ParallelBeamCT((1, 24, 24), views=180)
    index = sparse_view_index(180, 30)
    assert index.tolist() == list(range(0, 180, 6))
    sparse = full.subset(index)
    assert sparse.angles_deg == view_angles(30)
    x = randn((2, 1, 24, 24), 0)
    assert torch.allclose(sparse(x), to_sparse_views(full(x), index), atol=1e-5)
    padded = to_full_views(sparse(x), index, 180)
    assert padded.shape == (2, 1, full.detectors, 180)
    assert torch.equal(to_sparse_views(padded, index), sparse(x))
    assert torch.equal(padded[..., ~view_mask(index, 180)], torch.zeros(2, 1, full.detectors, 150))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(UsageError, match="exactly one of angles_deg and views"):
        ParallelBeamCT((1, 8, 8), (0.0, 45.0), views=2)
    with pytest.raises(UsageError, match="views must be >= 1"):
        ParallelBeamCT((1, 8, 8), views=0)
    with pytest.raises(UsageError, match="not a sub-grid"):
        sparse_view_index(180, 7)
    op = ParallelBeamCT((1, 8, 8), views=4)
    with pytest.raises(UsageError, match="filter must be one of"):
        op.fbp(torch.zeros(1, *op.output_shape), "butterworth")
    with pytest.raises(SizeMismatchError):
        op.adjoint(torch.zeros(1, 1, op.detectors, 5))
    with pytest.raises(UsageError, match="view indices"):
        op.subset([0, 4])


# --- photon-count noise --------------------------------------------------------------------------------------------


def test_transmission_noise_statistics() -> None:
    noise = TransmissionNoise(photons=1e4, attenuation=0.05)
    p = torch.tensor([0.0, 20.0, 60.0]).repeat(20000, 1)  # optical depths 0, 1, 3
    y = noise.sample(p, torch.Generator().manual_seed(0))
    assert torch.equal(y, noise.sample(p, torch.Generator().manual_seed(0)))  # only the generator's numbers
    # Mean about p (the log's bias is ~ 1 / (2 counts)); std exp(mu p / 2) / (mu sqrt(photons)) by the delta method.
    expected_std = torch.exp(0.05 * p[0] / 2) / (0.05 * 100)
    assert torch.allclose(y.mean(0), p[0], atol=0.05)
    assert torch.allclose(y.std(0), expected_std, rtol=0.03)
    assert noise.std == pytest.approx(float(expected_std[0]))


def test_transmission_log_likelihood_is_the_poisson_log_pmf() -> None:
    from scipy.stats import poisson

    noise = TransmissionNoise(photons=50.0, attenuation=0.1)
    ax = torch.tensor([[0.0, 5.0, 30.0, 80.0]])
    y = noise.sample(ax, torch.Generator().manual_seed(1))
    counts = noise.counts(y).round().numpy()
    expected = poisson.logpmf(counts, noise.expected_counts(ax).double().numpy()).sum()
    assert float(noise.log_likelihood(y, ax)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(UsageError, match="photons > 0"):
        TransmissionNoise(0.0)
