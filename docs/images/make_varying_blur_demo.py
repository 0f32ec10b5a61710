"""Rebuild docs/images/varying_blur_demo.png, the README's spatially varying blur picture, with the tool itself.

    .venv/bin/python docs/images/make_varying_blur_demo.py

examples/astronaut.png (held out from the default prior's training) is blurred by a camera shake with a roll (the
4 x 4 kernel grid `deblur --blur shake` draws from seed 0, 15 px streaks at this size) and saved as an 8-bit PNG:
a real input. The tool then restores it twice with the default prior, as a user would: with the measured grid
(`deblur --kernel-grid`) and with one kernel for the whole frame (the grid's mean, `deblur --kernel`); the noise
level is estimated from the file both times. Panels: the blurred input, the kernel grid, the one-kernel
restoration, the grid restoration, the original.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from panels import save_panels
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCALE = 2
KERNEL_SIZE = 15


def _kernel_panel(kernels: torch.Tensor, size: int) -> Image.Image:
    """The grid's kernels tiled as they sit over the image, each scaled to its own maximum."""
    rows, cols = kernels.shape[:2]
    cell = size // max(rows, cols)
    panel = Image.new("L", (size, size), 0)
    for r in range(rows):
        for c in range(cols):
            kernel = kernels[r, c]
            tile = (kernel / kernel.max() * 255).round().to(torch.uint8).numpy()
            image = Image.fromarray(tile).resize((cell - 4, cell - 4), Image.NEAREST)
            panel.paste(image, (c * cell + 2, r * cell + 2))
    return panel.convert("RGB")


def main() -> None:
    from diffrestore import tasks
    from diffrestore.imageio import load_image
    from diffrestore.metrics import psnr

    source = ROOT / "examples" / "astronaut.png"
    original = load_image(source).tensor
    task = tasks.resolve_task("deblur", {"blur": "shake", "kernel_size": KERNEL_SIZE}, simulate=True)
    operator = task.operator(tuple(original.shape[1:]), seed=0)
    kernels = operator.kernels.reshape(*operator.grid, KERNEL_SIZE, KERNEL_SIZE)
    with torch.no_grad():
        blurred = operator(original)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        pixels = ((blurred[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(out / "blurred.png")
        np.save(out / "grid.npy", kernels.numpy())
        np.save(out / "mean.npy", operator.kernels.mean(dim=0).numpy())
        for name, flag, path in (("grid", "--kernel-grid", "grid.npy"), ("one", "--kernel", "mean.npy")):
            folder = out / name
            command = [sys.executable, "-m", "diffrestore", "deblur", str(out / "blurred.png"), flag,
                       str(out / path), "--seed", "0", "-o", str(folder), "--progress", "none"]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            print(" ".join(command[2:]).replace(str(out) + "/", ""), "->", result.stdout.strip().split("/")[-1])
        files = {"blurred": out / "blurred.png", "one": out / "one" / "blurred_deblur.png",
                 "grid": out / "grid" / "blurred_deblur.png"}
        scores = {key: float(psnr(load_image(path).tensor, original)[0]) for key, path in files.items()}
        print(", ".join(f"{key} {value:.2f} dB" for key, value in scores.items()))
        panels = [
            (f"blurred input, {scores['blurred']:.1f} dB", Image.open(files["blurred"]).convert("RGB")),
            ("the 4 x 4 kernel grid", _kernel_panel(kernels, original.shape[-1])),
            (f"--kernel (one), {scores['one']:.1f} dB", Image.open(files["one"]).convert("RGB")),
            (f"--kernel-grid, {scores['grid']:.1f} dB", Image.open(files["grid"]).convert("RGB")),
            ("original", Image.open(source).convert("RGB")),
        ]
    size = original.shape[-1] * SCALE
    save_panels(panels, size, ROOT / "docs" / "images" / "varying_blur_demo.png")


if __name__ == "__main__":
    main()
