"""diffrestore.operators.factory: ``build_operator``'s parameters (text accepted, kernel files read through
imageio), its one-line errors, and ``image_shape_for_measurement``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrestore.errors import InputError, SizeMismatchError, UsageError
from diffrestore.operators import box_mask, build_operator, image_shape_for_measurement


def test_parameters_typed_as_text_are_accepted() -> None:
    assert build_operator("sr", (1, 8, 8), factor="2").factor == 2
    # x, y, width, height, as --box X,Y,W,H: left 1, top 2, 3 wide, 4 high
    from_text = build_operator("inpaint", (1, 8, 8), box="1, 2, 3, 4").missing
    assert torch.equal(from_text, box_mask((8, 8), top=2, left=1, height=4, width=3))
    assert build_operator("gaussian_blur", (1, 8, 8), kernel_size=5.0, sigma="1.5").kernel.shape == (5, 5)


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


def test_image_shape_for_measurement_inverts_the_output_shape() -> None:
    for name, params in [("sr", {"factor": 4}), ("colorize", {}), ("phase_retrieval", {}), ("gaussian_blur", {})]:
        image_shape = (3, 24, 20)
        op = build_operator(name, image_shape, **params)
        assert image_shape_for_measurement(name, op.output_shape, **params) == image_shape
    with pytest.raises(UsageError, match="not an oversampling-2 canvas"):
        image_shape_for_measurement("phase_retrieval", (3, 25, 20))
