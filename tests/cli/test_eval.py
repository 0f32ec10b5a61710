"""``diffrestore eval`` and ``--metrics`` end to end, in-process through the real entry point.

One evaluation (two methods, two tiny images, the tiny seeded prior, 2 steps) runs once for the module; the tests
read its files, resume it, and score its folders again the other way (``--restored``). What they check is
plumbing and agreement between the outputs (CSV, JSON, table, stdout, the task command's own scores), not quality.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import Result, make_tiny_model, run_main, write_image
from PIL import Image

BOX = ["--box", "4,4,8,6"]
METHODS = ("dps", "daps")


def _fast(model: Path) -> list[str]:
    return ["--model", str(model), "--steps", "2", "--device", "cpu"]


def _main(argv: list) -> Result:
    """The entry point with stdout and stderr captured (for module-scoped fixtures, where capsys is not there)."""
    from diffrestore.cli.commands import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, model) -> tuple[Path, Result]:
    """clean/ with two images, evaluated with dps and daps into out/ (run once for the module)."""
    root = tmp_path_factory.mktemp("eval")
    for i in range(2):
        write_image(root / "clean" / f"p{i}.png", seed=i)
    result = _main(["eval", "inpaint", root / "clean", *BOX, "--method", ",".join(METHODS), "-o", root / "out",
                    *_fast(model)])
    assert result.code == 0, result.err
    return root, result


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- mode (a): TASK CLEAN_DIR


def test_eval_writes_a_report_whose_files_agree(evaluated) -> None:
    root, result = evaluated
    out = root / "out"
    for name in ("results.csv", "results.json", "table.md", "contact_sheet.png"):
        assert (out / name).is_file(), name
    for method in METHODS:  # restored by the task command's own run, into OUT/<method>/
        assert sorted(p.name for p in (out / method).glob("*.png")) == ["p0_inpaint.png", "p1_inpaint.png"]

    rows = _rows(out / "results.csv")
    assert [(r["method"], Path(r["image"]).name, r["status"]) for r in rows] == [
        (m, f"p{i}.png", "done") for m in METHODS for i in range(2)]
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["methods"] == list(METHODS)
    assert doc["metrics"]["psnr"]["higher_is_better"] is True and "[0, 1]" in doc["metrics"]["psnr"]["convention"]
    assert doc["settings"]["task_flags"] == {"box": "4,4,8,6"} and doc["settings"]["num_samples"] == 1
    table = (out / "table.md").read_text(encoding="utf-8")
    assert result.out.strip() == table.strip()  # the printed table is the saved one
    assert table.splitlines()[0] == "| method | PSNR (dB) ↑ | SSIM ↑ | n |"
    for method in METHODS:
        psnr = [float(r["psnr"]) for r in rows if r["method"] == method]
        aggregate = doc["aggregate"][method]
        assert aggregate["n"] == 2
        assert aggregate["psnr"]["mean"] == pytest.approx(statistics.fmean(psnr))
        assert aggregate["psnr"]["std"] == pytest.approx(statistics.stdev(psnr))
        line = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
        assert f"{aggregate['psnr']['mean']:.2f} ± {aggregate['psnr']['std']:.2f}" in line
        assert f"{aggregate['ssim']['mean']:.4f} ± {aggregate['ssim']['std']:.4f}" in line
    # the two methods are really different runs
    assert doc["aggregate"]["dps"]["psnr"]["mean"] != doc["aggregate"]["daps"]["psnr"]["mean"]


def test_eval_scores_are_the_task_commands_own(evaluated, model, tmp_path, capsys) -> None:
    """An image's row is what 'inpaint --simulate' prints for it: the same engine path, not a second one."""
    root, _ = evaluated
    result = run_main(["inpaint", root / "clean" / "p1.png", *BOX, "--simulate", "--method", "daps", "-o",
                       tmp_path, "--json", *_fast(model)], capsys)
    assert result.code == 0, result.err
    item = json.loads(result.out)["items"][0]
    rows = _rows(root / "out" / "results.csv")
    row = next(r for r in rows if r["method"] == "daps" and r["image"].endswith("p1.png"))
    assert float(row["psnr"]) == pytest.approx(item["psnr"], abs=1e-9)
    assert float(row["ssim"]) == pytest.approx(item["ssim"], abs=1e-9)


