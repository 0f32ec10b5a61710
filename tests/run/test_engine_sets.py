"""diffrestore.run.engine, an image's outputs as a set: complete or absent whatever stops the write (a full disk,
a signal, a SIGKILL at a random moment), and ``--skip-existing`` redoing a partial set; output names and -o links
refused before the model loads. Restorations are faked (the pixels of the input) except where said."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from cli_support import fast, make_tiny_model, run_main, write_image
from PIL import Image

from diffrestore.imageio import write as imageio_write
from diffrestore.run import engine, plan
from diffrestore.run.options import RunOptions
from diffrestore.run.restore import Restored

SET = ("_denoise_s1.png", "_denoise_s2.png", "_denoise_s3.png", "_denoise_std.png", "_denoise.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _fake_restoration(images: list[torch.Tensor], num_samples: int) -> list[Restored]:
    out = []
    for x in images:
        samples = torch.cat([(x + 0.1 * k).clamp(-1, 1) for k in range(num_samples)])
        out.append(Restored(image=samples.mean(0, keepdim=True), samples=samples,
                            std=samples.std(0, keepdim=True).mean(1, keepdim=True) / 2 if num_samples > 1 else None,
                            measurement=x, reference=None, metrics={}))
    return out


@pytest.fixture
def no_model(monkeypatch) -> list[str]:
    """No prior loads (a call is recorded) and restore_batch returns the input, shifted per sample."""
    loads: list[str] = []
    monkeypatch.setattr(engine, "load_prior", lambda name, **kwargs: loads.append(name) or object())
    monkeypatch.setattr(engine, "ready_prior", lambda job, prior: prior)
    monkeypatch.setattr(engine, "check_fit", lambda *args, **kwargs: None)
    monkeypatch.setattr(engine, "_note_tiling", lambda *args: None)
    monkeypatch.setattr(engine, "restore_batch",
                        lambda prior, solver, task, images, **kw: _fake_restoration(images, kw["num_samples"]))
    return loads


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------------------
# Whole or absent


@pytest.mark.parametrize("fault", ["disk full", "second signal"])
def test_a_fault_between_two_files_of_an_image_leaves_none_of_them(tmp_path, capsys, model, no_model, monkeypatch,
                                                                   fault) -> None:
    image = write_image(tmp_path / "photo.png")
    real = os.fsync
    for k in range(len(SET)):  # the write of the k-th file of the set fails
        count = [0]

        def failing(fd, count=count, k=k):
            count[0] += 1
            if count[0] == k + 1:
                if fault == "second signal":
                    raise KeyboardInterrupt
                raise OSError(28, "No space left on device")
            return real(fd)

        monkeypatch.setattr(imageio_write.os, "fsync", failing)
        result = run_main(["denoise", image, "-n", "3", *fast(model)], capsys)
        monkeypatch.setattr(imageio_write.os, "fsync", real)
        assert result.code == (1 if fault == "disk full" else 130), (k, result.err)
        assert ("No space left on device" if fault == "disk full" else "interrupted: 0 done") in result.err
        assert _names(tmp_path) == ["photo.png"], k  # no file of the set, no temporary
    assert run_main(["denoise", image, "-n", "3", *fast(model)], capsys).code == 0
    assert _names(tmp_path) == sorted(["photo.png", *(f"photo{s}" for s in SET)])


def test_skip_existing_redoes_a_partial_set_bitwise_as_one_run_writes_it(tmp_path, capsys, model) -> None:
    # A real restoration: the redone set must be what an uninterrupted run writes.
    whole, partial = tmp_path / "whole", tmp_path / "partial"
    for folder in (whole, partial):
        write_image(folder / "photo.png")
    assert run_main(["denoise", whole / "photo.png", "-n", "3", *fast(model)], capsys).code == 0
    # what a run killed between two files left: the first sample, the rest missing
    (partial / "photo_denoise_s1.png").write_bytes(b"left by a killed run")
    result = run_main(["denoise", partial / "photo.png", "-n", "3", "--skip-existing", *fast(model)], capsys)
    assert result.code == 0, result.err
    assert "1 done, 0 skipped" in result.err
    assert _names(partial) == _names(whole)
    for name in _names(whole):
        assert (partial / name).read_bytes() == (whole / name).read_bytes(), name
    again = run_main(["denoise", partial / "photo.png", "-n", "3", "--skip-existing", *fast(model)], capsys)
    assert again.code == 0 and "0 done, 1 skipped" in again.err


def _kill_child(folder: Path, items: list[plan.Item], result: Restored, delay: float) -> None:
    """A child process that writes the items' sets one after another and is SIGKILLed ``delay`` s after it
    starts writing (a set takes some 10-50 ms here: the kill lands anywhere in one)."""
    started, ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write until killed, never return into pytest
        try:
            os.write(ready, b"1")
            for item in items:
                engine._save(item, None, result, overwrite=False, protected=[])
        finally:
            os._exit(0)
    os.close(ready)
    os.read(started, 1)
    os.close(started)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sets_killed_at_random_moments_are_whole_or_redone(tmp_path) -> None:
    rng = random.Random()
    x = torch.rand(1, 3, 48, 64) * 2 - 1
    [result] = _fake_restoration([x], 3)
    opts = RunOptions(task="denoise", num_samples=3, skip_existing=True)
    started = time.perf_counter()
    kills = 0
    while kills < 25 and time.perf_counter() - started < 8:
        folder = tmp_path / f"kill{kills}"
        inputs = [folder / f"img{i}.png" for i in range(12)]
        for path in inputs:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"x")
        items = plan.plan_outputs(plan.expand_inputs(inputs, recursive=False, extensions=(".png",)), opts, (".png",))
        _kill_child(folder, items, result, rng.uniform(0.0, 0.2))
        kills += 1
        fresh = plan.plan_outputs(plan.expand_inputs(inputs, recursive=False, extensions=(".png",)), opts, (".png",))
        plan.check_existing(fresh, opts)
        for item in fresh:
            present = [p.exists() for p in item.outputs]
            assert item.output.exists() <= all(present), item.output  # the main output only with the whole set
            assert (item.status == "skipped") == all(present), item.output  # a partial set is redone
            for path, there in zip(item.outputs, present, strict=True):
                if there:
                    with Image.open(path) as im:
                        im.load()  # every file that is there is complete
            if item.status == "pending":
                engine._save(item, None, result, overwrite=False, protected=[])  # the rerun completes it
                assert all(p.exists() for p in item.outputs)
    assert kills >= 5


# ------------------------------------------------------------------------------------------------------------
# Found before the model loads


def test_an_input_without_extension_is_refused_before_the_model_loads(tmp_path, capsys, model, no_model) -> None:
    image = write_image(tmp_path / "photo.png").rename(tmp_path / "photo")
    result = run_main(["denoise", image, *fast(model)], capsys)
    assert result.code == 2 and not no_model
    [line] = result.err.strip().splitlines()
    assert line.startswith("error: ") and "photo_denoise" in line and "no image extension" in line
    assert run_main(["denoise", image, "-o", tmp_path / "photo_out.png", *fast(model)], capsys).code == 0
    # in a folder run the input fails alone
    other = write_image(tmp_path / "other.png")
    result = run_main(["denoise", image, other, "-o", tmp_path / "out", *fast(model)], capsys)
    assert result.code == 1 and "1 done, 0 skipped, 1 failed (photo)" in result.err


def test_output_names_too_long_are_refused_before_and_255_bytes_work(tmp_path, capsys, model, no_model) -> None:
    long = write_image(tmp_path / ("y" * 245 + ".png"))
    result = run_main(["denoise", long, *fast(model)], capsys)
    assert result.code == 2 and not no_model and "bytes long" in result.err
    legal = write_image(tmp_path / ("z" * (255 - len("_denoise.png")) + ".png"))
    result = run_main(["denoise", legal, *fast(model)], capsys)
    assert result.code == 0, result.err
    assert (tmp_path / (legal.stem + "_denoise.png")).is_file()


@pytest.mark.parametrize("target", ["gone", "gone.png"])
def test_o_naming_a_dangling_symlink_is_refused_before_the_model_loads(tmp_path, capsys, model, no_model,
                                                                       target) -> None:
    image = write_image(tmp_path / "photo.png")
    link = tmp_path / ("out" + Path(target).suffix)
    link.symlink_to(tmp_path / target)
    result = run_main(["denoise", image, "-o", link, *fast(model)], capsys)
    assert result.code == 2 and not no_model
    assert result.err.startswith("error: ") and "symbolic link" in result.err and result.err.count("\n") == 1


def test_o_inside_a_recursive_input_folder_is_not_restored_again(tmp_path, capsys, model, no_model) -> None:
    root = tmp_path / "in"
    write_image(root / "a.png")
    write_image(root / "sub" / "b.png", seed=1)
    for suffix in ("_first", "_second"):  # two tasks' outputs in one -o
        result = run_main(["denoise", root, "--recursive", "-o", root / "out", "--suffix", suffix, *fast(model)],
                          capsys)
        assert result.code == 0 and "2 done" in result.err, result.err
    assert not (root / "out" / "out").exists()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "a.png", "out/a_first.png", "out/a_second.png", "out/sub/b_first.png", "out/sub/b_second.png", "sub/b.png"]
