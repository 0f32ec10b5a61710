"""diffrestore.train: a few steps on a tiny folder learn, checkpoint, resume exactly, and give a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffrestore.errors import InputError, ModelError, UsageError
from diffrestore.priors.builtin import load_model_dir
from diffrestore.train import CHECKPOINT_NAME, train, training_losses

# A tiny network and recipe: each step takes a few milliseconds.
TINY = dict(
    size=16,
    batch_size=8,
    seed=3,
    device="cpu",
    lr=3e-3,
    base_channels=8,
    channel_mults=(1, 2),
    pixel_unshuffle=1,
    warmup_steps=1,
    ema_decay=0.9,
)


def _write_images(folder, count=4, size=(40, 48), mode="RGB"):
    """Smooth structured images (gradients plus a bright disc), different per index."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        disc = ((yy - 0.3 - 0.1 * i) ** 2 + (xx - 0.5) ** 2 < 0.05).astype(float)
        base = np.stack([xx, yy, 1 - xx][: 3 if mode == "RGB" else 1], axis=-1) * 0.6 + 0.4 * disc[..., None]
        arr = (np.clip(base, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(arr if mode == "RGB" else arr[..., 0], mode).save(folder / f"img{i}.png")
    return folder


def _weights(out_dir):
    from safetensors.torch import load_file

    return load_file(str(out_dir / "model.safetensors"))


def test_loss_falls_and_output_dir_is_a_model(tmp_path):
    data = _write_images(tmp_path / "data")
    calls = []
    out = train(
        data,
        tmp_path / "model",
        steps=40,
        checkpoint_every=20,
        progress=lambda done, total, what: calls.append((done, total, what)),
        **TINY,
    )
    assert out == tmp_path / "model"
    losses = training_losses(out)
    assert len(losses) == 40
    # An untrained denoiser (D = c_skip x) scores ~1 under the EDM weighting; 40 steps must already do better.
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10]), losses
    assert calls[-1][:2] == (40, 40) and calls[0][0] == 1 and "loss" in calls[-1][2]
    assert (out / CHECKPOINT_NAME).is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["channels"] == 3 and config["training"]["steps"] == 40
    prior = load_model_dir(out)
    assert prior.channels == 3 and prior.native_size is None
    x = torch.zeros(2, 3, 21, 19)
    d = prior.denoise(x, torch.tensor([0.5, 2.0]))
    assert d.shape == x.shape and d.dtype == torch.float32 and torch.isfinite(d).all()


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    data = _write_images(tmp_path / "data")
    straight = train(data, tmp_path / "straight", steps=8, checkpoint_every=4, **TINY)
    # "Killed" after 4 steps: a first call that stops at 4, then the same command asking for 8.
    part = train(data, tmp_path / "resumed", steps=4, checkpoint_every=4, **TINY)
    ckpt = torch.load(part / CHECKPOINT_NAME, weights_only=True)
    assert int(ckpt["step"]) == 4
    seen = []
    train(data, part, steps=8, checkpoint_every=4, progress=lambda d, t, w: seen.append(d), **TINY)
    assert seen == [5, 6, 7, 8]  # continued at step 5, did not start over
    assert int(torch.load(part / CHECKPOINT_NAME, weights_only=True)["step"]) == 8
    assert training_losses(part) == pytest.approx(training_losses(straight), rel=1e-5, abs=1e-6)
    a, b = _weights(straight), _weights(part)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    # and the weights did move away from a fresh run's initial state
    fresh = train(data, tmp_path / "one", steps=1, checkpoint_every=1, **TINY)
    assert any(not torch.allclose(_weights(fresh)[k], a[k]) for k in a)


def test_resume_refuses_a_different_recipe(tmp_path):
    data = _write_images(tmp_path / "data")
    out = train(data, tmp_path / "m", steps=2, checkpoint_every=2, **TINY)
    with pytest.raises(UsageError, match="different training recipe"):
        train(data, out, steps=4, checkpoint_every=2, **{**TINY, "seed": 4})
    # --no-resume starts over in the same folder
    train(data, out, steps=3, checkpoint_every=3, resume=False, **{**TINY, "seed": 4})
    assert len(training_losses(out)) == 3


