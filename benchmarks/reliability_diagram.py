"""A reliability diagram of the `-n N` uncertainty: nominal level of the per-pixel intervals against the share
of pixels whose truth they hold, one line per task, from the JSON files of ``calibration.py --json``.

    python benchmarks/calibration.py --images chelsea,rocket --json /tmp/cal.json
    python benchmarks/reliability_diagram.py /tmp/cal.json [more.json ...] -o docs/images/reliability.png

A calibrated sampler lies on the diagonal; below it, the intervals are too narrow (over-confident). Each task's
line averages its images (inpainting: the missing pixels only, the ones the samples have to invent). Drawn with
Pillow alone (no plotting library is a dependency).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE, MARGIN = 520, 64
COLOURS = {"denoise": (31, 119, 180), "sr4": (255, 127, 14), "inpaint_random": (44, 160, 44),
           "gaussian_blur": (214, 39, 40), "inpaint_box": (148, 103, 189)}


def task_curves(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """task -> [(nominal, mean empirical coverage over its images)], inpainting's missing pixels only."""
    shares: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["pixels"] == "known":
            continue
        for level, share in row["coverage"].items():
            shares[row["task"]][float(level)].append(float(share))
    return {task: sorted((level, sum(v) / len(v)) for level, v in levels.items()) for task, levels in shares.items()}


def draw(curves: dict[str, list[tuple[float, float]]], images: list[str], samples: int) -> Image.Image:
    img = Image.new("RGB", (SIZE + 170, SIZE), "white")
    pen = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    span = SIZE - 2 * MARGIN

    def at(p: float, q: float) -> tuple[float, float]:
        return MARGIN + p * span, SIZE - MARGIN - q * span

    pen.rectangle([at(0, 1), at(1, 0)], outline=(0, 0, 0))
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x, y = at(tick, 0)
        pen.line([(x, y), (x, y + 4)], fill=(0, 0, 0))
        pen.text((x - 8, y + 8), f"{tick:.1f}", fill=(0, 0, 0), font=font)
        x, y = at(0, tick)
        pen.line([(x - 4, y), (x, y)], fill=(0, 0, 0))
        pen.text((x - 30, y - 6), f"{tick:.1f}", fill=(0, 0, 0), font=font)
        pen.line([at(tick, 0), at(tick, 1)], fill=(235, 235, 235))
        pen.line([at(0, tick), at(1, tick)], fill=(235, 235, 235))
    pen.line([at(0, 0), at(1, 1)], fill=(120, 120, 120), width=1)
    pen.text((MARGIN + span / 2 - 70, SIZE - MARGIN + 26), "nominal level of the interval", fill=(0, 0, 0),
             font=font)
    pen.text((8, MARGIN - 40), "share of pixels whose truth is inside", fill=(0, 0, 0), font=font)
    pen.text((MARGIN, 10), f"DAPS fast, default prior, {samples} samples; {', '.join(images)}", fill=(0, 0, 0),
             font=font)
    for row, (task, points) in enumerate(sorted(curves.items())):
        colour = COLOURS.get(task, (0, 0, 0))
        pen.line([at(p, q) for p, q in points], fill=colour, width=3)
        for p, q in points:
            x, y = at(p, q)
            pen.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
        y = MARGIN + 18 * row
        pen.line([(SIZE - 20, y + 6), (SIZE, y + 6)], fill=colour, width=3)
        label = task + (" (missing)" if task.startswith("inpaint") else "")
        pen.text((SIZE + 6, y), label, fill=(0, 0, 0), font=font)
    return img


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", type=Path, nargs="+", help="JSON files written by calibration.py --json")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    rows = [row for path in args.files for row in json.loads(path.read_text())]
    images = sorted({row["image"] for row in rows})
    samples = sorted({row["samples"] for row in rows})
    draw(task_curves(rows), images, samples[0] if len(samples) == 1 else 0).save(args.output)
    for task, points in sorted(task_curves(rows).items()):
        at90 = dict(points).get(0.9)
        print(f"{task}: 90 % intervals cover {at90 * 100:.1f} %" if at90 is not None else task)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
