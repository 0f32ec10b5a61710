"""diffrestore.tasks.masks: a task's mask from a box, a random fraction or inverted, and where it comes from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.tasks import MaskSource, resolve_task


def test_masks_from_box_random_and_invert() -> None:
    inpaint = resolve_task("inpaint", {"box": (2, 1, 3, 4)})
    box = inpaint.build_mask(MaskSource("box"), (8, 6), seed=0)
    expected = torch.zeros(1, 1, 6, 8, dtype=torch.bool)
    expected[..., 1:5, 2:5] = True
    assert torch.equal(box, expected)
    inverted = resolve_task("inpaint", {"box": "2,1,3,4", "invert_mask": True})
    assert torch.equal(inverted.build_mask(MaskSource("box"), (8, 6), seed=0), ~expected)
    random = resolve_task("inpaint", {"random_fraction": 0.5})
    a = random.build_mask(MaskSource("random"), (40, 30), seed=3)
    assert torch.equal(a, random.build_mask(MaskSource("random"), (40, 30), seed=3))
    assert 0.35 < a.float().mean().item() < 0.65
    with pytest.raises(UsageError, match="does not fit in a 8x6 image"):
        resolve_task("inpaint", {"box": (6, 0, 4, 2)}).build_mask(MaskSource("box"), (8, 6), seed=0)
    assert inpaint.mask_source(Path("a.png"), ()).kind == "box"
    assert resolve_task("denoise", {}).mask_source(Path("a.png"), ()).kind == "none"
