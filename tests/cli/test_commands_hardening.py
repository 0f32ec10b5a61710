"""Run-level faults, in-process through the real entry point: every bad flag, kernel, output folder or size fails
before any model loads, in one line, with exit code 2; folders report what they skip; the help says what a flag
takes. A model path that does not exist stands in for "no model loaded": reaching it would exit 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_support import H, W, fast, make_tiny_model, run_main, write_image
from typer.testing import CliRunner

from diffrestore.run import budget


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _no_model(tmp_path: Path) -> list[str]:
    return ["--model", str(tmp_path / "no-such-model"), "--device", "cpu", "--method", "dps"]


def _one_error_line(result, code: int = 2) -> str:
    assert result.code == code, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert "Traceback" not in result.err
    return result.err


# ------------------------------------------------------------------------------------------- 1. kernel files


def test_a_bad_kernel_file_fails_once_before_the_model_loads(tmp_path, capsys) -> None:
    images = [write_image(tmp_path / f"img{i}.png", seed=i) for i in range(2)]
    bad = tmp_path / "k.npy"
    np.save(bad, np.zeros((5, 5), np.float32))  # sums to 0: cannot be normalised
    result = run_main(["deblur", *images, "--kernel", bad, *_no_model(tmp_path)], capsys)
    err = _one_error_line(result)
    assert "k.npy" in err and "sum" in err
    assert not list(tmp_path.glob("*_deblur.png"))


def test_a_kernel_file_is_read_once_per_run(tmp_path, capsys, model, monkeypatch) -> None:
    from diffrestore import imageio

    kernel = np.zeros((5, 5), np.float32)
    kernel[2, 1:4] = 1.0
    np.save(tmp_path / "k.npy", kernel)
    reads = []
    real = imageio.load_kernel
    monkeypatch.setattr(imageio, "load_kernel", lambda *a, **k: reads.append(a) or real(*a, **k))
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"img{i}.png", seed=i)
    result = run_main(["deblur", folder, "--kernel", tmp_path / "k.npy", "--batch-size", "1", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert len(reads) == 1
    assert len(list(folder.glob("*_deblur.png"))) == 3


# ------------------------------------------------------------------------------------- 2. ranges and memory


@pytest.mark.parametrize(("argv", "flag"), [
    (["denoise", "--steps", "10000000000"], "--steps"),
    (["denoise", "--method", "daps", "--steps", "10000000000"], "--steps"),
    (["deblur", "--kernel-size", "100001"], "--kernel-size"),
    (["denoise", "--num-samples", "100000000"], "--num-samples"),
])
def test_flags_that_size_a_run_have_upper_bounds(tmp_path, capsys, argv, flag) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main([argv[0], image, *_no_model(tmp_path), *argv[1:]], capsys)
    err = _one_error_line(result)
    assert flag in err and "at most" in err


@pytest.mark.parametrize(("argv", "flag", "free_mb", "step", "need"), [
    (["denoise", "-n", "2000", "--batch-size", "1"], "--num-samples", 10, 1,
     lambda v: budget.run_bytes(rows=v, channels=3, size=(W, H))),
    (["denoise", "-n", "500", "--batch-size", "4"], "--batch-size", 50, 1,
     lambda v: budget.run_bytes(rows=v * 500, channels=3, size=(W, H))),
    (["deblur", "--kernel-size", "1001", "--batch-size", "1"], "--kernel-size", 40, 2,
     lambda v: budget.run_bytes(rows=1, channels=3, size=(W, H), kernel=(v, v))),
])
def test_a_run_too_big_for_the_free_memory_names_the_largest_value_that_fits(tmp_path, capsys, monkeypatch, argv,
                                                                             flag, free_mb, step, need) -> None:
    monkeypatch.setattr(budget, "available_memory", lambda device: free_mb * 2**20)
    folder = tmp_path / "in"
    for i in range(4):
        write_image(folder / f"img{i}.png", seed=i)
    err = _one_error_line(run_main([argv[0], folder, *argv[1:], *_no_model(tmp_path)], capsys))
    assert "memory" in err and f"{W}x{H}" in err and flag in err
    fits = int(err.split(f"{flag} ")[-1].split()[0].rstrip(")"))
    assert need(fits) <= free_mb * 2**20 < need(fits + step)  # it fits, and it is the largest that does


def test_the_python_api_checks_the_memory_too(tmp_path, monkeypatch) -> None:
    import diffrestore
    from diffrestore.errors import UsageError

    monkeypatch.setattr(budget, "available_memory", lambda device: 10 * 2**20)
    image = np.zeros((20, 24, 3), np.float32)
    with pytest.raises(UsageError, match="--num-samples"):
        diffrestore.restore(image, task="denoise", num_samples=2000, model=str(tmp_path / "none"), device="cpu")


def test_a_seed_beyond_64_bits_works(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, "--seed", str(2**70), *fast(model)], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / "photo_denoise.png").is_file()


# ---------------------------------------------------------------------------- 4. inputs that look like outputs


def test_inputs_that_look_like_outputs_are_counted_named_and_can_be_included(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    for name in ("b_denoise.png", "b_denoise_s1.png", "b_denoise_std.png"):
        write_image(folder / name, seed=2)
    result = run_main(["denoise", folder, "--json", *fast(model)], capsys)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["done"], summary["skipped"]) == (1, 3)
    skipped = {Path(i["input"]).name: i for i in summary["items"] if i["status"] == "skipped"}
    assert set(skipped) == {"b_denoise.png", "b_denoise_s1.png", "b_denoise_std.png"}
    assert all(i["error"] == "looks like an output of this command" for i in skipped.values())
    assert "1 done, 3 skipped" in result.err and "--include-outputs" in result.err

    out = tmp_path / "out"  # beside the inputs, a_denoise.png would be both an input and a.png's output
    again = run_main(["denoise", folder, "--include-outputs", "-o", f"{out}/", *fast(model)], capsys)
    assert again.code == 0, again.err
    assert "skipped" not in again.err.splitlines()[-1].replace("0 skipped", "")
    assert {p.name for p in out.iterdir()} == {"a_denoise.png", "a_denoise_denoise.png", "b_denoise_denoise.png",
                                              "b_denoise_s1_denoise.png", "b_denoise_std_denoise.png"}


# ------------------------------------------------------------------------------------------ 7. output folders


def test_an_output_folder_under_a_file_is_refused_before_the_model_loads(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    (tmp_path / "afile").write_text("not a folder")
    result = run_main(["denoise", image, "-o", tmp_path / "afile" / "sub" / "", *_no_model(tmp_path)], capsys)
    err = _one_error_line(result)
    assert "afile" in err and "folder" in err


def test_a_read_only_output_folder_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch) -> None:
    import tempfile

    image = write_image(tmp_path / "photo.png")
    out = tmp_path / "out"
    out.mkdir()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Root writes anywhere, so the refusal of the file system is simulated where the probe asks for it.
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    for target in (out, out / "new" / "deeper"):
        result = run_main(["denoise", image, "-o", f"{target}/", *_no_model(tmp_path)], capsys)
        err = _one_error_line(result)
        assert str(out) in err and "not writable" in err and "Permission denied" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_chmod_read_only_folder_is_refused(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = run_main(["denoise", image, "-o", f"{out}/sub/", *_no_model(tmp_path)], capsys)
    finally:
        out.chmod(0o700)
    assert "not writable" in _one_error_line(result)


# ------------------------------------------------------------------------------------ 9. parser usage errors


@pytest.mark.parametrize(("argv", "names"), [
    (["denoise", "x.png", "--seed", "abc"], "'--seed'"),
    (["superres", "x.png", "--scale", "2.5"], "'--scale'"),
    (["denoise", "x.png", "--bogus"], "--bogus"),
    (["frobnicate"], "frobnicate"),
])
def test_parser_errors_are_one_line_in_the_house_style(capsys, argv, names) -> None:
    result = run_main(argv, capsys)
    err = _one_error_line(result)
    assert names in err and "--help" in err


def test_no_arguments_still_shows_the_help(capsys) -> None:
    result = run_main(["denoise"], capsys)
    assert result.code == 2
    assert "Usage" in result.err or "Usage" in result.out


# ----------------------------------------------------------------------------------------- 10. small messages


def test_mmse_on_another_task_names_the_task_before_the_steps(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "2,2,4,4", "--method", "mmse", "--steps", "5",
                       "--model", tmp_path / "none"], capsys)
    err = _one_error_line(result)
    assert "only restores 'denoise'" in err and "drop --steps" not in err


def test_a_random_fraction_that_picks_no_pixel_asks_for_a_larger_one(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--random-fraction", "0.0001", *fast(model)], capsys)
    err = _one_error_line(result)
    assert "--random-fraction" in err and "larger" in err and "--invert-mask" not in err


def test_registry_selects_the_models_toml_of_a_task_command(tmp_path, capsys) -> None:
    from diffrestore.registry import DEFAULT_REGISTRY

    text = DEFAULT_REGISTRY.read_text(encoding="utf-8")
    start = text.index("[models.tiny-pixel]")
    entry = text[start : text.index("[models.tiny-adm]")].replace("models.tiny-pixel", "models.my-tiny")
    registry = tmp_path / "models.toml"
    registry.write_text("schema_version = 1\n\n" + entry, encoding="utf-8")
    image = write_image(tmp_path / "small.png", size=(8, 8))
    flags = ["--model", "my-tiny", "--steps", "2", "--method", "dps", "--device", "cpu"]
    result = run_main(["denoise", image, "--registry", registry, *flags], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / "small_denoise.png").is_file()
    unknown = run_main(["denoise", image, "--overwrite", *flags], capsys)
    assert unknown.code == 3 and "my-tiny" in unknown.err
    broken = tmp_path / "broken.toml"
    broken.write_text("schema_version = [", encoding="utf-8")
    err = _one_error_line(run_main(["denoise", image, "--registry", broken, "--overwrite", *flags], capsys), 3)
    assert "broken.toml" in err


# -------------------------------------------------------------------------------------------------- 11. help


def test_help_shows_what_each_flag_takes_not_type_names() -> None:
    from diffrestore.cli.commands import app
    from diffrestore.solvers.methods import METHOD_KINDS, PRESET_STEPS

    runner = CliRunner()
    commands = [["inpaint"], ["deblur"], ["denoise"], ["train"], ["env"], ["models"], ["models", "list"],
                ["models", "info"], ["models", "download"], ["models", "verify"], ["models", "path"]]
    for command in commands:
        page = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        for placeholder in ("<bool>", "<int>", "<str>", "<float>", "<list[str]>", "<path>", "{name"):
            assert placeholder not in page, (command, placeholder)
    page = runner.invoke(app, ["denoise", "--help"], terminal_width=200).output
    page = " ".join(page.replace("│", " ").split())  # the help column's text, unwrapped
    assert "--method daps|dps|mcg|mmse" in page and set(PRESET_STEPS) == set(METHOD_KINDS)
    assert f"daps {PRESET_STEPS['daps']['fast']} (fast) / {PRESET_STEPS['daps']['paper']} (paper)" in page
    assert f"dps {PRESET_STEPS['dps']['fast']} / {PRESET_STEPS['dps']['paper']}" in page


def test_plain_progress_times_batches_honestly(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"img{i}.png", seed=i)
    result = run_main(["denoise", folder, "--progress", "plain", "--batch-size", "2", "--json", *fast(model)],
                      capsys)
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("[")]
    assert sum("for a batch of 2" in line for line in lines) == 2
    assert sum("batch" not in line for line in lines) == 1  # the image restored alone
    items = json.loads(result.out)["items"]
    assert sorted(item.get("batch_images", 1) for item in items) == [1, 2, 2]


def test_each_input_is_decoded_once_and_read_again_only_past_the_budget(tmp_path, capsys, model, monkeypatch) -> None:
    # The engine decoded every file twice: once to check it before the model loads, once for its batch.
    from diffrestore import imageio
    from diffrestore.run import engine

    reads: list[str] = []
    real = imageio.load_image

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imageio, "load_image", counting)
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"img{i}.png", seed=i)
    result = run_main(["denoise", folder, "--batch-size", "2", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert sorted(reads) == ["img0.png", "img1.png", "img2.png"]
    # A folder over the budget is read again batch by batch instead of held in memory whole.
    reads.clear()
    monkeypatch.setattr(engine, "KEEP_DECODED_BYTES", 0)
    result = run_main(["denoise", folder, "--batch-size", "2", "-o", tmp_path / "out", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert sorted(reads) == sorted(["img0.png", "img1.png", "img2.png"] * 2)