def test_grey_folder_gives_a_one_channel_prior_and_pixel_unshuffle_runs_at_any_size(tmp_path):
    data = _write_images(tmp_path / "grey", mode="L")
    out = train(data, tmp_path / "m", steps=2, checkpoint_every=2, **{**TINY, "pixel_unshuffle": 2})
    prior = load_model_dir(out)
    assert prior.channels == 1 and json.loads((out / "config.json").read_text())["pixel_unshuffle"] == 2
    for shape in ((1, 1, 5, 3), (2, 1, 23, 41)):
        d = prior.denoise(torch.zeros(shape), 0.3)
        assert d.shape == shape and torch.isfinite(d).all()
    with pytest.raises(UsageError, match="1-channel images but got a 3-channel image"):
        prior.denoise(torch.zeros(1, 3, 16, 16), 1.0)


def test_bad_data_folders_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train(tmp_path / "nope", tmp_path / "m", steps=1, **TINY)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="no images found in"):
        train(tmp_path / "empty", tmp_path / "m", steps=1, **TINY)
    small = _write_images(tmp_path / "small", size=(12, 20))
    with pytest.raises(InputError, match=r"smaller than the crop size 16x16 \(the largest is 20x12\)"):
        train(small, tmp_path / "m", steps=1, **TINY)
    broken = _write_images(tmp_path / "broken")
    (broken / "zz_broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=r"cannot read training image .*zz_broken\.png"):
        train(broken, tmp_path / "m", steps=1, **TINY)
    data = _write_images(tmp_path / "data")
    with pytest.raises(UsageError, match=r"--size 17 is not a multiple of 2 .*use --size 16"):
        train(data, tmp_path / "m", steps=1, **{**TINY, "size": 17})
    assert not (tmp_path / "m").exists()  # nothing written before the inputs were validated


def test_load_model_dir_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_dir(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"needs config\.json and model\.safetensors"):
        load_model_dir(tmp_path / "half")
    data = _write_images(tmp_path / "data")
    out = train(data, tmp_path / "m", steps=1, checkpoint_every=1, **TINY)
    config = json.loads((out / "config.json").read_text())
    config["base_channels"] = 16
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"do not match its config\.json"):
        load_model_dir(out)


