"""The README pictures' layout, shared by the make_*_demo.py scripts beside it: square panels in one row, each
enlarged with nearest neighbours (pixels stay pixels), a title above each, saved as an optimised PNG."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

LABEL = 18  # pixels above the panels for the titles
GAP = 4


def save_panels(panels: list[tuple[str, Image.Image]], size: int, target: Path) -> None:
    """``panels`` (title, image) side by side at ``size`` x ``size`` pixels each, written to ``target``."""
    sheet = Image.new("RGB", (len(panels) * (size + GAP) - GAP, size + LABEL), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (title, image) in enumerate(panels):
        x = i * (size + GAP)
        sheet.paste(image.convert("RGB").resize((size, size), Image.NEAREST), (x, LABEL))
        draw.text((x + 4, 3), title, fill="black")
    sheet.save(target, optimize=True)
    print(target)
