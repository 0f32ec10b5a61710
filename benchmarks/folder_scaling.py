"""The per-file cost of a folder run: a whole CLI run over N one-pixel PNGs with the prior and the restoration
faked, so what remains is planning, reading, saving and reporting (the work that grew quadratically when every
save resolved every input), and the planner alone on the same folder.

    .venv/bin/python benchmarks/folder_scaling.py 200 800 2000
    PYTHONPATH=/path/to/old/checkout .venv/bin/python benchmarks/folder_scaling.py 200 800   # an older checkout

Linear per-file work shows as a constant time per file across the rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the tiny seeded model the tests build

from cli_support import make_tiny_model

from diffrestore.cli.commands import main
from diffrestore.run import engine, plan
from diffrestore.run.options import RunOptions
from diffrestore.run.restore import Restored


def _fake_restore(prior, solver, task, images, **kwargs):
    return [Restored(image=x, samples=x, std=None, measurement=x, reference=None, metrics={}) for x in images]


def _fake_the_model() -> None:
    """No prior loads and no network runs: only the per-file work is timed."""
    engine.load_prior = lambda name, **kwargs: object()
    engine.ready_prior = lambda job, prior: prior
    engine.check_fit = lambda *args, **kwargs: None
    engine._note_tiling = lambda *args: None
    engine.restore_batch = _fake_restore


def main_(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="+", type=int, help="folder sizes to time")
    args = parser.parse_args(argv)
    _fake_the_model()
    tmp = Path(tempfile.mkdtemp())
    model = make_tiny_model(tmp / "tiny")
    for n in args.counts:
        folder = tmp / f"in{n}"
        folder.mkdir()
        for i in range(n):
            Image.fromarray(np.full((1, 1, 3), i % 256, np.uint8)).save(folder / f"img{i:06d}.png")
        start = time.perf_counter()
        plan.plan_run([folder], RunOptions(task="denoise", output=folder / "out"))
        planning = time.perf_counter() - start
        start = time.perf_counter()
        code = main(["denoise", str(folder), "-o", str(folder / "out"), "--model", str(model), "--steps", "1",
                     "--device", "cpu", "--method", "dps", "--batch-size", "64", "--quiet"])
        whole = time.perf_counter() - start
        print(f"{n} files: plan {planning:.2f} s, whole run {whole:.2f} s ({1000 * whole / n:.1f} ms per file, "
              f"exit {code})", flush=True)


if __name__ == "__main__":
    main_()