def test_contact_sheet_has_a_row_per_image_and_a_column_per_picture(evaluated) -> None:
    from diffrestore.run.contact_sheet import CELL_TARGET, GAP, LABEL_HEIGHT

    root, _ = evaluated
    with Image.open(root / "out" / "contact_sheet.png") as sheet:
        width, height = sheet.size
    scale = CELL_TARGET // 24  # the images are 24 x 20
    columns = 1 + len(METHODS) + 1  # degraded input, each method, reference
    assert width == columns * 24 * scale + (columns + 1) * GAP
    assert height == LABEL_HEIGHT + 2 * (20 * scale + GAP)


def test_a_resumed_eval_redoes_only_what_is_missing(evaluated, model, tmp_path) -> None:
    root, _ = evaluated
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    before = _tree(out)
    (out / "daps" / "p1_inpaint.png").unlink()
    argv = ["eval", "inpaint", root / "clean", *BOX, "--method", ",".join(METHODS), "-o", out, *_fast(model)]

    again = _main(argv)  # without --skip-existing the report is not replaced
    assert again.code == 2 and again.err.count("\n") == 1 and "results.csv" in again.err, again.err

    resumed = _main([*argv, "--skip-existing"])
    assert resumed.code == 0, resumed.err
    after = _tree(out)
    assert after["daps/p1_inpaint.png"]  # restored again
    for name in ("dps/p0_inpaint.png", "dps/p1_inpaint.png", "daps/p0_inpaint.png"):
        assert after[name] == before[name], name  # untouched
    skipped = [line for line in resumed.err.splitlines() if "] skipped " in line]
    assert len(skipped) == 3 and "1 done, 1 skipped" in resumed.err, resumed.err
    rows, first = _rows(out / "results.csv"), _rows(root / "out" / "results.csv")
    assert [(r["psnr"], r["ssim"], r["scored_from"]) for r in rows] == [
        (r["psnr"], r["ssim"], "run") for r in first]  # the skipped images keep their recorded scores


def test_an_image_without_its_record_is_scored_from_its_file(evaluated, model, tmp_path) -> None:
    root, _ = evaluated
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    (out / "dps" / "scores.json").unlink()  # as if the run had been killed before it wrote its record
    result = _main(["eval", "inpaint", root / "clean", *BOX, "--method", ",".join(METHODS), "-o", out,
                    "--skip-existing", *_fast(model)])
    assert result.code == 0, result.err
    rows, first = _rows(out / "results.csv"), _rows(root / "out" / "results.csv")
    for row, old in zip(rows, first, strict=True):
        assert row["scored_from"] == ("file" if row["method"] == "dps" else "run")
        # the saved 8-bit file scores within quantisation of the float output
        assert float(row["psnr"]) == pytest.approx(float(old["psnr"]), abs=0.05)
    assert "scored from the saved file" in (out / "table.md").read_text(encoding="utf-8")


def test_a_split_eval_reports_once_every_part_is_done(model, tmp_path) -> None:
    for i in range(2):
        write_image(tmp_path / "clean" / f"p{i}.png", seed=i)
    argv = ["eval", "inpaint", tmp_path / "clean", *BOX, "--method", "dps", "-o", tmp_path / "out", *_fast(model)]
    first = _main([*argv, "--shard", "1/2"])
    assert first.code == 0, first.err
    assert "the report is written when every part" in first.err
    assert not (tmp_path / "out" / "results.csv").exists()
    second = _main([*argv, "--shard", "2/2"])
    assert second.code == 0, second.err
    rows = _rows(tmp_path / "out" / "results.csv")
    assert [(Path(r["image"]).name, r["status"], r["scored_from"]) for r in rows] == [
        ("p0.png", "done", "run"), ("p1.png", "done", "run")]


# ------------------------------------------------------------------------------ mode (b): --restored --reference


def test_eval_scores_folders_against_references(evaluated, tmp_path) -> None:
    root, _ = evaluated
    result = _main(["eval", "--restored", root / "out" / "dps", "--restored", root / "out" / "daps",
                    "--reference", root / "clean", "-o", tmp_path / "scores", "--json"])
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["methods"] == list(METHODS)
    first = json.loads((root / "out" / "results.json").read_text(encoding="utf-8"))
    for method in METHODS:
        assert doc["aggregate"][method]["n"] == 2
        # scored from the saved files: within 8-bit quantisation of the run's float outputs
        assert doc["aggregate"][method]["psnr"]["mean"] == pytest.approx(
            first["aggregate"][method]["psnr"]["mean"], abs=0.05)
    assert {Path(i["restored"]).name: Path(i["image"]).name for i in doc["images"] if i["method"] == "dps"} == {
        "p0_inpaint.png": "p0.png", "p1_inpaint.png": "p1.png"}
    for name in ("results.csv", "results.json", "table.md", "contact_sheet.png"):
        assert (tmp_path / "scores" / name).is_file(), name
    assert json.loads((tmp_path / "scores" / "results.json").read_text(encoding="utf-8")) == doc


