"""The contact sheet: cells enlarged by a whole factor, measurements shown only when they are pictures."""

from __future__ import annotations

import torch

from diffrestore.run.contact_sheet import CELL_TARGET, GAP, LABEL_HEIGHT, SheetRow, contact_sheet, measurement_picture


def test_measurement_pictures() -> None:
    y = torch.zeros(1, 3, 10, 12)
    assert measurement_picture(y, (12, 10)) is y  # the image's size: as it is
    small = torch.rand(1, 1, 5, 6) * 2 - 1
    big = measurement_picture(small, (12, 10))  # super-resolution's input: enlarged, values kept
    assert big.shape == (1, 1, 10, 12) and torch.equal(big[..., ::2, ::2], small)
    assert measurement_picture(torch.zeros(1, 3, 20, 24), (12, 10)) is None  # Fourier magnitudes
    assert measurement_picture(torch.zeros(1, 2, 10, 12), (12, 10)) is None


def test_the_sheet_has_a_label_strip_and_a_cell_per_picture() -> None:
    gray, colour = torch.zeros(1, 1, 10, 12), torch.ones(1, 3, 10, 12)
    sheet = contact_sheet(["input", "m", "reference"], [SheetRow([None, colour, gray]), SheetRow([gray, gray, gray])])
    scale = CELL_TARGET // 12
    assert sheet.shape == (1, 3, LABEL_HEIGHT + 2 * (10 * scale + GAP), 3 * 12 * scale + 4 * GAP)
    assert sheet.min() >= -1 and sheet.max() <= 1
    top = LABEL_HEIGHT
    cell = sheet[0, :, top : top + 10 * scale, GAP : GAP + 12 * scale]
    assert torch.allclose(cell, torch.zeros_like(cell))  # a blank cell is mid-gray (0 in tensor units)
    left = 2 * GAP + 12 * scale
    assert torch.equal(sheet[0, :, top : top + 10 * scale, left : left + 12 * scale], torch.ones(3, 10 * scale,
                                                                                                  12 * scale))
