"""diffrestore.run.plan, outputs found before any model loads: --skip-existing skips only whole sets, a dangling
symbolic link as -o, -o inside a --recursive input folder, and output names that cannot be written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_files import one_line

from diffrestore.errors import OutputError
from diffrestore.run import plan
from diffrestore.run.options import RunOptions


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_skip_existing_skips_an_image_only_when_its_whole_set_is_there(tmp_path) -> None:
    names = ["whole", "samples_only", "main_only", "none"]
    _touch(*(tmp_path / f"{n}.png" for n in names))
    _touch(*(tmp_path / f"whole_denoise{s}.png" for s in ("", "_s1", "_s2", "_s3", "_std")))
    _touch(tmp_path / "samples_only_denoise_s1.png", tmp_path / "main_only_denoise.png")  # killed mid-write; -n 1
    opts = RunOptions(task="denoise", num_samples=3, skip_existing=True)
    items = {item.input.stem: item for item in plan.plan_run([tmp_path / f"{n}.png" for n in names], opts)}
    assert items["whole"].status == "skipped" and items["whole"].error == f"{tmp_path / 'whole_denoise.png'} exists"
    # a partial set is restored again, replacing its own files (and only those)
    assert items["samples_only"].status == "pending"
    assert items["samples_only"].replace == [tmp_path / "samples_only_denoise_s1.png"]
    assert items["main_only"].status == "pending" and items["main_only"].replace == [tmp_path / "main_only_denoise.png"]
    assert items["none"].status == "pending" and items["none"].replace == []
    # without a flag a partial set is an existing output, as before
    with pytest.raises(OutputError, match=r"samples_only_denoise_s1\.png already exists"):
        plan.plan_run([tmp_path / "samples_only.png"], RunOptions(task="denoise", num_samples=3))


@pytest.mark.parametrize("target", ["gone", "gone.png"])
def test_a_dangling_symlink_as_output_is_refused_when_planning(tmp_path, target) -> None:
    _touch(tmp_path / "a.png")
    link = tmp_path / ("out" + Path(target).suffix)
    link.symlink_to(tmp_path / target)
    with pytest.raises(OutputError) as info:
        plan.plan_run([tmp_path / "a.png"], RunOptions(task="denoise", output=link))
    one_line(info.value, str(link), "symbolic link", "does not exist")
    assert info.value.exit_code == 2 and not (tmp_path / target).exists()


def test_a_dangling_symlink_above_the_output_folder_is_refused_when_planning(tmp_path) -> None:
    _touch(tmp_path / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError) as info:
        plan.plan_run([tmp_path / "a.png"], RunOptions(task="denoise", output=tmp_path / "link" / "deeper"))
    one_line(info.value, "link", "symbolic link", "does not exist")


def test_a_dangling_symlink_at_an_output_name_counts_as_existing(tmp_path) -> None:
    _touch(tmp_path / "a.png")
    (tmp_path / "a_denoise.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(OutputError, match=r"a_denoise\.png already exists"):
        plan.plan_run([tmp_path / "a.png"], RunOptions(task="denoise"))
    [item] = plan.plan_run([tmp_path / "a.png"], RunOptions(task="denoise", skip_existing=True))
    assert item.status == "skipped"


def test_output_folder_inside_a_recursive_input_folder_is_not_scanned(tmp_path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png", root / "sub" / "b.png")
    # outputs of earlier runs of other tasks (not named like this command's) and a nested earlier mistake
    _touch(root / "out" / "a_inpaint.png", root / "out" / "sub" / "b_inpaint.png", root / "out" / "out" / "c.png")
    for output in (root / "out", Path(os.path.relpath(root / "out"))):
        items = plan.plan_run([root], RunOptions(task="denoise", recursive=True, output=output))
        assert [item.input.relative_to(root).as_posix() for item in items] == ["a.png", "sub/b.png"]
        assert [item.output.resolve() for item in items] == [root / "out" / "a_denoise.png",
                                                             root / "out" / "sub" / "b_denoise.png"]
    # -o naming the input folder itself writes beside the inputs: nothing is left out
    items = plan.plan_run([root], RunOptions(task="denoise", recursive=True, output=root, include_outputs=True))
    assert len(items) == 5
    # an input folder inside -o is scanned as usual
    items = plan.plan_run([root / "out"], RunOptions(task="denoise", recursive=True, output=root))
    assert len(items) == 3


def test_output_names_that_cannot_be_written_are_found_per_input(tmp_path) -> None:
    _touch(tmp_path / "scan", tmp_path / ("y" * 240 + ".png"), tmp_path / "ok.png")
    items = plan.plan_run([tmp_path / "scan", tmp_path / ("y" * 240 + ".png"), tmp_path / "ok.png"],
                          RunOptions(task="denoise", num_samples=2))
    with pytest.raises(OutputError) as info:
        plan.check_output_names(items[0])
    one_line(info.value, "scan_denoise", "no image extension", "-o NAME.png")
    with pytest.raises(OutputError) as info:
        plan.check_output_names(items[1])
    one_line(info.value, "bytes long", "255", "--suffix")
    plan.check_output_names(items[2])
    # a 255-byte name is legal
    name = "z" * (255 - len("_denoise_std.png")) + ".png"
    _touch(tmp_path / name)
    [item] = plan.plan_run([tmp_path / name], RunOptions(task="denoise", num_samples=2))
    assert max(len(out.name) for out in item.outputs) == 255
    plan.check_output_names(item)
