"""The contact sheet of ``diffrestore eval``: the first few images side by side, one row each, one column per
picture (the degraded input, each method's restoration, the reference, each method's std map), a label above
every column. Pixels are shown as they are, enlarged by a whole factor with nearest neighbours so that small
images stay readable and nothing is smoothed or rescaled in value; a measurement that is no picture of the image
(phase retrieval's Fourier magnitudes) gets a blank cell. Returned as a tensor for imageio's writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: cells are enlarged by a whole factor until their longer side reaches this many pixels
CELL_TARGET = 96
GAP = 2  # white pixels between cells
LABEL_HEIGHT = 14
BLANK = 0.5  # mid-gray on [0, 1]: an empty cell


@dataclass
class SheetRow:
    """One row: a picture (tensor units, (1, C, H, W)) or None (blank) per column."""

    cells: list[torch.Tensor | None]


def _to_rgb_array(image: torch.Tensor | None, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], the image centred on a mid-gray cell of this size."""
    cell = np.full((height, width, 3), BLANK, np.float32)
    if image is None:
        return cell
    pixels = ((image[0].detach().float().clamp(-1.0, 1.0) + 1.0) / 2.0).cpu().numpy().transpose(1, 2, 0)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    h, w = min(pixels.shape[0], height), min(pixels.shape[1], width)
    top, left = (height - h) // 2, (width - w) // 2
    cell[top : top + h, left : left + w] = pixels[:h, :w]
    return cell


def _label_strip(labels: list[str], cell_width: int) -> np.ndarray:
    """A white strip with each column's label in black (Pillow's built-in font)."""
    from PIL import Image, ImageDraw

    width = len(labels) * cell_width + (len(labels) + 1) * GAP
    strip = Image.new("RGB", (width, LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, label in enumerate(labels):
        draw.text((GAP + i * (cell_width + GAP) + 1, 1), label[: max(1, cell_width // 6)], fill=(0, 0, 0))
    return np.asarray(strip, dtype=np.float32) / 255.0


def contact_sheet(labels: list[str], rows: list[SheetRow]) -> torch.Tensor:
    """The sheet as a (1, 3, H, W) tensor in tensor units: the labels on top, then one row per image, every
    cell as large as the largest picture, enlarged by the same whole factor."""
    import torch

    pictures = [cell for row in rows for cell in row.cells if cell is not None]
    height = max((int(p.shape[-2]) for p in pictures), default=1)
    width = max((int(p.shape[-1]) for p in pictures), default=1)
    scale = max(1, CELL_TARGET // max(height, width))
    cell_h, cell_w = height * scale, width * scale
    columns = len(labels)
    sheet_w = columns * cell_w + (columns + 1) * GAP
    parts = [_label_strip(labels, cell_w)]
    for row in rows:
        line = np.ones((cell_h + GAP, sheet_w, 3), np.float32)
        for i, picture in enumerate(row.cells):
            if picture is not None and scale > 1:
                picture = torch.nn.functional.interpolate(picture.float(), scale_factor=scale, mode="nearest")
            left = GAP + i * (cell_w + GAP)
            line[:cell_h, left : left + cell_w] = _to_rgb_array(picture, cell_h, cell_w)
        parts.append(line)
    sheet = np.concatenate(parts, axis=0)
    return torch.from_numpy(sheet.transpose(2, 0, 1).copy()).unsqueeze(0) * 2.0 - 1.0


def measurement_picture(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """The measurement y as a picture of the restored image's ``size`` = (width, height): as it is when it has
    that size, enlarged with nearest neighbours when it is a smaller image of the same shape (super-resolution's
    low-resolution input), None when it is no picture (another shape, or not 1 or 3 channels)."""
    import torch

    if y.dim() != 4 or y.shape[1] not in (1, 3) or torch.is_complex(y):
        return None
    width, height = size
    h, w = int(y.shape[-2]), int(y.shape[-1])
    if (h, w) == (height, width):
        return y
    if height % h == 0 and width % w == 0 and height // h == width // w:
        return torch.nn.functional.interpolate(y.float(), size=(height, width), mode="nearest")
    return None
