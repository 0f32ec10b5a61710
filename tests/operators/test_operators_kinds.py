"""Typed kinds: every built operator says which task it is (solvers tune by it, not by substrings of ``name``),
and an inpainting mask knows whether its hole is one box."""

from __future__ import annotations

import pytest
import torch
from operator_cases import CASES, SHAPES, build_case, case_shape

from diffrestore.operators import Compose, Inpaint, OperatorKind, build_operator, random_mask

KIND_BY_NAME = {
    "identity": OperatorKind.DENOISE,
    "sr": OperatorKind.SUPERRES,
    "gaussian_blur": OperatorKind.GAUSSIAN_BLUR,
    "motion_blur": OperatorKind.MOTION_BLUR,
    "kernel_blur": OperatorKind.KERNEL_BLUR,
    "varying_blur": OperatorKind.VARYING_BLUR,
    "colorize": OperatorKind.COLORIZE,
    "phase_retrieval": OperatorKind.PHASE_RETRIEVAL,
    "hdr": OperatorKind.HDR,
    "bkse": OperatorKind.NONLINEAR_BLUR,
    "ct": OperatorKind.CT,
    "mri": OperatorKind.MRI,
}


def _expected_kind(name: str, params: dict) -> OperatorKind:
    if name == "compose":
        return _expected_kind(*params["outer"])
    if name == "inpaint":
        # The default hole and an explicit box are rectangles; a random share of pixels is not.
        return OperatorKind.INPAINT if "fraction" in params else OperatorKind.INPAINT_BOX
    return KIND_BY_NAME[name]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_every_operator_has_its_kind_and_keeps_its_name(name: str, params: dict) -> None:
    op = build_case(name, params, case_shape(name, params, SHAPES[0]))
    assert op.kind is _expected_kind(name, params)
    assert op.name == (params["outer"][0] if name == "compose" else name)


def test_every_kind_is_reachable_from_the_factory() -> None:
    built = {_expected_kind(*case.values) for case in CASES}
    assert built == set(OperatorKind)


def test_blur_kind_survives_a_dtype_move() -> None:
    op = build_operator("gaussian_blur", (1, 8, 8)).to(torch.float64)
    assert op.kind is OperatorKind.GAUSSIAN_BLUR


def _mask(height: int, width: int, *boxes: tuple[int, int, int, int]) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    for top, left, box_h, box_w in boxes:
        mask[top : top + box_h, left : left + box_w] = True
    return mask


@pytest.mark.parametrize(
    ("mask", "is_box"),
    [
        (_mask(8, 9, (2, 3, 4, 5)), True),
        (_mask(8, 9, (0, 0, 8, 1)), True),  # a one-pixel-wide strip along the border
        (_mask(8, 9, (5, 6, 1, 1)), True),  # a single pixel
        (_mask(8, 9, (0, 0, 2, 2), (5, 5, 2, 2)), False),  # two boxes
        (_mask(8, 9, (0, 0, 4, 2), (0, 0, 2, 4)), False),  # an L
        (_mask(8, 9, (0, 0, 2, 2), (0, 3, 2, 2)), False),  # two boxes on the same rows
        (_mask(8, 9), False),  # nothing missing
        (_mask(8, 9, (1, 1, 6, 7)) & ~_mask(8, 9, (3, 3, 1, 1)), False),  # a box with a known pixel inside
        (random_mask((8, 9), 0.5, torch.Generator().manual_seed(0))[0, 0], False),
    ],
    ids=["box", "strip", "pixel", "two-boxes", "l-shape", "side-by-side", "empty", "holed-box", "random"],
)
def test_is_box_and_the_inpaint_kind(mask: torch.Tensor, is_box: bool) -> None:
    op = Inpaint((3, 8, 9), mask)
    assert op.is_box is is_box
    assert op.kind is (OperatorKind.INPAINT_BOX if is_box else OperatorKind.INPAINT)


def test_a_batch_of_masks_is_a_box_only_if_every_mask_is() -> None:
    boxes = torch.stack([_mask(6, 6, (0, 0, 2, 3)), _mask(6, 6, (3, 2, 3, 3))])[:, None]
    assert Inpaint((1, 6, 6), boxes).is_box
    mixed = torch.stack([_mask(6, 6, (0, 0, 2, 3)), _mask(6, 6, (0, 0, 1, 1), (4, 4, 1, 1))])[:, None]
    assert not Inpaint((1, 6, 6), mixed).is_box


def test_a_composite_reports_the_outer_kind() -> None:
    grey_box = build_operator("inpaint", (1, 8, 8))
    op = Compose(grey_box, build_operator("colorize", (3, 8, 8)))
    assert op.kind is OperatorKind.INPAINT_BOX and op.name == "inpaint"
