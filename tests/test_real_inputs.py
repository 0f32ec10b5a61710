"""Real inputs: inpainting keeps the known pixels of the file exactly, and the noise level is estimated from each
input instead of assuming the papers' simulated 0.025."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_support import run_main
from PIL import Image

import diffrestore
from diffrestore.tasks.known_pixels import keep_known


def _photo(size: int = 48, seed: int = 0, name: str = "astronaut") -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    top, left = 120 + 7 * seed, 180 + 5 * seed
    return np.ascontiguousarray(img[top : top + size, left : left + size])


@pytest.mark.parametrize("bits", [8, 16])
def test_inpainting_a_clean_photo_keeps_every_known_pixel(tmp_path, capsys, bits: int) -> None:
    rgb = _photo().astype(np.uint16) * 257 if bits == 16 else _photo()
    path = tmp_path / "photo.png"
    if bits == 16:
        from diffrestore import imageio

        imageio.save_image(torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1)[None] * 2 - 1, path,
                           bit_depth=16)
    else:
        Image.fromarray(rgb).save(path)
    out = tmp_path / "out.png"
    result = run_main(["inpaint", path, "--box", "10,12,20,14", "--steps", "5", "--device", "cpu", "-o", out,
                       "--progress", "plain"], capsys)
    assert result.code == 0, result.err
    before = np.asarray(Image.open(path)) if bits == 8 else _read16(path)
    after = np.asarray(Image.open(out)) if bits == 8 else _read16(out)
    hole = np.zeros(before.shape[:2], bool)
    hole[12:26, 10:30] = True
    assert np.array_equal(after[~hole], before[~hole])  # bitwise, every known pixel
    assert not np.array_equal(after[hole], before[hole])  # the hole was filled
    assert "estimated noise sigma" in result.err


def _read16(path) -> np.ndarray:
    from diffrestore import imageio

    loaded = imageio.load_image(path)
    assert loaded.bit_depth == 16
    return np.round((loaded.tensor[0].permute(1, 2, 0).numpy() + 1) / 2 * 65535).astype(np.uint16)


def test_simulated_inpainting_writes_the_posterior_sample_as_before(tmp_path, capsys) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(_photo()).save(path)
    out = tmp_path / "out.png"
    result = run_main(["inpaint", path, "--box", "10,12,20,14", "--steps", "5", "--simulate", "--device", "cpu",
                       "-o", out], capsys)
    assert result.code == 0, result.err
    before, after = np.asarray(Image.open(path)), np.asarray(Image.open(out))
    known = np.ones(before.shape[:2], bool)
    known[12:26, 10:30] = False
    assert not np.array_equal(after[known], before[known])  # noisy known pixels by construction: sampled


def test_blend_feathers_the_seam_inside_the_hole_only() -> None:
    image = torch.zeros(1, 1, 20, 20)
    missing = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    missing[..., 5:15, 5:15] = True
    restored = torch.full((2, 1, 20, 20), 0.3)  # a sample that sits 0.3 above the input everywhere
    hard = keep_known(restored, image, missing, blend=0)
    soft = keep_known(restored, image, missing, blend=3)
    for out in (hard, soft):
        assert torch.equal(out[:, :, ~missing[0, 0]], image.expand(2, -1, -1, -1)[:, :, ~missing[0, 0]])
    # the step across the seam: 0.3 hard, much less feathered; the hole's centre keeps the sample
    assert float(hard[0, 0, 5, 10]) == pytest.approx(0.3)
    assert float(soft[0, 0, 5, 10]) < 0.1
    assert float(soft[0, 0, 10, 10]) == pytest.approx(0.3)
    ramp = soft[0, 0, 5:10, 10]
    assert bool((ramp[1:] >= ramp[:-1]).all())  # rises from the seam towards the centre


def _blurred_file(tmp_path) -> tuple[np.ndarray, object]:
    from scipy.ndimage import gaussian_filter

    rgb = _photo(seed=1).astype(np.float64) / 255
    blurred = np.stack([gaussian_filter(rgb[..., c], 1.5, mode="reflect") for c in range(3)], -1)
    path = tmp_path / "blurred.png"
    Image.fromarray(np.round(blurred * 255).astype(np.uint8)).save(path)
    return blurred, path


def _residual_rms(result, task: str) -> float:
    """rms of A(x) - y on the [0, 1] scale for the restored sample, recomputed with the task's operator."""
    from diffrestore import tasks

    values = {"scale": 2} if task == "superres" else {"kernel_size": 9, "sigma": 1.5}
    x = result.samples[:1]
    op = tasks.resolve_task(task, values).operator(tuple(x.shape[1:]), seed=0)
    with torch.no_grad():
        return float(((op(x) - result.measurement) / 2).square().mean().sqrt())


@pytest.mark.parametrize("task", ["superres", "deblur"])
def test_the_residual_matches_the_estimated_noise_not_the_old_default(tmp_path, task: str) -> None:
    """A clean low-resolution image (SR) and a blurred 8-bit file (deblur): the restoration fits the data to the
    estimated noise (about the 8-bit floor), within 2x; the old fixed 0.025 leaves a looser fit (measured with
    DAPS fast: SR 0.0157 against 0.0043, deblur 0.0077 against 0.0056; 50 Langevin draws: several times)."""
    if task == "superres":
        path = tmp_path / "small.png"
        Image.fromarray(_photo(size=32, name="coffee")).save(path)  # smooth: the estimate sits near the floor
        options = {"scale": 2}
    else:
        _, path = _blurred_file(tmp_path)
        options = {"kernel_size": 9, "sigma": 1.5}
    auto = diffrestore.restore(path, task=task, seed=0, device="cpu", **options)
    assert auto.noise_sigma is not None and auto.noise_sigma < 0.01  # about the quantisation floor
    residual = _residual_rms(auto, task)
    assert residual <= 2.0 * auto.noise_sigma, (residual, auto.noise_sigma)
    forced = diffrestore.restore(path, task=task, seed=0, device="cpu", noise_sigma=0.025, **options)
    assert _residual_rms(forced, task) > 1.25 * residual  # the old default fits the data worse


def test_an_untrustworthy_estimate_says_so(tmp_path, capsys) -> None:
    """70 % of the pixels missing at random on a small image leaves few fully known 2x2 blocks: the estimate
    falls back to the floor and the note says to give --noise-sigma (a reliable one says how it was made)."""
    path = tmp_path / "photo.png"
    Image.fromarray(_photo()).save(path)
    common = ["--steps", "2", "--device", "cpu", "--progress", "plain", "--overwrite"]
    sparse = run_main(["inpaint", path, "--random-fraction", "0.7", *common], capsys)
    assert sparse.code == 0 and "too few known 2x2 blocks to trust it: give --noise-sigma" in sparse.err
    box = run_main(["inpaint", path, "--box", "10,12,20,14", *common], capsys)
    assert box.code == 0 and "MAD of" in box.err and "too few" not in box.err
