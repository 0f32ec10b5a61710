"""diffrestore.imageio.masks: mask files (threshold, invert, modes, alpha) and masks from an image's alpha."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import assert_one_line, rand8
from PIL import Image

from diffrestore.errors import SizeMismatchError
from diffrestore.imageio import load_image, load_mask, mask_from_alpha

# ----------------------------------------------------------------------------------------------------------------
# Masks


def test_mask_threshold_invert_and_modes(tmp_path: Path) -> None:
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (4, 1))
    assert mask.dtype == torch.bool and mask.shape == (1, 1, 1, 4)
    assert mask.flatten().tolist() == [False, False, True, True]
    assert load_mask(tmp_path / "m.png", (4, 1), invert=True).flatten().tolist() == [True, True, False, False]

    values16 = np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values16).save(tmp_path / "m16.png")
    assert load_mask(tmp_path / "m16.png", (4, 1)).flatten().tolist() == [False, False, True, True]

    # Colour uses luminance: pure green (0.587) is missing, pure red (0.299) and blue are known.
    colour = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "mc.png")
    assert load_mask(tmp_path / "mc.png", (4, 1)).flatten().tolist() == [False, True, False, True]

    Image.fromarray(values > 100).save(tmp_path / "m1.png")  # mode "1"
    assert load_mask(tmp_path / "m1.png", (4, 1)).flatten().tolist() == [False, True, True, True]


def test_mask_with_alpha_composites_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [255, 255, 255, 100], [0, 0, 0, 255]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "ma.png")
    assert load_mask(tmp_path / "ma.png", (4, 1)).flatten().tolist() == [True, False, False, False]


def test_mask_accepts_loaded_image_and_size_mismatch_names_both(tmp_path: Path) -> None:
    Image.fromarray(rand8(6, 9, 3)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((6, 9), np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(tmp_path / "wrong.png")
    loaded = load_image(tmp_path / "img.png")
    assert load_mask(tmp_path / "ok.png", loaded).shape == (1, 1, 6, 9)
    assert load_mask(tmp_path / "ok.png", size=(9, 6)).shape == (1, 1, 6, 9)  # the contract's keyword name
    with pytest.raises(TypeError, match="image size"):
        load_mask(tmp_path / "ok.png")
    with pytest.raises(SizeMismatchError) as info:
        load_mask(tmp_path / "wrong.png", loaded)
    assert_one_line(info.value, "wrong.png", "9 x 7", "9 x 6")


def test_mask_from_alpha(tmp_path: Path) -> None:
    rgba = rand8(3, 4, 4)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    rgba[1, 2, 3] = 127
    rgba[2, 3, 3] = 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    mask = mask_from_alpha(load_image(tmp_path / "a.png"))
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (1, 1, 3, 4)
    assert mask.nonzero().tolist() == [[0, 0, 0, 0], [0, 0, 1, 2]]

    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    assert mask_from_alpha(load_image(tmp_path / "opaque.png")) is None
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert mask_from_alpha(load_image(tmp_path / "rgb.png")) is None
