"""Rebuild docs/images/inpaint_demo.png, the README picture, with the tool itself and the default prior.

    .venv/bin/python docs/images/make_inpaint_demo.py

Runs `diffrestore inpaint --num-samples 4` on examples/astronaut.png (held out from the default prior's training)
as a real input, with the defaults a user gets (known pixels kept, noise level estimated from the file), and lays
out: the input with its hole, one posterior sample, the mean of 4 samples, the per-pixel standard-deviation map
(zero where pixels are known), and the original.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from panels import save_panels
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
BOX = (40, 36, 32, 32)  # left, top, width, height
SCALE = 2


def main() -> None:
    source = ROOT / "examples" / "astronaut.png"
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "diffrestore", "inpaint", str(source), "--box", ",".join(map(str, BOX)),
                   "--num-samples", "4", "--seed", "0", "-o", tmp, "--progress", "none"]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        print(result.stdout.strip())
        out = Path(tmp)
        original = Image.open(source).convert("RGB")
        holed = original.copy()
        left, top, w, h = BOX
        ImageDraw.Draw(holed).rectangle((left, top, left + w - 1, top + h - 1), fill=(128, 128, 128))
        panels = [
            ("input (grey = hole)", holed),
            ("one sample", Image.open(out / "astronaut_inpaint_s1.png").convert("RGB")),
            ("mean of 4", Image.open(out / "astronaut_inpaint.png").convert("RGB")),
            ("std (uncertainty)", Image.open(out / "astronaut_inpaint_std.png").convert("RGB")),
            ("original", original),
        ]
    size = original.width * SCALE
    save_panels(panels, size, ROOT / "docs" / "images" / "inpaint_demo.png")


if __name__ == "__main__":
    main()
