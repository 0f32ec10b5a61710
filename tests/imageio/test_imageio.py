"""diffrestore.imageio as a package: its extension list, and importing it does not import torch."""

from __future__ import annotations

import subprocess
import sys

from diffrestore.imageio import IMAGE_EXTENSIONS


def test_image_extensions_constant() -> None:
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"} <= set(IMAGE_EXTENSIONS)


def test_module_import_does_not_import_torch() -> None:
    code = "import sys, diffrestore.imageio; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
