"""diffrestore.operators.mri: the centred orthonormal FFT against numpy's conventions, the operator against a
per-coil numpy reference, adjointness, unitarity where the maths says so, Gram solves and the pseudo-inverse
against dense float64 matrices, and the zero-filled / RSS reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from operator_cases import dense_matrix

from diffrestore.errors import SizeMismatchError, UsageError
from diffrestore.operators import build_operator, image_shape_for_measurement
from diffrestore.operators.mri import (
    MultiCoilMRI,
    channels_to_complex,
    complex_to_channels,
    fft2c,
    ifft2c,
    magnitude,
    normalise_maps,
    simulated_maps,
)
from diffrestore.operators.mri_masks import equispaced_lines, poisson_disc, random_lines


def _rand(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _random_maps(coils: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Unnormalised complex maps with no structure at all: nothing in the operator may rely on smoothness."""
    return torch.complex(_rand((coils, *size), seed), _rand((coils, *size), seed + 1))


def _np_fft2c(z: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(z, axes=axes), norm="ortho"), axes=axes)


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (6, 5)], ids=["even", "odd-width", "odd-height"])
def test_centred_fft_matches_numpy_and_inverts(size: tuple[int, int]) -> None:
    z = torch.complex(_rand((2, *size), 0), _rand((2, *size), 1))
    want = _np_fft2c(z.numpy().astype(np.complex128))
    np.testing.assert_allclose(fft2c(z).numpy(), want, atol=1e-5)
    torch.testing.assert_close(ifft2c(fft2c(z)), z, atol=1e-5, rtol=0)
    # DC (the plain sum over the image, scaled by 1 / sqrt(H W)) sits at (H // 2, W // 2)
    dc = z.sum(dim=(-2, -1)) / np.sqrt(size[0] * size[1])
    torch.testing.assert_close(fft2c(z)[:, size[0] // 2, size[1] // 2], dc, atol=1e-5, rtol=0)


def test_parseval() -> None:
    z = torch.complex(_rand((3, 11, 10), 2), _rand((3, 11, 10), 3))
    assert torch.allclose(fft2c(z).abs().pow(2).sum(), z.abs().pow(2).sum(), rtol=1e-5)


def test_channels_round_trip_and_layout() -> None:
    x = _rand((2, 6, 4, 5), 4)
    z = channels_to_complex(x)
    assert z.shape == (2, 3, 4, 5)
    assert torch.equal(z[:, 1].real, x[:, 2]) and torch.equal(z[:, 1].imag, x[:, 3])  # (re, im) per coil
    assert torch.equal(complex_to_channels(z), x)
    torch.testing.assert_close(magnitude(x[:, :2]), z[:, :1].abs())


@pytest.mark.parametrize("coils", [1, 3])
def test_forward_matches_a_numpy_reference_per_coil(coils: int) -> None:
    size = (7, 10)
    mask = random_lines(size, 2.0, generator=torch.Generator().manual_seed(0)).mask
    maps = _random_maps(coils, size, 5) if coils > 1 else None
    op = MultiCoilMRI((2, *size), mask, maps)
    x = _rand((2, 2, *size), 6)
    z = x[:, 0].numpy() + 1j * x[:, 1].numpy()
    s = np.ones((1, *size)) if maps is None else maps.numpy()
    want = mask.numpy() * _np_fft2c(s[None] * z[:, None])  # (N, C, H, W)
    got = op(x)
    assert got.shape == (2, 2 * coils, *size)
    np.testing.assert_allclose(got[:, 0::2].numpy(), want.real, atol=1e-5)
    np.testing.assert_allclose(got[:, 1::2].numpy(), want.imag, atol=1e-5)


@pytest.mark.parametrize(("coils", "mask_kind"), [(1, "lines"), (4, "lines"), (3, "poisson")])
def test_adjoint_is_exact_to_float32_rounding(coils: int, mask_kind: str) -> None:
    size = (13, 10)
    generator = torch.Generator().manual_seed(1)
    mask = (random_lines(size, 3.0, generator=generator) if mask_kind == "lines"
            else poisson_disc(size, 2.0, generator=generator)).mask
    op = MultiCoilMRI((2, *size), mask, _random_maps(coils, size, 7) if coils > 1 else None)
    x, y = _rand((3, 2, *size), 8), _rand((3, 2 * coils, *size), 9)
    lhs, rhs = (op(x) * y).sum().double(), (x * op.adjoint(y)).sum().double()
    assert abs(lhs - rhs) <= 1e-5 * op(x).norm() * y.norm()


def test_fully_sampled_single_coil_is_unitary() -> None:
    op = MultiCoilMRI((2, 9, 8), torch.ones(9, 8))
    x = _rand((2, 2, 9, 8), 10)
    torch.testing.assert_close(op.adjoint(op(x)), x, atol=1e-5, rtol=0)
    assert torch.allclose(op(x).norm(), x.norm(), rtol=1e-5)
    assert op.norm() == 1.0 and op.acceleration == 1.0


def test_fully_sampled_normalised_coils_are_an_isometry() -> None:
    maps = normalise_maps(_random_maps(4, (8, 7), 11))
    op = MultiCoilMRI((2, 8, 7), torch.ones(8, 7), maps)
    x = _rand((2, 2, 8, 7), 12)
    torch.testing.assert_close(op.adjoint(op(x)), x, atol=1e-5, rtol=0)  # A^T A = sum_c |S_c|^2 = I
    assert op.norm() == pytest.approx(1.0, abs=1e-5)


def test_a_single_coil_gram_is_the_mask() -> None:
    mask = random_lines((8, 8), 2.0).mask
    diagonal = MultiCoilMRI((2, 8, 8), mask).gram_diag()
    assert diagonal is not None and torch.equal(diagonal[0, 0], mask.float()) and torch.equal(diagonal[0, 1],
                                                                                               mask.float())
    assert MultiCoilMRI((2, 8, 8), mask, simulated_maps(2, (8, 8))).gram_diag() is None


GRAM_CASES = {
    "single-coil-lines": (1, "vertical"),
    "coils-vertical-lines": (3, "vertical"),
    "coils-horizontal-lines": (3, "horizontal"),
    "single-unnormalised-map": (-1, "vertical"),
    "coils-poisson": (3, "poisson"),
}


def _gram_case(key: str) -> MultiCoilMRI:
    coils, layout = GRAM_CASES[key]
    size = (8, 8)
    generator = torch.Generator().manual_seed(2)
    mask = (poisson_disc(size, 2.0, generator=generator) if layout == "poisson"
            else equispaced_lines(size, 2.5, generator=generator, orientation=layout)).mask
    maps = None if coils == 1 else _random_maps(abs(coils), size, 13)
    return MultiCoilMRI((2, *size), mask, maps)


@pytest.mark.parametrize("key", list(GRAM_CASES))
def test_gram_solve_matches_the_dense_solve(key: str) -> None:
    op = _gram_case(key)
    exact = op.gram_diag() is not None or op._line_eigen() is not None
    assert exact == (GRAM_CASES[key][1] != "poisson")
    a = dense_matrix(op, op.image_shape)
    op = op.to(torch.float32)
    v = _rand((2, *op.output_shape), 14)
    scale, shift = torch.tensor([0.05, 3.0]), 0.1**2
    with torch.no_grad():
        got = op.gram_solve(v, scale, shift).double().flatten(1)
    for i in range(2):
        system = scale[i].double() * a @ a.T + shift * torch.eye(a.shape[0], dtype=torch.float64)
        want = torch.linalg.solve(system, v[i].double().flatten())
        # exact routes: float32 rounding times the condition number (<= 1 + 3 ||A||^2 / 0.01); CG: its tolerance
        error = float((got[i] - want).abs().max() / want.abs().max())
        assert error < (2e-4 if exact else 2e-3), (key, i, error)


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
def test_line_mask_pinv_and_norm_match_the_dense_matrix(orientation: str) -> None:
    size = (8, 9)
    mask = random_lines(size, 2.0, orientation=orientation, generator=torch.Generator().manual_seed(3)).mask
    op = MultiCoilMRI((2, *size), mask, _random_maps(3, size, 15))
    a = dense_matrix(op, op.image_shape)  # moves op to float64: the check is of the maths, not of rounding
    y = op(_rand((2, *op.image_shape), 16).double())
    want = (torch.linalg.pinv(a) @ y.flatten(1).T).T
    torch.testing.assert_close(op.pinv(y).flatten(1), want, atol=1e-8, rtol=0)
    assert op.norm() == pytest.approx(float(torch.linalg.matrix_norm(a, ord=2)), rel=1e-6)


def test_zero_filled_and_rss() -> None:
    size = (8, 6)
    x = _rand((2, 2, *size), 17)
    maps = _random_maps(3, size, 18)  # not normalised: the combination divides by sum |S|^2
    full = MultiCoilMRI((2, *size), torch.ones(size), maps)
    torch.testing.assert_close(full.zero_filled(full(x)), x, atol=1e-4, rtol=1e-4)
    # normalised maps: the zero-filled image is the adjoint (InverseBench's MVUE), here from undersampled data
    mask = random_lines(size, 2.0).mask
    op = MultiCoilMRI((2, *size), mask, normalise_maps(maps))
    y = op(x)
    torch.testing.assert_close(op.zero_filled(y), op.adjoint(y), atol=1e-5, rtol=0)
    # one coil of ones, fully sampled: RSS is the magnitude image
    single = MultiCoilMRI((2, *size), torch.ones(size))
    torch.testing.assert_close(single.rss(single(x)), magnitude(x), atol=1e-5, rtol=0)
    assert op.rss(y).shape == (2, 1, *size) and bool((op.rss(y) >= 0).all())


def test_forward_is_differentiable() -> None:
    op = MultiCoilMRI((2, 6, 7), random_lines((6, 7), 2.0).mask, simulated_maps(2, (6, 7)))
    x = _rand((1, 2, 6, 7), 19).requires_grad_()
    (op(x) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * op.adjoint(op(x.detach())), atol=1e-5, rtol=0)


def test_float64_move_keeps_the_imaginary_parts() -> None:
    op = MultiCoilMRI((2, 6, 6), torch.ones(6, 6), simulated_maps(2, (6, 6)))
    x = _rand((1, 2, 6, 6), 20)
    expected = op(x)
    moved = op.to(torch.float64)  # Module.to moves in place
    assert moved.coil_maps().dtype == torch.complex128 and bool((moved.coil_maps().imag != 0).any())
    torch.testing.assert_close(moved(x.double()).float(), expected, atol=1e-5, rtol=0)


def test_simulated_maps_are_normalised_and_complex() -> None:
    maps = simulated_maps(4, (10, 12))
    assert maps.shape == (4, 10, 12) and maps.dtype == torch.complex64
    torch.testing.assert_close((maps.abs() ** 2).sum(0), torch.ones(10, 12), atol=1e-5, rtol=0)


def test_factory_builds_mri_and_inverts_its_shape() -> None:
    op = build_operator("mri", (2, 16, 12), sampling="equispaced", acceleration=4, coils=3,
                        generator=torch.Generator().manual_seed(0))
    assert isinstance(op, MultiCoilMRI) and op.output_shape == (6, 16, 12) and op.coils == 3
    assert op.acceleration == pytest.approx(16 * 12 / (16 * 3))  # floor(12 / 4) = 3 lines
    assert image_shape_for_measurement("mri", op.output_shape) == (2, 16, 12)
    given = build_operator("mri", (2, 4, 4), mask=np.eye(4))
    assert torch.equal(given.mask[0, 0], torch.eye(4))
    maps = simulated_maps(2, (4, 4))
    assert torch.equal(build_operator("mri", (2, 4, 4), coil_maps=maps).coil_maps(), maps)


@pytest.mark.parametrize(
    ("shape", "params", "error", "message"),
    [
        ((3, 8, 8), {}, UsageError, r"mri needs complex images as 2 channels \(real, imaginary\), got 3"),
        ((2, 8, 8), {"sampling": "radial"}, UsageError, r"sampling must be one of random, equispaced"),
        ((2, 8, 8), {"acceleration": 0.5}, UsageError, r"acceleration must be a number >= 1"),
        ((2, 8, 8), {"mask": np.ones((8, 6))}, SizeMismatchError, r"mask size 6x8 differs"),
        ((2, 8, 8), {"mask": np.full((8, 8), 0.5)}, UsageError, r"only 0 \(skipped\) and 1 \(sampled\)"),
        ((2, 8, 8), {"mask": np.ones((8, 8)), "acceleration": 4}, UsageError, r"a given mask takes no acceleration"),
        ((2, 8, 8), {"coils": 2, "coil_maps": simulated_maps(2, (8, 8))}, UsageError, r"coils .* or coil_maps"),
        ((2, 8, 8), {"coil_maps": torch.ones(2, 8, 7)}, SizeMismatchError, r"coil maps must have shape \(C, 8, 8\)"),
    ],
)
def test_bad_parameters_give_one_line_messages(shape, params, error, message) -> None:
    with pytest.raises(error, match=message) as info:
        build_operator("mri", shape, **params)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- coil maps from the calibration region


def test_the_calibration_region_is_the_fully_sampled_centre() -> None:
    from diffrestore.operators.mri import calibration_region
    from diffrestore.operators.mri_masks import build_mask, poisson_disc

    lines = build_mask("random", (40, 48), 4.0, center_fraction=0.25, generator=torch.Generator().manual_seed(0))
    rows, cols = calibration_region(lines.mask)
    assert rows == 39 and 11 <= cols <= 13  # whole columns: every row; the 12 centre lines, an odd block around DC
    box = poisson_disc((32, 32), 3.0, calib=(8, 8), generator=torch.Generator().manual_seed(0))
    assert min(calibration_region(box.mask)) >= 7
    empty = torch.ones(16, 16, dtype=torch.bool)
    empty[8, 8] = False
    assert calibration_region(empty) == (0, 0)


def test_acs_maps_recover_smooth_coils_and_need_a_calibration_region() -> None:
    from diffrestore.operators.mri import acs_maps, fft2c
    from diffrestore.operators.mri_masks import build_mask

    size = 48
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = ((xs**2 / 0.7 + ys**2 / 0.5) < 0.8).to(torch.complex64)  # an ellipse
    maps = simulated_maps(4, (size, size))
    kspace = fft2c(maps * image)
    mask = build_mask("random", (size, size), 3.0, center_fraction=0.3, generator=torch.Generator().manual_seed(2)).mask
    estimate = acs_maps(kspace * mask, mask)
    inside = image.abs() > 0
    # maps are known up to one phase per pixel: compare S_c conj(S_0) inside the object
    relative = (estimate * estimate[:1].conj())[:, inside]
    truth = (maps * maps[:1].conj())[:, inside]
    assert float((relative - truth).abs().mean() / truth.abs().mean()) < 0.1
    with pytest.raises(UsageError, match="no fully sampled centre"):
        acs_maps(kspace, torch.zeros(size, size, dtype=torch.bool))
