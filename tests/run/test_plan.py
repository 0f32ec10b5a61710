"""diffrestore.run.plan: inputs (folders, globs, earlier outputs), outputs (names, layout, collisions,
existing files) and the run summary's line and exit code; no model."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore.errors import OutputError, UsageError
from diffrestore.run import plan
from diffrestore.run.options import RunOptions

EXT = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def _files(tmp_path: Path, *names: str) -> None:
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def test_folder_inputs_are_sorted_images_only(tmp_path) -> None:
    _files(tmp_path, "b.png", "a.JPG", "c.txt", ".hidden.png", "sub/d.png")
    found = plan.expand_inputs([tmp_path], recursive=False, extensions=EXT)
    assert [f.path.name for f in found] == ["a.JPG", "b.png"]
    deep = plan.expand_inputs([tmp_path], recursive=True, extensions=EXT)
    assert [f.path.relative_to(tmp_path).as_posix() for f in deep] == ["a.JPG", "b.png", "sub/d.png"]


def test_globs_and_duplicates(tmp_path) -> None:
    _files(tmp_path, "x1.png", "x2.png", "y.png")
    found = plan.expand_inputs([str(tmp_path / "x*.png"), tmp_path / "x1.png"], recursive=False, extensions=EXT)
    assert [f.path.name for f in found] == ["x1.png", "x2.png"]  # x1 given twice, kept once


def test_input_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"input not found: .*missing\.png"):
        plan.expand_inputs([tmp_path / "missing.png"], recursive=False, extensions=EXT)
    with pytest.raises(UsageError, match="no images match"):
        plan.expand_inputs([str(tmp_path / "*.png")], recursive=False, extensions=EXT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no images in folder .*empty.*--recursive"):
        plan.expand_inputs([tmp_path / "empty"], recursive=False, extensions=EXT)


def test_folder_scan_skips_this_commands_earlier_outputs(tmp_path) -> None:
    _files(tmp_path, "a.png", "a_inpaint.png", "a_inpaint_s1.png", "a_inpaint_std.png", "a_denoise.png")
    found = plan.expand_inputs([tmp_path], recursive=False, extensions=EXT, skip_suffix="_inpaint")
    marked = {f.path.name: f.looks_like_output for f in found}  # kept, to be counted and named as skipped
    assert marked == {"a.png": False, "a_denoise.png": False, "a_inpaint.png": True, "a_inpaint_s1.png": True,
                      "a_inpaint_std.png": True}
    items = plan.plan_run([tmp_path], RunOptions(task="inpaint", skip_existing=True))
    skipped = {item.input.name: item.error for item in items if item.status == "skipped"}
    assert skipped.pop("a.png") == f"{tmp_path / 'a_inpaint.png'} exists"  # --skip-existing, as before
    assert skipped == dict.fromkeys(("a_inpaint.png", "a_inpaint_s1.png", "a_inpaint_std.png"), plan.LOOKS_LIKE_OUTPUT)
    everything = plan.plan_run([tmp_path], RunOptions(task="inpaint", include_outputs=True,
                                                           output=tmp_path / "out"))
    assert len(everything) == 5 and all(item.status == "pending" for item in everything)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def _plan(tmp_path: Path, names: list[str], **kwargs) -> list[plan.Item]:
    _files(tmp_path, *names)
    opts = RunOptions(task=kwargs.pop("task", "inpaint"), **kwargs)
    files = plan.expand_inputs([tmp_path / n for n in names], recursive=False, extensions=EXT)
    return plan.plan_outputs(files, opts, EXT)


def test_default_output_names(tmp_path) -> None:
    [item] = _plan(tmp_path, ["photo.JPG"], task="sr")
    assert item.output == tmp_path / "photo_superres.jpg"
    [item] = _plan(tmp_path, ["p.png"], num_samples=3, suffix="_x")
    assert item.output.name == "p_x.png"
    assert [p.name for p in item.samples] == ["p_x_s1.png", "p_x_s2.png", "p_x_s3.png"]
    assert item.std_map.name == "p_x_std.png"


def test_output_dir_keeps_the_layout_of_folder_inputs(tmp_path) -> None:
    _files(tmp_path, "in/a.png", "in/sub/a.png")
    files = plan.expand_inputs([tmp_path / "in"], recursive=True, extensions=EXT)
    items = plan.plan_outputs(files, RunOptions(task="denoise", output=tmp_path / "out"), EXT)
    assert [i.output for i in items] == [tmp_path / "out" / "a_denoise.png", tmp_path / "out" / "sub" / "a_denoise.png"]


def test_collisions_are_refused(tmp_path) -> None:
    _files(tmp_path, "x/a.png", "y/a.png")
    files = plan.expand_inputs([tmp_path / "x/a.png", tmp_path / "y/a.png"], recursive=False, extensions=EXT)
    with pytest.raises(OutputError, match="would both be written to"):
        plan.plan_outputs(files, RunOptions(task="denoise", output=tmp_path / "out"), EXT)
    # An output that is another input.
    _files(tmp_path, "b.png", "b_denoise.png")
    files = plan.expand_inputs([tmp_path / "b.png", tmp_path / "b_denoise.png"], recursive=False, extensions=EXT)
    with pytest.raises(OutputError, match="would overwrite the input"):
        plan.plan_outputs(files, RunOptions(task="denoise"), EXT)


def test_output_extension_and_file_vs_dir(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"unknown image extension '\.gif'"):
        _plan(tmp_path, ["a.png"], output=tmp_path / "out.gif")
    [item] = _plan(tmp_path, ["a.png"], output=tmp_path / "newdir")  # no suffix: a folder
    assert item.output == tmp_path / "newdir" / "a_inpaint.png"


def test_existing_outputs(tmp_path) -> None:
    items = _plan(tmp_path, ["a.png", "b.png", "a_inpaint.png"][:2])
    (tmp_path / "a_inpaint.png").write_bytes(b"old")
    with pytest.raises(OutputError, match=r"a_inpaint\.png already exists"):
        plan.check_existing(items, RunOptions(task="inpaint"))
    plan.check_existing(items, RunOptions(task="inpaint", skip_existing=True))
    assert [i.status for i in items] == ["skipped", "pending"]


def test_summary_line_and_exit_code() -> None:
    items = [plan.Item(index=0, input=Path("a.png"), output=Path("x"), status="done"),
             plan.Item(index=1, input=Path("dir/b.png"), output=Path("y"), status="failed", error="bad"),
             plan.Item(index=2, input=Path("c.png"), output=Path("z"), status="skipped")]
    summary = plan.RunSummary(task="denoise", items=items, seconds=2.04)
    assert summary.line() == "1 done, 1 skipped, 1 failed (b.png) in 2.0 s"
    assert summary.exit_code == 1
    items[1].status = "done"
    assert summary.exit_code == 0
    summary.interrupted = True
    assert summary.exit_code == 130
