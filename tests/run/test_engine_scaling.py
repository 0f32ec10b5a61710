"""diffrestore.run.engine on large folders: the per-file checks of planning and saving cost O(1) per file (every
input resolved once, looked up in a set), so a run's file-system work grows linearly with the folder; it grew
quadratically when every save resolved every input. Restorations are faked: only the bookkeeping is measured."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import fast, make_tiny_model, run_main
from PIL import Image

from diffrestore.run import engine
from diffrestore.run.restore import Restored


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _fake(monkeypatch) -> None:
    def restore(prior, solver, task, images, **kwargs):
        return [Restored(image=x, samples=x, std=None, measurement=x, reference=None, metrics={}) for x in images]

    monkeypatch.setattr(engine, "load_prior", lambda name, **kwargs: object())
    monkeypatch.setattr(engine, "ready_prior", lambda job, prior: prior)
    monkeypatch.setattr(engine, "check_fit", lambda *args, **kwargs: None)
    monkeypatch.setattr(engine, "_note_tiling", lambda *args: None)
    monkeypatch.setattr(engine, "restore_batch", restore)


def _file_system_calls(folder: Path, count: int, model: Path, capsys, monkeypatch) -> int:
    """stat and lstat calls (those of Path.resolve, os.path.samefile and exists included) of one run over
    ``count`` one-pixel images."""
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.full((1, 1, 3), i % 256, np.uint8)).save(folder / f"img{i:05d}.png")
    calls = [0]
    real_stat, real_lstat = os.stat, os.lstat

    def counted(real):
        def call(*args, **kwargs):
            calls[0] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "stat", counted(real_stat))
    monkeypatch.setattr(os, "lstat", counted(real_lstat))
    try:
        result = run_main(["denoise", folder, "-o", folder / "out", "--batch-size", "64", "--quiet", *fast(model)],
                          capsys)
    finally:
        monkeypatch.setattr(os, "stat", real_stat)
        monkeypatch.setattr(os, "lstat", real_lstat)
    assert result.code == 0, result.err
    assert len(list((folder / "out").iterdir())) == count
    return calls[0]


def test_file_checks_grow_linearly_with_the_folder(tmp_path, capsys, monkeypatch, model) -> None:
    _fake(monkeypatch)
    torch.manual_seed(0)
    small = _file_system_calls(tmp_path / "small", 40, model, capsys, monkeypatch)
    large = _file_system_calls(tmp_path / "large", 160, model, capsys, monkeypatch)
    # 4x the files: 4x the calls when each file costs O(1), 16x when each save looks at every input
    assert large <= 5 * small, (small, large)
    assert large <= 40 * 160, (small, large)  # a few per file, whatever the folder's size