def test_lr_drops_divide_the_rate_after_their_step_and_change_nothing_before(tmp_path):
    data = _write_images(tmp_path / "data")
    plain = train(data, tmp_path / "plain", steps=6, checkpoint_every=6, **TINY)
    dropped = train(data, tmp_path / "dropped", steps=6, checkpoint_every=6, lr_drops=(3,), **TINY)
    ckpt = torch.load(dropped / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(TINY["lr"] * 0.1)
    assert torch.load(plain / CHECKPOINT_NAME, weights_only=True)["optimizer"]["param_groups"][0]["lr"] == TINY["lr"]
    # steps 1-3 ran at the full rate in both runs (the same losses), step 4 on differs
    a, b = training_losses(plain), training_losses(dropped)
    assert a[:4] == pytest.approx(b[:4], rel=1e-6)
    assert a[4:] != pytest.approx(b[4:], rel=1e-6)
    assert json.loads((dropped / "config.json").read_text())["training"]["lr_drops"] == [3]
    # the schedule is part of the recipe: a checkpoint with another one is not resumed
    with pytest.raises(UsageError, match="different training recipe"):
        train(data, dropped, steps=8, checkpoint_every=4, lr_drops=(5,), **TINY)
    with pytest.raises(UsageError, match="--lr-drop-at needs increasing positive step numbers"):
        train(data, tmp_path / "bad", steps=8, lr_drops=(5, 3), **TINY)
    with pytest.raises(UsageError, match="--channel-mults"):
        train(data, tmp_path / "bad", steps=8, **{**TINY, "channel_mults": ()})


def test_the_torch_free_model_type_is_the_builtin_one():
    """train.check_out_dir recognises its own config.json without importing torch: the names must agree."""
    from diffrestore.priors import builtin
    from diffrestore.train import BUILTIN_MODEL_TYPE

    assert BUILTIN_MODEL_TYPE == builtin.MODEL_TYPE


def test_training_again_into_its_own_model_folder_resumes(tmp_path):
    """The config.json check lets train's own folder through (resume, and --no-resume over it)."""
    data = _write_images(tmp_path / "data")
    out = train(data, tmp_path / "m", steps=1, checkpoint_every=1, **TINY)
    train(data, out, steps=2, checkpoint_every=1, **TINY)
    assert len(training_losses(out)) == 2
    train(data, out, steps=1, checkpoint_every=1, resume=False, **TINY)
    assert len(training_losses(out)) == 1


def _write_complex(folder, count=3, size=(32, 36)):
    """Complex images: a bright disc with a phase ramp, saved as .npy; and one magnitude PNG for mixed folders."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        disc = 0.3 + ((yy - 0.4) ** 2 + (xx - 0.3 - 0.1 * i) ** 2 < 0.06)
        disc[3:5, 3:5] = 3.0  # a few bright pixels, above the 99th percentile: they stay above 1
        np.save(folder / f"z{i}.npy", (disc * np.exp(1j * (2 * xx + yy + i))).astype(np.complex64))
    return folder


def test_a_complex_folder_trains_a_two_channel_prior_and_crops_carry_phase(tmp_path):
    from diffrestore.train import _sample_batch

    data = _write_complex(tmp_path / "mri")
    out = train(data, tmp_path / "m", steps=30, checkpoint_every=30, **{**TINY, "channels": 2})
    losses = training_losses(out)
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8]), losses
    config = json.loads((out / "config.json").read_text())
    assert config["channels"] == 2 and "posterior_rms" in config
    prior = load_model_dir(out)
    d = prior.denoise(torch.zeros(1, 2, 16, 16), 0.5)
    assert d.shape == (1, 2, 16, 16) and torch.isfinite(d).all()
    # crops are complex (both channels used), unclipped, and rotated by a random global phase
    from diffrestore.imageio.training import load_training_images

    images, _, _ = load_training_images(data, 16, channels=2)
    gen = torch.Generator().manual_seed(0)
    batch = _sample_batch(images, 16, 64, 1.0, gen, complex_channels=True)
    assert batch.shape == (64, 2, 16, 16)
    assert batch[:, 1].abs().mean() > 0.1 and batch.abs().max() > 1.0
    phases = torch.atan2(batch[:, 1, 8, 8], batch[:, 0, 8, 8])
    assert phases.std() > 1.0


def test_magnitudes_need_random_phase_and_get_a_smooth_one_per_crop(tmp_path):
    from diffrestore.imageio.training import load_training_images
    from diffrestore.train import _sample_batch

    data = _write_images(tmp_path / "grey", mode="L", size=(64, 64))
    with pytest.raises(UsageError, match="--random-phase"):
        train(data, tmp_path / "m", steps=2, checkpoint_every=2, **{**TINY, "channels": 2})
    with pytest.raises(UsageError, match="--permute-channels"):
        train(data, tmp_path / "m", steps=2, checkpoint_every=2, permute_channels=True, random_phase=True,
              **{**TINY, "channels": 2})
    out = train(data, tmp_path / "m", steps=2, checkpoint_every=2, random_phase=True, **{**TINY, "channels": 2})
    assert load_model_dir(out).channels == 2
    assert json.loads((out / "config.json").read_text())["training"]["random_phase"] is True
    images, _, _ = load_training_images(data, 32, channels=2)
    batch = _sample_batch(images, 32, 8, 1.0, torch.Generator().manual_seed(1), dihedral=False,
                          complex_channels=True)
    magnitude = torch.sqrt(batch[:, 0] ** 2 + batch[:, 1] ** 2)
    phase = torch.atan2(batch[:, 1], batch[:, 0])
    inside = magnitude > 0.2
    assert inside.float().mean() > 0.5
    # the magnitude is the image's own, the phase varies slowly inside the object and differs between crops
    assert magnitude.max() <= max(img.max() for img in images) + 1e-5
    wrapped = torch.remainder(phase[:, :, 1:] - phase[:, :, :-1] + torch.pi, 2 * torch.pi) - torch.pi
    assert wrapped[inside[:, :, 1:] & inside[:, :, :-1]].abs().max() < 1.0  # white noise: up to pi
    assert (phase[0][inside[0]].mean() - phase[1][inside[1]].mean()).abs() > 1e-3


def test_a_dicom_folder_trains_a_grey_prior(tmp_path):
    pytest.importorskip("pydicom")
    import shutil

    from pydicom.data import get_testdata_file

    data = tmp_path / "ct"
    data.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), data / "slice.dcm")
    out = train(data, tmp_path / "m", steps=2, checkpoint_every=2, **TINY)
    assert load_model_dir(out).channels == 1


def test_channels_other_than_1_2_3_are_refused():
    with pytest.raises(UsageError, match="1, 2 \\(complex\\) or 3"):
        train("nowhere", "out", channels=4)
