"""Rebuild docs/images/mri_demo.png, the README's compressed-sensing MRI picture, with the tool itself.

    .venv/bin/python docs/images/make_mri_demo.py

matplotlib's sample MR brain slice (sample_data/s1045.ima.gz, 256 x 256; matplotlib ships it, and it is held out
from everything the shipped MRI prior was trained or tuned on) is saved as a 16-bit PNG, then
`diffrestore mri brain.png --simulate --coils 8 --sampling random --acceleration 4 --method M -o OUT.png` runs for
the zero-filled image, the strongest classical baseline (cs-tv) and DAPS with the shipped `mri-phantom` prior
(`-n 4`: the mean, and the std map it writes beside it). PSNR on the magnitude as the command prints it.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from panels import save_panels
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCALE = 1
SIMULATE = ["--simulate", "--coils", "8", "--sampling", "random", "--acceleration", "4", "--seed", "0"]
RUNS = (("zero-filled", "zero-filled", []), ("cs-tv", "cs-tv", []), ("daps", "daps, mean of 4", ["-n", "4"]))


def brain_png(target: Path) -> np.ndarray:
    """matplotlib's MR slice (big-endian uint16) written as a 16-bit PNG on [0, max]; returns it on [0, 1]."""
    import matplotlib

    raw = gzip.decompress((Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "s1045.ima.gz")
                          .read_bytes())
    brain = np.frombuffer(raw, dtype=">u2").reshape(256, 256).astype(np.float64)
    unit = brain / brain.max()
    Image.fromarray((unit * 65535).round().astype(np.uint16)).save(target)
    return unit


def grey(path: Path) -> Image.Image:
    """A 16-bit PNG shown at 8 bits (Pillow's convert("L") would clip it)."""
    values = np.asarray(Image.open(path), dtype=np.float64)
    values = values / 65535.0 if values.max() > 255 else values / 255.0
    return Image.fromarray((np.clip(values, 0, 1) * 255).round().astype(np.uint8))


def main() -> None:
    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "brain.png"
        reference = brain_png(source)
        for method, title, more in RUNS:
            target = Path(tmp) / f"{method}.png"
            command = [sys.executable, "-m", "diffrestore", "mri", str(source), *SIMULATE, "--method", method,
                       *more, "-o", str(target), "--progress", "none"]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            print(method, result.stdout.strip().split("\t", 1)[-1])
            psnr = re.search(r"PSNR ([0-9.]+) dB", result.stdout)
            panels.append((f"{title}, {psnr.group(1)} dB" if psnr else title, grey(target)))
            std = target.with_name(f"{target.stem}_std.png")
            if std.exists():
                panels.append(("std of the 4 (white = 0.25)", grey(std)))
    panels.append(("reference", Image.fromarray((reference * 255).round().astype(np.uint8))))
    save_panels(panels, 256 * SCALE, ROOT / "docs" / "images" / "mri_demo.png")


if __name__ == "__main__":
    main()
