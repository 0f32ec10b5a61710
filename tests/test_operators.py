"""Measurement operators: one list of cases (``operator_cases``) drives every invariant (adjoint, pinv, shapes,
moves); then each operator's own behaviour against an independent reference.

References are independent of the code under test: dense matrices and ``torch.linalg.pinv`` in float64, scipy's
``ndimage.convolve``, torch's ``avg_pool2d`` / antialiased ``interpolate``, numpy's FFT, PIL's grey conversion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from operator_cases import (
    ASYM_KERNEL,
    CASES,
    LINEAR_CASES,
    MILD_KERNEL,
    NONLINEAR_CASES,
    SHAPES,
    VARIANTS,
    build_case,
    case_id,
    dense_matrix,
    expected_output_shape,
    is_linear,
    pinv_is_exact,
    randn,
)

from diffrestore.errors import InputError, SizeMismatchError, UsageError
from diffrestore.operators import (
    OPERATOR_NAMES,
    LinearOperator,
    box_mask,
    build_operator,
    image_shape_for_measurement,
    motion_blur_kernel,
    random_mask,
)


def test_every_operator_name_has_test_cases() -> None:
    names_with_cases = {case.values[0] for case in CASES}
    missing = [name for name in OPERATOR_NAMES if name not in names_with_cases]
    assert not missing, f"add test VARIANTS for: {missing}"
    assert set(VARIANTS) <= set(OPERATOR_NAMES), "VARIANTS names an operator that build_operator does not know"


@pytest.mark.parametrize(("name", "params"), CASES)
def test_linearity_flag_matches_the_case_list(name: str, params: dict) -> None:
    op = build_case(name, params, SHAPES[0])
    assert op.linear == is_linear(name, params)
    assert isinstance(op, LinearOperator) == op.linear


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), CASES)
def test_output_shape(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    op = build_case(name, params, shape)
    y = op(randn(shape, 1))
    assert tuple(y.shape) == expected_output_shape(name, params, shape)
    assert y.dtype == torch.float32
    assert tuple(op.output_shape) == tuple(y.shape[1:])
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), LINEAR_CASES)
def test_adjointness(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    op = build_case(name, params, shape)
    x = randn(shape, 2)
    y = randn((shape[0], *op.output_shape), 3)
    lhs = (op(x).double() * y.double()).sum()
    rhs = (x.double() * op.adjoint(y).double()).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-4


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "params"), LINEAR_CASES)
def test_pinv_is_a_right_inverse_on_the_range(name: str, params: dict, shape: tuple[int, int, int, int]) -> None:
    op = build_case(name, params, shape)
    y = op(randn(shape, 4))
    x_hat = op.pinv(y)
    assert x_hat.shape == shape
    error = float((op(x_hat) - y).norm() / y.norm())
    exact = pinv_is_exact(name, params)
    # Exact pinvs must be exact; iterative / spectrum-thresholded ones must still explain 99 % of y.
    assert error < (1e-5 if exact else 1e-2)
    # Moore-Penrose: A^+ A A^+ = A^+ (the pinv adds nothing from the null space).
    if exact:
        assert torch.allclose(op.pinv(op(x_hat)), x_hat, atol=1e-5)


DENSE_PINV_CASES = [
    ("identity", {}),
    ("inpaint", {"fraction": 0.5}),
    ("colorize", {}),
    ("sr", {"factor": 2}),
    ("sr", {"factor": 3, "kernel": "box"}),
    ("kernel_blur", {"kernel": MILD_KERNEL}),
    ("kernel_blur", {"kernel": MILD_KERNEL, "boundary": "circular"}),
    ("kernel_blur", {"kernel": MILD_KERNEL, "boundary": "replicate"}),
    ("compose", {"outer": ("inpaint", {"fraction": 0.5}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("sr", {"factor": 3, "kernel": "box"}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("kernel_blur", {"kernel": MILD_KERNEL}), "inner": ("colorize", {})}),
    ("compose", {"outer": ("colorize", {}), "inner": ("kernel_blur", {"kernel": MILD_KERNEL})}),
]


@pytest.mark.parametrize(
    ("name", "params"), [pytest.param(name, params, id=case_id(name, params)) for name, params in DENSE_PINV_CASES]
)
def test_pinv_matches_the_dense_moore_penrose_inverse(name: str, params: dict) -> None:
    shape = (3, 7, 5)
    op = build_case(name, params, (1, *shape))
    matrix = dense_matrix(op, shape)
    op = op.to(torch.float32)
    y = op(randn((2, *shape), 5))
    expected = (torch.linalg.pinv(matrix) @ y.double().flatten(1).T).T.reshape(2, *shape)
    assert torch.allclose(op.pinv(y).double(), expected, atol=2e-4), float((op.pinv(y).double() - expected).abs().max())


@pytest.mark.parametrize(("name", "params"), CASES)
def test_float64_move_keeps_results(name: str, params: dict) -> None:
    shape = SHAPES[1]
    op = build_case(name, params, shape)
    x = randn(shape, 6)
    y32 = op(x)
    op64 = op.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in op64.buffers() if b.is_floating_point())
    y64 = op64(x.double())
    assert y64.dtype == torch.float64
    assert torch.allclose(y64, y32.double(), atol=1e-4)
    if op.linear:
        assert op64.adjoint(y64).dtype == torch.float64


DEVICES = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
    pytest.param(
        "mps",
        marks=pytest.mark.skipif(
            not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()), reason="no MPS device"
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "params"), CASES)
def test_device_move_gives_the_cpu_result(name: str, params: dict, device: str) -> None:
    shape = SHAPES[1]
    op = build_case(name, params, shape)
    x = randn(shape, 7)
    expected = op(x)
    cpu_norm = op.estimate_norm() if op.linear else None
    moved = op.to(device)
    assert all(b.device.type == device for b in moved.buffers())
    got = moved(x.to(device))
    assert torch.allclose(got.cpu(), expected, atol=1e-4)
    if moved.linear:
        # The norm estimate runs where the operator lives and finds the same number.
        assert abs(moved.estimate_norm() - cpu_norm) <= 1e-4 * cpu_norm
        assert torch.allclose(moved.adjoint(got).cpu(), op.to("cpu").adjoint(expected), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Operator-specific behaviour against independent references
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("boundary", "scipy_mode"), [("reflect", "mirror"), ("replicate", "nearest"), ("circular", "wrap")]
)
@pytest.mark.parametrize("kernel", [ASYM_KERNEL, torch.rand(25, 31, generator=torch.Generator().manual_seed(0))])
def test_blur_matches_scipy_convolution(boundary: str, scipy_mode: str, kernel: torch.Tensor) -> None:
    from scipy import ndimage

    # The second kernel is larger than the 17 x 23 image: the extension must keep reflecting / wrapping.
    x = randn((1, 2, 17, 23), 8)
    op = build_operator("kernel_blur", (2, 17, 23), kernel=kernel, boundary=boundary)
    k = (kernel / kernel.sum()).double().numpy()
    expected = np.stack([ndimage.convolve(x[0, c].double().numpy(), k, mode=scipy_mode) for c in range(2)])
    assert np.allclose(op(x)[0].numpy(), expected, atol=1e-5)


def test_gaussian_blur_uses_the_paper_kernel_and_preserves_constants() -> None:
    op = build_operator("gaussian_blur", (1, 40, 30))
    assert tuple(op.kernel.shape) == (61, 61)
    r = torch.arange(61, dtype=torch.float64) - 30
    profile = torch.exp(-(r**2) / (2 * 3.0**2))
    expected = profile[:, None] * profile[None, :]
    assert torch.allclose(op.kernel.double(), expected / expected.sum(), atol=1e-7)
    flat = torch.full((1, 1, 40, 30), 0.3)
    assert torch.allclose(op(flat), flat, atol=1e-5)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bicubic_sr_matches_torch_antialiased_resize_inside_the_image(factor: int) -> None:
    x = randn((1, 3, 48, 72), 9).clamp(-1, 1)
    y = build_operator("sr", (3, 48, 72), factor=factor, kernel="bicubic")(x)
    reference = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True)
    assert y.shape == reference.shape
    # torch renormalises truncated taps at the border where we reflect: compare two pixels in from the edge.
    assert torch.allclose(y[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-5)


@pytest.mark.parametrize("size", [(16, 24), (17, 23), (31, 20)])
@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_box_sr_is_average_pooling_with_partial_last_blocks(factor: int, size: tuple[int, int]) -> None:
    x = randn((2, 3, *size), 10)
    y = build_operator("sr", (3, *size), factor=factor, kernel="box")(x)
    assert torch.allclose(y, F.avg_pool2d(x, factor, ceil_mode=True), atol=1e-6)


def test_box_sr_pinv_is_nearest_upsampling_when_divisible() -> None:
    op = build_operator("sr", (1, 8, 12), factor=4, kernel="box")
    y = randn((1, 1, 2, 3), 11)
    assert torch.allclose(op.pinv(y), y.repeat_interleave(4, -2).repeat_interleave(4, -1), atol=1e-6)


def test_inpaint_zeroes_missing_pixels_only() -> None:
    mask = box_mask((6, 5), top=1, left=2, height=3, width=2)
    assert mask.shape == (1, 1, 6, 5) and int(mask.sum()) == 6
    op = build_operator("inpaint", (3, 6, 5), mask=mask)
    x = randn((2, 3, 6, 5), 12)
    y = op(x)
    assert (y[:, :, 1:4, 2:4] == 0).all()
    keep = ~mask.expand_as(x)
    assert torch.equal(y[keep], x[keep])


def test_parameters_typed_as_text_are_accepted() -> None:
    assert build_operator("sr", (1, 8, 8), factor="2").factor == 2
    # x, y, width, height, as --box X,Y,W,H: left 1, top 2, 3 wide, 4 high
    from_text = build_operator("inpaint", (1, 8, 8), box="1, 2, 3, 4").missing
    assert torch.equal(from_text, box_mask((8, 8), top=2, left=1, height=4, width=3))
    assert build_operator("gaussian_blur", (1, 8, 8), kernel_size=5.0, sigma="1.5").kernel.shape == (5, 5)


def test_inpaint_default_is_a_centred_half_box() -> None:
    op = build_operator("inpaint", (3, 256, 256))
    missing = op.missing[0, 0]
    rows, cols = missing.any(1).nonzero().flatten(), missing.any(0).nonzero().flatten()
    assert (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])) == (64, 191, 64, 191)
    assert int(missing.sum()) == 128 * 128


def test_inpaint_batched_masks_apply_per_item() -> None:
    masks = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, 0] = True
    masks[1, 0, 3, 3] = True
    op = build_operator("inpaint", (1, 4, 4), mask=masks)
    y = op(torch.ones(2, 1, 4, 4))
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 3, 3] == 1 and y[1, 0, 3, 3] == 0 and y[1, 0, 0, 0] == 1
    with pytest.raises(SizeMismatchError, match="mask batch 2 does not match image batch 3"):
        op(torch.ones(3, 1, 4, 4))


def test_random_mask_has_the_exact_fraction_and_follows_the_seed() -> None:
    a = random_mask((20, 30), 0.7, torch.Generator().manual_seed(1))
    b = random_mask((20, 30), 0.7, torch.Generator().manual_seed(1))
    c = random_mask((20, 30), 0.7, torch.Generator().manual_seed(2))
    assert int(a.sum()) == 420
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_colorize_matches_pil_luminance() -> None:
    from PIL import Image

    rgb = torch.randint(0, 256, (9, 11, 3), generator=torch.Generator().manual_seed(13), dtype=torch.uint8)
    pil_l = np.asarray(Image.fromarray(rgb.numpy(), "RGB").convert("L"), dtype=np.float64)
    x = rgb.permute(2, 0, 1)[None].float() / 255 * 2 - 1
    y = build_operator("colorize", (3, 9, 11))(x)
    ours = ((y[0, 0] + 1) / 2 * 255).double().numpy()
    assert np.abs(ours - pil_l).max() <= 0.51  # PIL rounds to integers


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


# ---------------------------------------------------------------------------------------------------------------
# Motion blur: drawn once, reproducible
# ---------------------------------------------------------------------------------------------------------------
def test_motion_kernel_follows_the_seed_only() -> None:
    a = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(3))
    b = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(3))
    c = motion_blur_kernel(61, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (61, 61) and (a >= 0).all() and abs(float(a.sum()) - 1) < 1e-5
    # Centred on its centre of mass, so blurring does not shift the image.
    grid = torch.arange(61, dtype=torch.float32)
    assert abs(float((a.sum(1) * grid).sum()) - 30) < 0.5 and abs(float((a.sum(0) * grid).sum()) - 30) < 0.5
    # A real streak, not a dot: it spreads over many pixels.
    assert int((a > 1e-4).sum()) > 20


def test_motion_kernel_with_zero_intensity_is_a_straight_streak() -> None:
    kernel = motion_blur_kernel(61, 0.0, torch.Generator().manual_seed(5)).double()
    rows, cols = torch.meshgrid(torch.arange(61.0), torch.arange(61.0), indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], 1).double()
    weights = kernel.flatten()
    centred = points - (weights[:, None] * points).sum(0)
    covariance = (weights[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
    small, large = torch.linalg.eigvalsh(covariance)
    assert large > 20 and small < 0.5  # long along one axis, about a pixel wide across it


def test_motion_blur_operator_is_drawn_once_and_never_redrawn() -> None:
    op = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(7))
    same = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(7))
    other = build_operator("motion_blur", (1, 20, 20), generator=torch.Generator().manual_seed(8))
    assert torch.equal(op.kernel, same.kernel) and not torch.equal(op.kernel, other.kernel)
    x = randn((1, 1, 20, 20), 17)
    torch.manual_seed(123)  # the global RNG must play no part
    first = op(x)
    torch.manual_seed(456)
    assert torch.equal(op(x), first)
    # No generator: a fixed default seed, so the run is still reproducible.
    assert torch.equal(build_operator("motion_blur", (1, 8, 8)).kernel, build_operator("motion_blur", (1, 8, 8)).kernel)


# ---------------------------------------------------------------------------------------------------------------
# Kernel files
# ---------------------------------------------------------------------------------------------------------------
def test_kernel_from_npy_and_png_is_normalised(tmp_path) -> None:
    from PIL import Image

    array = np.array([[0, 1, 0], [2, 4, 2], [0, 1, 0]], dtype=np.float32)
    np.save(tmp_path / "k.npy", array)
    Image.fromarray((array * 50).astype(np.uint8), "L").save(tmp_path / "k.png")
    for path in (tmp_path / "k.npy", tmp_path / "k.png"):
        op = build_operator("kernel_blur", (1, 9, 9), kernel_path=str(path))
        assert torch.allclose(op.kernel, torch.from_numpy(array / array.sum()), atol=1e-6)


def test_kernel_path_errors_come_from_imageio_and_name_the_file(tmp_path) -> None:
    np.save(tmp_path / "zero.npy", np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(InputError, match=r"kernel '.*zero\.npy' sums to 0"):
        build_operator("kernel_blur", (1, 9, 9), kernel_path=str(tmp_path / "zero.npy"))


# ---------------------------------------------------------------------------------------------------------------
# Factory errors: one line, naming what is wrong
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shape", "params", "message"),
    [
        ("blurr", (3, 8, 8), {}, r"unknown operator 'blurr' \(choose one of: identity, inpaint, sr,"),
        ("sr", (3, 8, 8), {"scale": 2}, r"unknown parameter\(s\) scale for operator 'sr' \(accepted: factor, kernel\)"),
        ("identity", (3, 8, 8), {"sigma": 1}, r"accepted: none"),
        ("sr", (3, 8, 8), {"factor": 2.5}, r"sr: factor must be an integer in 2..16, got 2.5"),
        ("sr", (3, 8, 8), {"factor": 1}, r"sr: factor must be an integer in 2..16, got 1"),
        ("sr", (3, 8, 8), {"kernel": "lanczos"}, r"sr: kernel must be one of bicubic, box, got 'lanczos'"),
        ("gaussian_blur", (3, 8, 8), {"kernel_size": 8}, r"kernel_size must be an odd integer"),
        ("gaussian_blur", (3, 8, 8), {"sigma": 0}, r"gaussian_blur: sigma must be a number > 0, got 0"),
        ("gaussian_blur", (3, 8, 8), {"boundary": "zero"}, r"boundary must be one of reflect, replicate, circular"),
        ("motion_blur", (3, 8, 8), {"intensity": 1.5}, r"intensity must be a number >= 0 and <= 1, got 1.5"),
        ("kernel_blur", (3, 8, 8), {}, r"kernel_blur: give exactly one of kernel"),
        ("kernel_blur", (3, 8, 8), {"kernel": torch.zeros(3, 3)}, r"blur kernel must have a positive sum"),
        ("colorize", (1, 8, 8), {}, r"colorize needs an RGB image \(3 channels\), got 1 channel"),
        ("inpaint", (3, 8, 8), {"box": (0, 0, 2, 2), "fraction": 0.5}, r"give only one of mask, box, fraction"),
        ("inpaint", (3, 8, 8), {"box": (6, 0, 4, 2)}, r"does not fit inside the 8x8 image"),
        ("inpaint", (3, 8, 8), {"fraction": 1.0}, r"fraction must be below 1"),
        ("inpaint", (3, 8, 8), {"box": (1, 2, 3)}, r"box must be four integers \(x, y, width, height\)"),
        ("inpaint", (3, 8, 8), {"box": "1,2,x,4"}, r"box must be four integers .*got '1,2,x,4'"),
        ("phase_retrieval", (3, 8, 8), {"oversampling": 0.5}, r"oversampling must be a number >= 1"),
        ("hdr", (3, 8, 8), {"scale": "big"}, r"hdr: scale must be a number > 0, got 'big'"),
        ("hdr", (3, 0, 8), {}, r"image_shape must be positive"),
    ],
)
def test_bad_parameters_give_one_line_messages(name: str, shape: tuple, params: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        build_operator(name, shape, **params)
    assert "\n" not in str(info.value)


def test_mask_of_another_size_names_both_sizes() -> None:
    with pytest.raises(SizeMismatchError, match=r"mask size 8x8 differs from image size 6x8 \(W x H\)"):
        build_operator("inpaint", (3, 8, 6), mask=torch.zeros(8, 8, dtype=torch.bool))


def test_wrong_input_shape_is_a_clear_error() -> None:
    op = build_operator("sr", (3, 16, 16), factor=2)
    with pytest.raises(SizeMismatchError, match=r"built for images of shape \(N, 3, 16, 16\) but got \(1, 3, 16, 17\)"):
        op(torch.zeros(1, 3, 16, 17))
    with pytest.raises(SizeMismatchError, match=r"expects measurements of shape \(N, 3, 8, 8\)"):
        op.adjoint(torch.zeros(1, 3, 16, 16))


def test_image_shape_for_measurement_inverts_the_output_shape() -> None:
    for name, params in [("sr", {"factor": 4}), ("colorize", {}), ("phase_retrieval", {}), ("gaussian_blur", {})]:
        image_shape = (3, 24, 20)
        op = build_operator(name, image_shape, **params)
        assert image_shape_for_measurement(name, op.output_shape, **params) == image_shape
    with pytest.raises(UsageError, match="not an oversampling-2 canvas"):
        image_shape_for_measurement("phase_retrieval", (3, 25, 20))


def test_cg_pinv_handles_a_zero_item_in_the_batch() -> None:
    op = build_operator("sr", (1, 12, 12), factor=3)
    y = torch.stack([torch.zeros(1, 4, 4), randn((1, 4, 4), 18)])
    x = op.pinv(y)
    assert torch.isfinite(x).all() and (x[0] == 0).all()
    assert float((op(x[1:]) - y[1:]).norm() / y[1:].norm()) < 1e-4


def test_blur_fft_grid_is_the_smallest_7_smooth_size() -> None:
    from diffrestore.operators.blur import _fast_length

    def smooth(m: int) -> bool:
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 700):
        m = _fast_length(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))
    assert _fast_length(316) == 320  # 316 = 4 x 79: the 61-tap blur grid of a 256 x 256 image
