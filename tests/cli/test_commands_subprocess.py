"""The installed command as a separate process: startup cost, terminal behaviour and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import ROOT, fast, make_tiny_model, run_subprocess, write_image
from PIL import Image


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_help_and_version_are_fast_and_do_not_import_torch() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import diffrestore.cli as c\n"
        "for argv in (['--help'], ['--version'], ['inpaint', '--help'], ['deblur', '--help'], ['train', '--help']):\n"
        "    assert c.main(argv) == 0, argv\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "print('elapsed', time.perf_counter() - t)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    elapsed = float(result.stdout.rsplit("elapsed", 1)[1])
    assert elapsed < 5.0  # about 0.3 s on an idle machine; generous for a loaded CI runner


def test_non_tty_output_has_no_ansi_escapes(tmp_path, model) -> None:
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_text("not a png")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    result = run_subprocess(["denoise", tmp_path / "in", *fast(model)], cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "\x1b[" not in result.stdout and "\x1b[" not in result.stderr
    assert result.stdout.strip() == str(tmp_path / "in" / "a_denoise.png")  # stdout: results only
    assert "[1/2]" in result.stderr or "[2/2]" in result.stderr  # plain progress lines on stderr
    assert "failed: " in result.stderr and "b.png" in result.stderr
    assert "1 done, 0 skipped, 1 failed (b.png)" in result.stderr


def test_sigint_exits_130_and_leaves_no_partial_file(tmp_path, model) -> None:
    folder = tmp_path / "in"
    # Long enough that the signal lands mid-run on a fast machine: with 3 steps all 4 images once finished within
    # the 50 ms poll (about 0.2 s per image here with 100 steps, so ~1.4 s of margin after the first).
    names = [f"img{i}.png" for i in range(8)]
    for i, name in enumerate(names):
        write_image(folder / name, seed=i)
    argv = ["denoise", folder, "--model", model, "--steps", "100", "--method", "dps", "--batch-size", "1",
            "--device", "cpu"]
    process = subprocess.Popen(
        [sys.executable, "-m", "diffrestore.cli", *[str(a) for a in argv]],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell's background job (`pytest &`) ignores SIGINT, and a child inherits that; the CLI rightly keeps
        # an ignored SIGINT ignored, so give the child the default disposition this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = folder / "img0_denoise.png"
    deadline = time.monotonic() + 90
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), "the first image never finished"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    outputs = sorted(p.name for p in folder.iterdir() if p.name not in names)
    assert "img0_denoise.png" in outputs
    assert len(outputs) < len(names), "the run finished before the signal: make it longer"
    for name in outputs:  # every file left behind is a complete image, no temp or partial file
        assert name.endswith("_denoise.png"), outputs
        with Image.open(folder / name) as image:
            image.load()


def _start_long_run(tmp_path: Path, model: Path, *extra: str) -> tuple[subprocess.Popen, Path, list[str]]:
    """A folder run long enough that a signal lands mid-run, started once its first output exists."""
    folder = tmp_path / "in"
    names = [f"img{i}.png" for i in range(8)]
    for i, name in enumerate(names):
        write_image(folder / name, seed=i)
    argv = ["denoise", folder, "--model", model, "--steps", "100", "--method", "dps", "--batch-size", "1",
            "--device", "cpu", "--progress", "plain", *extra]
    process = subprocess.Popen(
        [sys.executable, "-m", "diffrestore.cli", *[str(a) for a in argv]],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # see the SIGINT test above
    )
    # Generous: on a loaded 2-core machine the first image (imports, model, 100 steps) took 35 s once.
    deadline = time.monotonic() + 300
    while not (folder / "img0_denoise.png").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not (folder / "img0_denoise.png").exists():
        process.kill()
        raise AssertionError(f"the first image never finished: {process.communicate()[1][-2000:]}")
    return process, folder, names


def _assert_only_complete_outputs(folder: Path, names: list[str]) -> list[str]:
    outputs = sorted(p.name for p in folder.iterdir() if p.name not in names)
    assert "img0_denoise.png" in outputs
    assert len(outputs) < len(names), "the run finished before the signal: make it longer"
    for name in outputs:  # complete images only: no temp file, no half-written one
        assert name.endswith("_denoise.png"), outputs
        with Image.open(folder / name) as image:
            image.load()
    return outputs


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_finished_outputs_and_prints_the_json_summary(tmp_path, model, signum, code) -> None:
    import json

    process, folder, names = _start_long_run(tmp_path, model, "--json")
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    outputs = _assert_only_complete_outputs(folder, names)
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["signal"] == signal.Signals(signum).name
    assert summary["done"] == len(outputs) and summary["not_run"] == len(names) - len(outputs)
    assert summary["done"] + summary["not_run"] == len(names)
    assert {item["status"] for item in summary["items"]} == {"done", "not-run"}
    assert "interrupted: " in err and "Traceback" not in err


def test_sigterm_without_json_prints_the_summary_and_exits_143(tmp_path, model) -> None:
    process, folder, names = _start_long_run(tmp_path, model)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    outputs = _assert_only_complete_outputs(folder, names)
    assert f"interrupted: {len(outputs)} done, 0 skipped, 0 failed, {len(names) - len(outputs)} not run" in err
    assert out.splitlines() == [str(folder / name) for name in outputs]
