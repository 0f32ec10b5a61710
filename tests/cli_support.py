"""Helpers shared by the command-line, run and API tests (small images, a tiny seeded prior, running the entry
point). Not a test module: imported as ``cli_support`` (conftest.py's folder, tests/, is on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
W, H = 24, 20  # small and non-square on purpose


def make_tiny_model(folder: Path, channels: int = 3) -> Path:
    """A tiny, untrained, seeded builtin-architecture prior saved as a model folder (usable as --model DIR)."""
    import torch

    from diffrestore.priors import builtin

    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(0)
    config = builtin.UNetConfig(
        channels=channels, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, emb_dim=16, groups=4
    )
    builtin.save_model_dir(builtin.DenoiserUNet(config), folder)
    return folder


def write_image(path: Path, *, seed: int = 0, size: tuple[int, int] = (W, H), mode: str = "RGB") -> Path:
    """A smooth random picture (a few blobs) so restorations have structure to find."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 10)
        channels.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
    rgb = (np.stack(channels, axis=2) * 200 + 30).astype(np.uint8)
    image = Image.fromarray(rgb, mode="RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_mask(path: Path, *, size: tuple[int, int] = (W, H), box: tuple[int, int, int, int] = (6, 5, 9, 7)) -> Path:
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    x, y, bw, bh = box
    mask[y : y + bh, x : x + bw] = 255
    Image.fromarray(mask, mode="L").save(path)
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_main(argv: list[str], capsys) -> Result:
    """The console entry point in-process (same error mapping and exit codes as the installed command)."""
    from diffrestore.cli.commands import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_subprocess(argv: list[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "diffrestore.cli", *[str(a) for a in argv]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def fast(model: Path) -> list[str]:
    """Flags for a quick run with the tiny model (DPS: one network call per step, the cheapest solver)."""
    return ["--model", str(model), "--steps", "2", "--device", "cpu", "--method", "dps"]
