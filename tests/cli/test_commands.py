"""The restoration commands end to end, in-process through the real entry point (`diffrestore.cli.main`).

A tiny seeded prior (untrained, a few thousand weights) and 2 solver steps keep each run around a second:
these tests check plumbing, files and messages, not restoration quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import H, W, fast, make_tiny_model, run_main, write_image, write_mask
from PIL import Image
from typer.testing import CliRunner

from diffrestore.run.solver_settings import FLAG_FIELDS


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


# ----------------------------------------------------------------------------------------------------------------
# Every command


@pytest.mark.parametrize(
    ("command", "flags", "expected_size"),
    [
        ("inpaint", ["--box", "4,4,8,6"], (W, H)),
        ("superres", ["--scale", "2"], (2 * W, 2 * H)),
        ("sr", ["--scale", "2", "--downsample", "box"], (2 * W, 2 * H)),
        ("deblur", ["--kernel-size", "5", "--sigma", "1.5"], (W, H)),
        ("deblur", ["--blur", "motion", "--kernel-size", "7", "--intensity", "0.5"], (W, H)),
        ("denoise", ["--noise-sigma", "0.1"], (W, H)),
        ("denoise", ["--noise", "poisson", "--poisson-rate", "50"], (W, H)),
        ("colorize", [], (W, H)),
        ("hdr", ["--scale", "2"], (W, H)),
        ("phase-retrieval", ["--oversampling", "2"], (W, H)),
    ],
)
def test_every_command_writes_its_output(tmp_path, capsys, model, command, flags, expected_size) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main([command, image, *flags, *fast(model)], capsys)
    assert result.code == 0, result.err
    task = "superres" if command == "sr" else command
    output = tmp_path / f"photo_{task}.png"
    assert output.is_file()
    assert _size(output) == expected_size
    assert result.out.splitlines()[0].split("\t")[0] == str(output)  # results on stdout
    assert "1 done, 0 skipped, 0 failed" in result.err  # the summary on stderr
    if command == "phase-retrieval":  # always simulated: the input is the clean image
        assert "PSNR" in result.out


def test_default_method_daps_runs(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "4,4,8,6", "--model", model, "--steps", "2"], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / "photo_inpaint.png").is_file()


def test_deblur_with_a_kernel_file(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, :] = 1.0
    np.save(tmp_path / "k.npy", kernel)
    result = run_main(["deblur", image, "--kernel", tmp_path / "k.npy", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / "photo_deblur.png").is_file()


def test_kernel_file_with_kernel_size_is_a_usage_error(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32))
    result = run_main(["deblur", image, "--kernel", tmp_path / "k.npy", "--kernel-size", "5", *fast(model)], capsys)
    assert result.code == 2
    assert "--kernel FILE cannot be combined with --kernel-size" in result.err


def test_colorize_turns_a_gray_file_into_colour(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "gray.png", mode="L")
    result = run_main(["colorize", image, *fast(model)], capsys)
    assert result.code == 0, result.err
    assert _mode(tmp_path / "gray_colorize.png") == "RGB"


def test_gray_input_with_rgb_prior_stays_gray(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "gray.png", mode="L")
    result = run_main(["denoise", image, *fast(model)], capsys)
    assert result.code == 0, result.err
    assert _mode(tmp_path / "gray_denoise.png") == "L"


def test_transparent_pixels_serve_as_the_mask_and_the_result_is_opaque(tmp_path, capsys, model) -> None:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[..., 3] = 255
    rgba[5:10, 6:12, 3] = 0  # the hole
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "holes.png")
    result = run_main(["inpaint", tmp_path / "holes.png", *fast(model)], capsys)
    assert result.code == 0, result.err
    with Image.open(tmp_path / "holes_inpaint.png") as out:
        assert out.mode == "RGB"


def test_inpaint_without_any_mask_source_says_how_to_give_one(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, *fast(model)], capsys)
    assert result.code == 2
    assert "inpaint needs a mask" in result.err and "--mask FILE" in result.err


# ----------------------------------------------------------------------------------------------------------------
# Folders, failures, summary


def test_folder_with_a_corrupt_file_fails_that_item_only(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    for i in range(2):
        write_image(folder / f"img{i}.png", seed=i)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG that stops after its signature
    (folder / "notes.txt").write_text("not an image")  # not an image extension: ignored
    result = run_main(["denoise", folder, "--batch-size", "2", *fast(model)], capsys)
    assert result.code == 1
    for i in range(2):
        assert (folder / f"img{i}_denoise.png").is_file()
    assert not (folder / "broken_denoise.png").exists()
    failure_lines = [line for line in result.err.splitlines() if line.startswith("failed:")]
    assert len(failure_lines) == 1 and "broken.png" in failure_lines[0]
    assert "2 done, 0 skipped, 1 failed (broken.png)" in result.err


def test_fail_fast_stops_before_the_model_loads(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    (folder / "b.png").write_bytes(b"")
    result = run_main(["denoise", folder, "--fail-fast", *fast(model)], capsys)
    assert result.code == 2
    assert "b.png" in result.err
    assert not (folder / "a_denoise.png").exists()


def test_a_folder_run_does_not_restore_its_own_earlier_outputs(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    assert run_main(["denoise", folder, *fast(model)], capsys).code == 0
    again = run_main(["denoise", folder, "--skip-existing", *fast(model)], capsys)
    assert again.code == 0
    assert not (folder / "a_denoise_denoise.png").exists()
    assert "0 done, 2 skipped" in again.err  # a.png (its output exists) and a_denoise.png (an output)
    assert "a_denoise.png (looks like an output of this command)" in again.err


def test_existing_outputs_are_untouched_without_overwrite(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    output = tmp_path / "photo_denoise.png"
    output.write_bytes(b"precious")
    result = run_main(["denoise", image, *fast(model)], capsys)
    assert result.code == 2
    assert f"output {output} already exists" in result.err and "--overwrite" in result.err
    assert output.read_bytes() == b"precious"

    skipped = run_main(["denoise", image, "--skip-existing", *fast(model)], capsys)
    assert skipped.code == 0
    assert "skipped" in skipped.err and "0 done, 1 skipped" in skipped.err
    assert output.read_bytes() == b"precious"

    replaced = run_main(["denoise", image, "--overwrite", *fast(model)], capsys)
    assert replaced.code == 0
    assert _size(output) == (W, H)


def test_overwrite_and_skip_existing_together_is_a_usage_error(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, "--overwrite", "--skip-existing", *fast(model)], capsys)
    assert result.code == 2
    assert "--overwrite and --skip-existing cannot be combined" in result.err


def test_two_inputs_mapping_to_one_output_are_refused_before_anything_runs(tmp_path, capsys, model) -> None:
    a = write_image(tmp_path / "x" / "photo.png")
    b = write_image(tmp_path / "y" / "photo.png", seed=1)
    result = run_main(["denoise", a, b, "-o", tmp_path / "out", *fast(model)], capsys)
    assert result.code == 2
    assert "would both be written to" in result.err and str(a) in result.err and str(b) in result.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_empty_suffix_next_to_the_input_is_refused(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    before = image.read_bytes()
    result = run_main(["denoise", image, "--suffix", "", *fast(model)], capsys)
    assert result.code == 2
    assert "overwrite the inputs" in result.err
    assert image.read_bytes() == before


def test_output_file_and_output_dir(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    single = run_main(["denoise", image, "-o", tmp_path / "clean.png", *fast(model)], capsys)
    assert single.code == 0, single.err
    assert (tmp_path / "clean.png").is_file()

    folder = tmp_path / "in"
    write_image(folder / "a.png")
    write_image(folder / "sub" / "b.png", seed=2)
    many = run_main(["denoise", folder, "--recursive", "-o", tmp_path / "out", "--suffix", "_x", *fast(model)], capsys)
    assert many.code == 0, many.err
    assert (tmp_path / "out" / "a_x.png").is_file()
    assert (tmp_path / "out" / "sub" / "b_x.png").is_file()  # the layout below the input folder is kept

    too_many = run_main(["denoise", folder, "-r", "-o", tmp_path / "one.png", *fast(model)], capsys)
    assert too_many.code == 2
    assert "names one file but there are 2 inputs" in too_many.err


def test_missing_inputs_and_masks_are_usage_errors_before_the_model_loads(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    missing_model = ["--model", str(tmp_path / "no-such-model"), "--device", "cpu"]
    result = run_main(["inpaint", tmp_path / "nope.png", "--box", "1,1,2,2", *missing_model], capsys)
    assert result.code == 2 and "input not found" in result.err
    result = run_main(["inpaint", image, "--mask", tmp_path / "nomask.png", *missing_model], capsys)
    assert result.code == 2 and "mask file not found" in result.err
    write_mask(tmp_path / "small_mask.png", size=(10, 10))
    result = run_main(["inpaint", image, "--mask", tmp_path / "small_mask.png", *missing_model], capsys)
    assert result.code == 2
    assert "10 x 10" in result.err and f"{W} x {H}" in result.err
    # Inputs all valid: now the model is looked up, and a missing one is a model error (exit 3).
    result = run_main(["inpaint", image, "--box", "1,1,2,2", *missing_model], capsys)
    assert result.code == 3, result.err


def test_mask_dir_matches_by_stem(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    write_image(folder / "b.jpg", seed=1)
    masks = tmp_path / "masks"
    masks.mkdir()
    write_mask(masks / "a.png")
    result = run_main(["inpaint", folder, "--mask-dir", masks, *fast(model)], capsys)
    assert result.code == 1
    assert (folder / "a_inpaint.png").is_file()
    assert "failed: " in result.err and "no mask for b.jpg" in result.err


def test_bad_flag_values_have_clear_messages(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    cases = [
        (["superres", image, "--scale", "5"], "--scale 5 is not supported"),
        (["denoise", image, "--noise-sigma", "3"], "--noise-sigma must be at most 1, got 3"),
        (["inpaint", image, "--box", "1,2,3"], "invalid --box '1,2,3'"),
        (["inpaint", image, "--box", "1,1,2,2", "--random-fraction", "0.5"], "cannot be combined"),
        (["denoise", image, "--num-samples", "0"], "--num-samples must be at least 1, got 0"),
        (["denoise", image, "--preset", "slow"], "unknown --preset 'slow'"),
        (["denoise", image, "--method", "magic"], "unknown"),
        (["denoise", image, "--device", "tpu"], "device"),
    ]
    for argv, message in cases:
        result = run_main([*argv, "--model", str(model), "--steps", "2"], capsys)
        assert result.code == 2, (argv, result.err)
        assert message in result.err, (argv, result.err)
        assert result.err.count("\n") == 1, result.err  # one line


def test_fp16_on_cpu_is_refused_with_a_clear_message(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, "--dtype", "fp16", "--device", "cpu", "--model", str(model)], capsys)
    assert result.code == 2
    assert "fp16 is not supported on the CPU" in result.err
    assert not (tmp_path / "photo_denoise.png").exists()


# ----------------------------------------------------------------------------------------------------------------
# Output formats: --json, --quiet, samples, --simulate


def test_json_summary_parses(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    (folder / "bad.png").write_text("nope")
    result = run_main(["denoise", folder, "--json", *fast(model)], capsys)
    assert result.code == 1
    summary = json.loads(result.out)
    assert (summary["done"], summary["failed"], summary["skipped"]) == (1, 1, 0)
    by_name = {Path(item["input"]).name: item for item in summary["items"]}
    assert by_name["a.png"]["status"] == "done" and Path(by_name["a.png"]["output"]).is_file()
    assert by_name["bad.png"]["status"] == "failed" and "bad.png" in by_name["bad.png"]["error"]
    # a real input's noise is estimated from the image (printed per item); a number given wins
    assert summary["operator"] == {"task": "denoise", "noise": "gaussian", "noise_sigma": "auto"}
    assert 1 / 255 <= by_name["a.png"]["noise_sigma_estimated"] < 0.1


def test_quiet_prints_nothing_on_success(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, "-q", *fast(model)], capsys)
    assert result.code == 0
    assert result.out == "" and result.err == ""


def test_num_samples_writes_samples_mean_and_std_map(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "4,4,10,8", "--num-samples", "3", *fast(model)], capsys)
    assert result.code == 0, result.err
    samples = [tmp_path / f"photo_inpaint_s{i}.png" for i in (1, 2, 3)]
    mean_path, std_path = tmp_path / "photo_inpaint.png", tmp_path / "photo_inpaint_std.png"
    for path in [*samples, mean_path, std_path]:
        assert path.is_file(), path
        assert str(path) in result.out
    stack = np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in samples])
    mean = np.asarray(Image.open(mean_path), dtype=np.float64)
    # The output is the mean of the samples (each rounded to 8 bits, hence the tolerance of one level).
    assert np.abs(stack.mean(axis=0) - mean).max() <= 1.0
    with Image.open(std_path) as std_image:
        assert std_image.mode == "L" and std_image.size == (W, H)
        std_map = np.asarray(std_image, dtype=np.float64)
    expected = np.clip(4 * (stack / 255).std(axis=0, ddof=1).mean(axis=2), 0, 1) * 255
    assert np.abs(std_map - expected).max() <= 3.0  # 8-bit rounding of samples and map
    assert std_map.max() > 0  # samples differ: some uncertainty


def test_simulate_prints_psnr_that_matches_the_written_file(tmp_path, capsys, model) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    image = write_image(tmp_path / "clean.png")
    result = run_main(["denoise", image, "--simulate", *fast(model)], capsys)
    assert result.code == 0, result.err
    line = result.out.splitlines()[0]
    assert "PSNR" in line and "SSIM" in line
    printed = float(line.split("PSNR ")[1].split(" dB")[0])
    clean = np.asarray(Image.open(image), dtype=np.float64) / 255
    restored = np.asarray(Image.open(tmp_path / "clean_denoise.png"), dtype=np.float64) / 255
    assert abs(printed - peak_signal_noise_ratio(clean, restored, data_range=1.0)) < 0.1


def test_plain_progress_is_one_line_per_image_on_stderr(tmp_path, capsys, model) -> None:
    folder = tmp_path / "in"
    for i in range(2):
        write_image(folder / f"img{i}.png", seed=i)
    result = run_main(["denoise", folder, "--progress", "plain", *fast(model)], capsys)
    assert result.code == 0
    progress_lines = [line for line in result.err.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in progress_lines] == ["[1/2", "[2/2"]
    assert result.out.splitlines() == [str(folder / "img0_denoise.png"), str(folder / "img1_denoise.png")]


def test_rich_progress_runs_and_reports(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["denoise", image, "--progress", "rich", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert "1 done, 0 skipped, 0 failed" in result.err
    assert result.out.strip() == str(tmp_path / "photo_denoise.png")


def test_model_loads_once_and_same_size_images_are_batched(tmp_path, capsys, model, monkeypatch) -> None:
    from diffrestore.run import engine

    loads, batches = [], []
    real_load, real_restore = engine.load_prior, engine.restore_batch
    monkeypatch.setattr(engine, "load_prior", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    def counting_restore(*args, **kwargs):
        batches.append(len(args[3]))
        return real_restore(*args, **kwargs)

    monkeypatch.setattr(engine, "restore_batch", counting_restore)
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"s{i}.png", seed=i)
    write_image(folder / "big.png", size=(W + 8, H))
    result = run_main(["denoise", folder, "--batch-size", "2", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert len(loads) == 1
    assert sorted(batches) == [1, 1, 2]  # big.png alone; three same-size images as 2 + 1


def test_same_seed_same_output(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    for name in ("a", "b"):
        assert run_main(["denoise", image, "--seed", "7", "--suffix", f"_{name}", *fast(model)], capsys).code == 0
    a = np.asarray(Image.open(tmp_path / "photo_a.png"))
    b = np.asarray(Image.open(tmp_path / "photo_b.png"))
    assert np.array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------------
# Help


def test_help_documents_exit_codes_and_shared_flags() -> None:
    runner = CliRunner()
    from diffrestore.cli.commands import app

    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("inpaint", "superres", "sr", "deblur", "denoise", "colorize", "phase-retrieval", "hdr", "train"):
        assert command in top.output
    for command in ("inpaint", "superres", "deblur", "denoise", "colorize", "phase-retrieval", "hdr"):
        page = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert page.exit_code == 0
        assert "Exit codes: 0 all done; 1 some items failed; 2 usage error" in page.output
        for flag in (
            "--method",
            "--model",
            "--preset",
            "--steps",
            "--seed",
            "--num-samples",
            "--device",
            "--dtype",
            "--batch-size",
            "--output",
            "--suffix",
            "--overwrite",
            "--skip-existing",
            "--json",
            "--quiet",
            "--progress",
            "--fail-fast",
            "--simulate",
            "--noise-sigma",
            "--noise",
        ):
            assert flag in page.output, (command, flag)
    assert "[0, 1] intensity" in runner.invoke(app, ["denoise", "--help"], terminal_width=200).output


def test_a_fixed_size_model_tiles_other_sizes_and_says_so(tmp_path, capsys) -> None:
    import json

    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), layers_per_block=1,
                       norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    folder = tmp_path / "unet8"
    unet.save_pretrained(folder)
    DDPMScheduler(num_train_timesteps=100).save_pretrained(folder)
    flags = ["--model", folder, "--steps", "2", "--method", "dps", "--device", "cpu"]
    big = run_main(["denoise", write_image(tmp_path / "big.png"), *flags, "--json"], capsys)
    assert big.code == 0, big.err
    assert f"the model works at 8x8 px: this {W}x{H} image is denoised in" in big.err and "--tile-overlap" in big.err
    item = json.loads(big.out)["items"][0]
    assert item["tiles"] > 1
    from PIL import Image

    assert Image.open(tmp_path / "big_denoise.png").size == (W, H)
    right = run_main(["denoise", write_image(tmp_path / "small.png", size=(8, 8)), *flags, "--json"], capsys)
    assert right.code == 0, right.err
    assert "denoised in" not in right.err and "tiles" not in json.loads(right.out)["items"][0]
    assert (tmp_path / "small_denoise.png").is_file()
    bad = run_main(["denoise", tmp_path / "big.png", *flags, "--tile-overlap", "5", "-o", tmp_path / "x.png"], capsys)
    assert bad.code == 2 and "--tile-overlap 5 must be between 0 and half the window (4 for 8x8)" in bad.err


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "diffrestore" / "weights" / "default" / "model.safetensors").is_file(),
    reason="the default prior's weights are not in this tree",
)
def test_the_default_prior_is_used_without_model(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, "--box", "4,4,8,6", "--steps", "2", "--method", "dps", "--device", "cpu",
                       "--json"], capsys)
    assert result.code == 0, result.err
    assert json.loads(result.out)["model"] == "builtin"
    assert (tmp_path / "photo_inpaint.png").is_file()


def test_input_notes_are_printed_once_per_file(tmp_path, capsys) -> None:
    """What reading decided (here: the transparency is the mask, some of it semi-transparent) reaches the user."""
    from PIL import Image

    rgba = Image.open(write_image(tmp_path / "base.png")).convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[4:9, 5:11] = 0
    alpha[4, 12] = 100  # semi-transparent: below 50 %, so missing
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "cutout.png")
    result = run_main(["inpaint", tmp_path / "cutout.png", "--steps", "2", "--device", "cpu", "--progress", "plain"],
                      capsys)
    assert result.code == 0, result.err
    notes = [line for line in result.err.splitlines() if line.startswith("note: cutout.png:")]
    assert any("transparency is the inpainting mask" in line for line in notes)
    assert any("semi-transparent" in line for line in notes)


def _as_set_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(repr(v) for v in value)
    return value if isinstance(value, str) else repr(value)


@pytest.mark.parametrize("method", ["daps", "dps", "mcg"])
def test_the_json_summary_alone_reproduces_the_run(tmp_path, capsys, model, method) -> None:
    """Every setting that ran is in the summary (not only the --set keys): the method's whole config as
    "solver", and per image what the solver derived ("resolved"). Replaying "solver" on top of the other preset
    gives the same file."""
    image = write_image(tmp_path / "photo.png")
    first = run_main(["superres", image, "--scale", "2", "--method", method, "--steps", "3", "--json", "-o",
                      tmp_path / "a", "--model", str(model), "--seed", "5"], capsys)
    assert first.code == 0, first.err
    doc = json.loads(first.out)
    assert doc["solver"]["steps"] == 3 and doc["items"][0]["resolved"], doc
    # keys with a flag of their own (--steps, --num-samples) are replayed by that flag, which stays the same
    replay = [f"{key}={_as_set_value(value)}" for key, value in doc["solver"].items() if key not in FLAG_FIELDS]
    second = run_main(["superres", image, "--scale", "2", "--method", method, "--steps", "3", "--json", "-o",
                       tmp_path / "b", "--model", str(model), "--seed", "5", "--preset", "paper",
                       *[arg for pair in replay for arg in ("--set", pair)]], capsys)
    assert second.code == 0, second.err
    again = json.loads(second.out)
    assert again["solver"] == doc["solver"] and again["items"][0]["resolved"] == doc["items"][0]["resolved"]
    assert (tmp_path / "a" / "photo_superres.png").read_bytes() == (tmp_path / "b" / "photo_superres.png").read_bytes()
