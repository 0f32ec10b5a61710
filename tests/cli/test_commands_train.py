"""`diffrestore train`: a few steps on a tiny folder give a model folder that `--model DIR` accepts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_support import run_main, write_image


def test_train_then_restore_with_the_trained_model(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    for i in range(3):
        write_image(data / f"p{i}.png", seed=i, size=(32, 32))
    out = tmp_path / "model"
    result = run_main(["train", data, "--out", out, "--size", "16", "--steps", "3", "--batch-size", "2", "--seed", "1",
                       "--device", "cpu", "--progress", "plain"], capsys)
    assert result.code == 0, result.err
    assert result.out.strip() == str(out)  # the model folder on stdout
    assert "[3/3]" in result.err  # plain progress on stderr
    config = json.loads((out / "config.json").read_text())
    assert config["channels"] == 3
    assert (out / "model.safetensors").is_file()

    image = write_image(tmp_path / "x.png", size=(24, 16))
    restored = run_main(["denoise", image, "--model", out, "--steps", "2", "--method", "dps", "--device", "cpu"],
                        capsys)
    assert restored.code == 0, restored.err
    assert (tmp_path / "x_denoise.png").is_file()


def test_train_flag_errors_are_usage_errors(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    write_image(data / "p.png", size=(32, 32))
    result = run_main(["train", data, "--out", tmp_path / "m", "--size", "12", "--steps", "1", "--device", "cpu"],
                      capsys)
    assert result.code == 2
    assert "--size 12 is not a multiple of 16" in result.err


def test_train_builds_the_network_the_flags_ask_for(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    for i in range(2):
        write_image(data / f"p{i}.png", seed=i, size=(32, 32))
    out = tmp_path / "model"
    result = run_main(["train", data, "--out", out, "--size", "16", "--steps", "2", "--batch-size", "2",
                       "--base-channels", "8", "--channel-mults", "1,2,3", "--pixel-unshuffle", "1",
                       "--lr-drop-at", "1", "--device", "cpu", "--progress", "none"], capsys)
    assert result.code == 0, result.err
    config = json.loads((out / "config.json").read_text())
    assert config["base_channels"] == 8 and config["channel_mults"] == [1, 2, 3]
    assert config["training"]["lr_drops"] == [1]
    for flag, value in (("--channel-mults", "1,x"), ("--channel-mults", "1,0"), ("--lr-drop-at", "10,5"),
                        ("--lr-drop-at", "-3")):
        bad = run_main(["train", data, "--out", tmp_path / "bad", "--size", "16", "--steps", "1", flag, value,
                        "--device", "cpu"], capsys)
        assert bad.code == 2, (flag, value, bad.err)
        assert flag in bad.err and "Traceback" not in bad.err
        assert len(bad.err.strip().splitlines()) <= 2, bad.err
        assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- cases a user meets: one line, exit 2


def _data(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        write_image(data / f"p{i}.png", seed=i, size=(32, 32))
    return data


def _train(tmp_path, capsys, out, *extra):
    return run_main(["train", _data(tmp_path), "--out", out, "--size", "16", "--steps", "2", "--batch-size", "2",
                     "--base-channels", "8", "--channel-mults", "1,2", "--pixel-unshuffle", "1", "--device", "cpu",
                     "--progress", "none", *extra], capsys)


def _one_line(result, code: int = 2) -> str:
    assert result.code == code, result.err
    assert "Traceback" not in result.err and "unexpected" not in result.err and "report it" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


def test_train_out_naming_a_file_or_a_path_under_one_is_refused(tmp_path, capsys) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    assert "is a file, not a folder" in _one_line(_train(tmp_path, capsys, afile))
    assert "'" + str(afile) + "' is a file" in _one_line(_train(tmp_path, capsys, afile / "model"))
    assert afile.read_text() == "mine"


def test_train_out_on_a_read_only_mount_is_refused_before_training(tmp_path, capsys, monkeypatch) -> None:
    """The refusal is simulated at the probe (root writes anywhere; a real read-only mount needs privileges):
    the probe is what the command asks, as plan.check_output_folders does for restoration outputs."""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    existing = tmp_path / "mounted"
    existing.mkdir()
    line = _one_line(_train(tmp_path, capsys, existing))
    assert f"--out '{existing}' is not writable: Read-only file system" in line
    line = _one_line(_train(tmp_path, capsys, existing / "new" / "model"))
    assert "is not writable (its parent" in line and "Read-only file system" in line
    assert list(existing.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_train_out_in_a_read_only_folder_is_refused(tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "is not writable" in _one_line(_train(tmp_path, capsys, locked / "model"))
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "-0.001", "0"])
def test_train_lr_must_be_a_finite_positive_number(tmp_path, capsys, lr) -> None:
    line = _one_line(_train(tmp_path, capsys, tmp_path / "m", f"--lr={lr}"))
    assert "--lr must be a finite number above 0" in line
    assert not (tmp_path / "m").exists()


def test_train_never_overwrites_a_config_json_it_did_not_write(tmp_path, capsys) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"theme": "dark"}')
    assert "holds a config.json that diffrestore train did not write" in _one_line(_train(tmp_path, capsys, folder))
    assert (folder / "config.json").read_text() == '{"theme": "dark"}'
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]


class _Payload:
    """Pickled into a checkpoint: unpickling it would create a marker file (code run from the checkpoint)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_resuming_from_a_checkpoint_with_pickled_code_is_refused_without_unsafe_advice(tmp_path, capsys) -> None:
    import torch

    out = tmp_path / "m"
    out.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "recipe": "{}", "payload": _Payload(marker)}, out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    line = _one_line(_train(tmp_path, capsys, out))
    assert str(out / "checkpoint.pt") in line and "pickled Python objects" in line and "--no-resume" in line
    assert "weights_only" not in line and "weights_only" not in capsys.readouterr().err
    assert not marker.exists()  # nothing was unpickled
    assert (out / "checkpoint.pt").read_bytes() == before  # the user's file is left to them


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 10, "tensor", "list"])
def test_resuming_from_a_damaged_or_foreign_checkpoint_is_one_line(tmp_path, capsys, content) -> None:
    import torch

    out = tmp_path / "m"
    out.mkdir()
    if content == "tensor":
        torch.save(torch.zeros(3), out / "checkpoint.pt")
    elif content == "list":
        torch.save([1, 2], out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(content)
    line = _one_line(_train(tmp_path, capsys, out))
    assert str(out / "checkpoint.pt") in line and ("truncated or corrupt" in line or "not a diffrestore" in line)
    assert "weights_only" not in line
    # --no-resume starts over (the documented way out)
    assert _train(tmp_path, capsys, out, "--no-resume").code == 0


def test_a_checkpoint_write_that_fails_is_one_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch) -> None:
    import errno

    import torch

    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "m"
    line = _one_line(_train(tmp_path, capsys, out))
    assert "cannot write the checkpoint" in line and "No space left on device" in line
    assert not list(out.glob("*.tmp"))


def test_train_channels_2_takes_complex_arrays_and_magnitudes_with_random_phase(tmp_path, capsys) -> None:
    import numpy as np

    data = tmp_path / "mri"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.save(data / "z.npy", (rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32))).astype(np.complex64))
    write_image(data / "m.png", size=(32, 32))
    args = ["train", data, "--out", tmp_path / "m", "--size", "16", "--steps", "2", "--batch-size", "2",
            "--channels", "2", "--device", "cpu", "--progress", "none"]
    refused = run_main(args, capsys)
    assert refused.code == 2 and "--random-phase" in refused.err
    result = run_main([*args, "--random-phase"], capsys)
    assert result.code == 0, result.err
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["channels"] == 2 and config["training"]["random_phase"] is True
