"""diffrestore.operators.colour: colorization's grey measurement is PIL's luminance."""

from __future__ import annotations

import numpy as np
import torch

from diffrestore.operators import build_operator


def test_colorize_matches_pil_luminance() -> None:
    from PIL import Image

    rgb = torch.randint(0, 256, (9, 11, 3), generator=torch.Generator().manual_seed(13), dtype=torch.uint8)
    pil_l = np.asarray(Image.fromarray(rgb.numpy(), "RGB").convert("L"), dtype=np.float64)
    x = rgb.permute(2, 0, 1)[None].float() / 255 * 2 - 1
    y = build_operator("colorize", (3, 9, 11))(x)
    ours = ((y[0, 0] + 1) / 2 * 255).double().numpy()
    assert np.abs(ours - pil_l).max() <= 0.51  # PIL rounds to integers
