"""Rebuild docs/images/ct_demo.png, the README's sparse-view CT picture, with the tool itself.

    .venv/bin/python docs/images/make_ct_demo.py

pydicom's bundled CT_small.dcm (a real 128 x 128 CT slice) is restored from its simulated 30-view sinogram by the
classical methods and by DAPS with the shipped CT prior (`diffrestore ct CT_small.dcm --simulate --views 30
--method fbp|sart|tv|daps -o OUT.png`, TV with `--set weight=3e-4`, its weight tuned on training phantoms; DAPS
with no --model: the ct task's default prior ct-phantom, trained on phantoms only; PNG outputs through the
soft-tissue window, centre 40, width 400) and laid out beside the reference in the same window. PSNR on the CT
scale, as the command prints it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from panels import save_panels
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCALE = 2
METHODS = ("fbp", "sart", "tv", "daps")
SETTINGS = {"tv": ["--set", "weight=3e-4"]}


def main() -> None:
    from pydicom.data import get_testdata_file

    from diffrestore.imageio.dicom import SOFT_TISSUE_WINDOW, read_ct_slice, window_to_unit

    source = Path(get_testdata_file("CT_small.dcm"))
    reference = read_ct_slice(source)
    panels = [("reference (window 40 / 400)",
               Image.fromarray((window_to_unit(reference.hu, SOFT_TISSUE_WINDOW) * 255).round().astype(np.uint8)))]
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            target = Path(tmp) / f"{method}.png"
            command = [sys.executable, "-m", "diffrestore", "ct", str(source), "--simulate", "--views", "30",
                       "--method", method, "-o", str(target), "--progress", "none", *SETTINGS.get(method, [])]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            psnr = re.search(r"PSNR ([0-9.]+) dB", result.stdout)
            print(method, result.stdout.strip().split("\t", 1)[-1])
            title = f"{method}, 30 views, {psnr.group(1)} dB" if psnr else f"{method}, 30 views"
            # 16-bit PNG: Pillow's convert("L") would clip it, so scale the values down to 8 bits here
            grey = np.asarray(Image.open(target), dtype=np.float64) / 65535.0
            panels.insert(len(panels) - 1, (title, Image.fromarray((grey * 255).round().astype(np.uint8))))
    size = reference.hu.shape[0] * SCALE
    save_panels(panels, size, ROOT / "docs" / "images" / "ct_demo.png")


if __name__ == "__main__":
    main()