@pytest.mark.parametrize("case", ["no reference", "no restoration", "size", "suffix"])
def test_a_file_without_its_match_is_one_line_and_exit_2(evaluated, tmp_path, case) -> None:
    root, _ = evaluated
    restored, reference = tmp_path / "restored", tmp_path / "reference"
    shutil.copytree(root / "out" / "dps", restored)
    shutil.copytree(root / "clean", reference)
    extra = []
    if case == "no reference":
        write_image(restored / "other_inpaint.png")
        expected = "other_inpaint.png: no reference"
    elif case == "no restoration":
        write_image(reference / "p2.png")
        expected = "p2.png: no restored image"
    elif case == "size":
        write_image(reference / "p1.png", size=(30, 20))
        expected = "p1_inpaint.png is 24 x 20 but its reference"
    else:
        extra, expected = ["--suffix", "_sr"], "p0_inpaint.png: no reference"
    result = _main(["eval", "--restored", restored, "--reference", reference, "-o", tmp_path / "scores", *extra])
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and expected in result.err, result.err
    assert not (tmp_path / "scores").exists()


# ----------------------------------------------------------------------------------- --metrics on task commands


def test_metrics_choose_the_scores_of_a_simulated_run(tmp_path, capsys, model) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["inpaint", image, *BOX, "--simulate", "--metrics", "ssim", "--method", "dps",
                       *_fast(model)], capsys)
    assert result.code == 0, result.err
    assert "SSIM" in result.out and "PSNR" not in result.out
    result = run_main(["inpaint", image, *BOX, "--simulate", "--metrics", "psnr,ssim", "--method", "dps",
                       "--overwrite", "--json", *_fast(model)], capsys)
    doc = json.loads(result.out)
    assert set(doc["metrics"]) == {"psnr", "ssim"} and doc["metrics"]["ssim"]["kind"] == "image"
    assert {"psnr", "ssim"} <= set(doc["items"][0])


def _traced(argv: list, cwd: Path, env: dict | None = None) -> tuple[int, list[str], set[str]]:
    """(exit code, stderr without the import-time lines, modules imported) of the real command."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "diffrestore.cli", *map(str, argv)], cwd=cwd,
                            capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return result.returncode, [line for line in lines if not line.startswith("import time:")], imported


FAIL_FAST = [
    (["inpaint", "clean/p0.png", *BOX, "--simulate", "--metrics", "psnr,foo"], "unknown metric 'foo'"),
    (["inpaint", "clean/p0.png", *BOX, "--metrics", "psnr"], "--metrics needs --simulate"),
    (["inpaint", "clean/p0.png", *BOX, "--simulate", "--metrics", "fid"], "computed over a set of images"),
    (["eval", "inpaint", "clean", *BOX, "-o", "out", "--metrics", "foo"], "unknown metric 'foo'"),
    (["eval", "inpaint", "clean", *BOX], "eval needs -o OUT"),
    (["eval", "inpaint", "clean", *BOX, "-o", "clean/out"], "inside the folder of clean images"),
    (["eval", "--restored", "clean", "--reference", "missing"], "--reference missing: no such folder"),
]


@pytest.mark.parametrize("argv, message", FAIL_FAST, ids=[" ".join(case[0]) for case in FAIL_FAST])
def test_metric_and_eval_errors_come_before_torch(tmp_path, argv, message) -> None:
    write_image(tmp_path / "clean" / "p0.png")
    code, err, imported = _traced(argv, tmp_path)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert "torch" not in imported
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["clean", "p0.png"]  # nothing written


def test_missing_metric_weights_offline_fail_before_the_prior_loads(tmp_path, capsys, model, monkeypatch) -> None:
    random_weights = pytest.importorskip("diffrestore.metrics.random_weights")
    registry = random_weights.write_random_registry(tmp_path / "models.toml")
    image = write_image(tmp_path / "photo.png", size=(64, 48))  # large enough for LPIPS's AlexNet
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "empty-cache"))
    result = run_main(["inpaint", image, *BOX, "--simulate", "--metrics", "psnr,lpips", "--offline",
                       "--registry", registry, "--method", "dps", *_fast(model)], capsys)
    assert result.code == 3, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "diffrestore models download" in errors[0], result.err
    assert not (tmp_path / "photo_inpaint.png").exists()


@pytest.fixture
def random_metric_weights(tmp_path, monkeypatch) -> Path:
    """A models.toml naming the metric networks and seeded random files for them in a cache of this test's own
    (the metrics' plumbing, not their values); returns the registry file."""
    random_weights = pytest.importorskip("diffrestore.metrics.random_weights")
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))
    from diffrestore.metrics.catalogue import required_models

    random_weights.write_random_cache(tmp_path / "cache", required_models(["lpips"]))
    return random_weights.write_random_registry(tmp_path / "models.toml")


