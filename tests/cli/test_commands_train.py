"""`diffrestore train`: a few steps on a tiny folder give a model folder that `--model DIR` accepts."""

from __future__ import annotations

import json

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
