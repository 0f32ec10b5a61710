"""SIGHUP (a closed terminal, an ssh session dropped without nohup) stops a real run as SIGTERM does: finished
outputs stay, no temp file is left, the summary is written, exit 129 (128 + 1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import make_tiny_model, write_image
from PIL import Image

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _default_signals() -> None:
    # A test run under nohup (or as a background job) hands its ignored SIGHUP / SIGINT to the child, and the CLI
    # rightly keeps ignored signals ignored: give the child the default dispositions this test is about.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sighup_mid_run_keeps_finished_outputs_writes_the_summary_and_exits_129(tmp_path, model) -> None:
    folder = tmp_path / "in"
    names = [f"img{i}.png" for i in range(8)]
    for i, name in enumerate(names):
        write_image(folder / name, seed=i)
    summary = tmp_path / "run.json"
    argv = ["denoise", folder, "--model", model, "--steps", "10", "--method", "dps", "--batch-size", "1",
            "--device", "cpu", "--progress", "plain", "--summary", summary]
    process = subprocess.Popen(
        [sys.executable, "-m", "diffrestore.cli", *[str(a) for a in argv]], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_default_signals,
    )
    try:
        first = process.stdout.readline()  # printed once img0's files are written: the signal lands on img1
        assert first.strip() == str(folder / "img0_denoise.png"), process.stderr.read()[-2000:]
        process.send_signal(signal.SIGHUP)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 129, err
    left = sorted(p.name for p in folder.iterdir() if p.name not in names)
    assert "img0_denoise.png" in left and len(left) < len(names), left
    for name in left:  # complete images only: no temp file (.img1_denoise.png.xxxx.tmp), nothing half-written
        assert name.endswith("_denoise.png"), left
        with Image.open(folder / name) as image:
            image.load()
    doc = json.loads(summary.read_text(encoding="utf-8"))
    assert doc["interrupted"] is True and doc["signal"] == "SIGHUP"
    assert doc["done"] == len(left) and doc["not_run"] == len(names) - len(left)
    assert f"interrupted: {len(left)} done, 0 skipped, 0 failed, {len(names) - len(left)} not run" in err
    assert "Traceback" not in err
    assert [first.strip(), *out.splitlines()] == [str(folder / name) for name in left]
