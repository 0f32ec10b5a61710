"""What a run prints, where, and that printing never fails it: odd file names (a newline, bytes that are not
UTF-8, an encoding that lacks a character), a stdout pipe whose reader went away, a closed stderr, and a
``--summary`` that is a pipe or cannot be written. The run's files always come first."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cli_support import fast, make_tiny_model, write_image
from PIL import Image

from diffrestore.cli.commands import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _run(argv: list, monkeypatch, *, encoding: str = "utf-8") -> tuple[int, bytes, str]:
    """The entry point in-process, stdout a byte stream of ``encoding`` with strict errors (a UTF-8 locale's
    terminal or pipe; ``PYTHONIOENCODING=ascii``)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main([str(a) for a in argv])
    out.flush()
    return code, out.buffer.getvalue(), err.getvalue()


def _complete(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def _no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------------------------------------
# Names


def test_a_name_that_is_not_utf8_is_printed_as_its_bytes_and_a_newline_never_splits_a_line(tmp_path, model,
                                                                                            monkeypatch) -> None:
    folder = tmp_path / "in"
    write_image(Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff.png")))
    write_image(folder / "two\nlines.png", seed=1)
    code, out, err = _run(["denoise", folder, *fast(model), "--progress", "plain"], monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert lines == [os.fsencode(folder) + b"/bad\xff_denoise.png", os.fsencode(folder) + b"/two\\nlines_denoise.png"]
    assert Path(os.fsdecode(lines[0])).is_file()  # the printed path opens the file
    assert "two\\nlines.png" in err and "\ntwo" not in err  # progress lines too


def test_json_keeps_every_name_exactly(tmp_path, model, monkeypatch) -> None:
    folder = tmp_path / "in"
    write_image(Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff.png")))
    write_image(folder / "two\nlines.png", seed=1)
    code, out, err = _run(["denoise", folder, *fast(model), "--json"], monkeypatch)
    assert code == 0, err
    outputs = sorted(os.fsencode(item["output"]) for item in json.loads(out)["items"])
    assert outputs == sorted(os.fsencode(p) for p in folder.glob("*_denoise.png"))
    assert len(outputs) == 2


def test_an_ascii_stdout_never_fails_the_run(tmp_path, model, monkeypatch) -> None:
    folder = tmp_path / "in"
    write_image(folder / "caf\u00e9.png")
    write_image(folder / "plain.png", seed=1)
    code, out, err = _run(["denoise", folder, *fast(model), "--batch-size", "1"], monkeypatch, encoding="ascii")
    assert code == 0, err
    where = os.fsencode(folder)
    assert out.splitlines() == [where + b"/caf\\xe9_denoise.png", where + b"/plain_denoise.png"]
    _complete(folder / "caf\u00e9_denoise.png")
    _complete(folder / "plain_denoise.png")


# ----------------------------------------------------------------------------------------------------------------
# --summary


def test_a_summary_that_cannot_be_written_still_prints_json_and_says_so_in_one_line(tmp_path, model,
                                                                                    monkeypatch) -> None:
    from diffrestore.imageio import write

    image = write_image(tmp_path / "a.png")
    summary = tmp_path / "run.json"
    real_write_atomic, real_fdopen = write.write_atomic, os.fdopen

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_atomic(path, data, *, overwrite):
        if Path(path) == summary:  # the disk fills between the image and the summary
            monkeypatch.setattr(os, "fdopen", full_disk)
        try:
            return real_write_atomic(path, data, overwrite=overwrite)
        finally:
            monkeypatch.setattr(os, "fdopen", real_fdopen)

    monkeypatch.setattr(write, "write_atomic", write_atomic)
    code, out, err = _run(["denoise", image, *fast(model), "--json", "--summary", summary], monkeypatch)
    assert code == 1  # the image is written, the summary (an output of the run) is not
    assert json.loads(out)["done"] == 1
    _complete(tmp_path / "a_denoise.png")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(summary) in errors[0] and "No space left on device" in errors[0], err
    assert not summary.exists()
    _no_temp_files(tmp_path)


def _subprocess(argv: list, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "diffrestore.cli", *[str(a) for a in argv]], env=env, **kwargs)


def test_summary_to_a_process_substitution_pipe_is_written_at_the_end(tmp_path, model) -> None:
    # bash's `--summary >(jq . > f)` names /dev/fd/63, the write end of a pipe the child inherits.
    image = write_image(tmp_path / "a.png")
    read_end, write_end = os.pipe()
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(os.read(read_end, 1 << 20) + _drain(read_end)),
                              daemon=True)
    reader.start()
    process = _subprocess(["denoise", image, *fast(model), "--summary", f"/dev/fd/{write_end}"], cwd=tmp_path,
                          pass_fds=(write_end,), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the run hung on --summary naming a pipe")
    finally:
        reader.join(10)
        os.close(read_end)
    assert process.returncode == 0, err
    assert json.loads(received[0])["done"] == 1


def _drain(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------------------------------------------
# Closed streams


def test_a_stdout_reader_that_goes_away_does_not_stop_the_run(tmp_path, model) -> None:
    folder = tmp_path / "in"
    for i in range(3):
        write_image(folder / f"img{i}.png", seed=i)
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -c 1` that has already exited: the first result line meets a broken pipe
    process = _subprocess(["denoise", folder, *fast(model), "--batch-size", "1", "--progress", "plain"],
                          cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 141, err  # as a shell reports a writer SIGPIPE stopped: `set -o pipefail` sees it
    for i in range(3):
        _complete(folder / f"img{i}_denoise.png")  # the batch went on
    assert "stopped printing to stdout" in err and "3 done, 0 skipped, 0 failed" in err
    assert "Traceback" not in err and "Exception ignored" not in err and "unexpected" not in err


def test_with_stderr_closed_notes_never_reach_stdout(tmp_path, model) -> None:
    folder = tmp_path / "in"
    for i in range(2):
        write_image(folder / f"img{i}.png", seed=i)
    process = _subprocess(["denoise", folder, *fast(model), "--progress", "plain"], cwd=tmp_path,
                          stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), text=True)  # `2>&-`
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0
    assert out.splitlines() == [str(folder / f"img{i}_denoise.png") for i in range(2)]  # results only


@pytest.mark.parametrize("argv", [["--version"], ["models", "list"]])
def test_a_command_whose_stdout_reader_went_away_exits_141_without_a_word(tmp_path, argv) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = _subprocess(argv, cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err == ""  # typer's own answer was a silent exit 1