def test_lpips_on_a_task_command_and_on_folders(tmp_path, capsys, model, random_metric_weights) -> None:
    size = (64, 48)  # LPIPS's AlexNet needs more than the 24 x 20 of the other tests
    image = write_image(tmp_path / "clean" / "photo.png", size=size)
    result = run_main(["inpaint", image, *BOX, "--simulate", "--metrics", "psnr,lpips", "--registry",
                       random_metric_weights, "--offline", "--method", "dps", "-o", tmp_path / "restored",
                       *_fast(model)], capsys)
    assert result.code == 0, result.err
    fields = result.out.split("\t")
    assert fields[1].startswith("PSNR ") and fields[2].startswith("LPIPS ") and len(fields) == 3, result.out
    assert float(fields[2].split()[1]) >= 0.0

    result = run_main(["eval", "--restored", tmp_path / "restored", "--reference", tmp_path / "clean", "--metrics",
                       "lpips", "--registry", random_metric_weights, "--offline", "--json"], capsys)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["metrics"]["lpips"]["higher_is_better"] is False and doc["aggregate"]["restored"]["n"] == 1
    assert doc["images"][0]["lpips"] == pytest.approx(float(fields[2].split()[1]), abs=0.01)


# ---------------------------------------------------------------- images too small for a metric's network


@pytest.fixture
def no_metric_weights(tmp_path, monkeypatch) -> Path:
    """A registry naming the metric networks and an empty cache: any attempt to reach their weights offline is
    exit 3, so an exit 2 below shows the size was refused before the weights (and the prior) were asked for."""
    random_weights = pytest.importorskip("diffrestore.metrics.random_weights")
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "empty-cache"))
    return random_weights.write_random_registry(tmp_path / "models.toml")


def _refused_small(result: Result, image: str) -> None:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert f"{image} is 24 x 20 pixels: too small for the metric lpips" in result.err, result.err


def test_a_task_command_refuses_an_image_too_small_for_lpips_before_the_prior(tmp_path,
                                                                            random_metric_weights) -> None:
    """One small image in a folder refuses the whole run before the prior loads (the --model folder is missing:
    loading it would be exit 3), instead of failing that image after its restoration; the LPIPS weights are there."""
    write_image(tmp_path / "clean" / "big.png", size=(64, 48))
    write_image(tmp_path / "clean" / "small.png")  # 24 x 20
    result = _main(["inpaint", tmp_path / "clean", *BOX, "--simulate", "--metrics", "psnr,lpips", "--registry",
                    random_metric_weights, "--offline", "-o", tmp_path / "out", "--model", tmp_path / "no-such-model",
                    "--steps", "2", "--device", "cpu"])
    _refused_small(result, "small.png")
    assert not (tmp_path / "out").exists()


def test_eval_refuses_an_image_too_small_for_lpips_before_anything_runs(tmp_path, no_metric_weights) -> None:
    write_image(tmp_path / "clean" / "p0.png")
    result = _main(["eval", "inpaint", tmp_path / "clean", *BOX, "--method", "dps,daps", "--metrics", "psnr,lpips",
                    "--registry", no_metric_weights, "--offline", "-o", tmp_path / "out", "--model",
                    tmp_path / "no-such-model", "--steps", "2", "--device", "cpu"])
    _refused_small(result, "p0.png")
    assert not (tmp_path / "out").exists()


def test_eval_folders_refuse_an_image_too_small_for_lpips(evaluated, tmp_path, no_metric_weights) -> None:
    root, _ = evaluated
    result = _main(["eval", "--restored", root / "out" / "dps", "--reference", root / "clean", "--metrics",
                    "ssim,lpips", "--registry", no_metric_weights, "--offline", "-o", tmp_path / "scores"])
    _refused_small(result, "p0_inpaint.png")
    assert not (tmp_path / "scores").exists()
