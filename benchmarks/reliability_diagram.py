"""A reliability diagram of the `-n N` uncertainty: nominal level of the per-pixel intervals against the share
of pixels whose truth they hold, one line per task, from the JSON files of ``calibration.py --json``.

    python benchmarks/calibration.py --images chelsea,rocket --json /tmp/cal.json
    python benchmarks/reliability_diagram.py /tmp/cal.json [more.json ...] -o docs/images/reliability.png
        [--predictive] [--title TEXT]

The intervals are the std map's, mean +- z std of the N samples; with few samples even an exact sampler covers
less than nominal with them (its sample std is noisy), so the dashed grey curve is what an exact sampler of a
Gaussian posterior covers with the files' N (``calibration.exact_share``): a calibrated sampler lies on it, below
it the samples are too alike (over-confident). ``--predictive`` plots the predictive intervals instead (mean +-
sqrt(1 + 1/N) t_(N-1) std, in rows written since 2026-12-07), whose target is the diagonal. Each task's line averages
its images (inpainting: the missing pixels only, the ones the samples have to invent). Drawn with Pillow alone
(no plotting library is a dependency; scipy, already scikit-image's, gives the t distribution).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path
from statistics import NormalDist

from PIL import Image, ImageDraw, ImageFont

SIZE, MARGIN = 520, 64
COLOURS = {"denoise": (31, 119, 180), "sr4": (255, 127, 14), "inpaint_random": (44, 160, 44),
           "gaussian_blur": (214, 39, 40), "inpaint_box": (148, 103, 189)}


def task_curves(rows: list[dict], field: str = "coverage") -> dict[str, list[tuple[float, float]]]:
    """task -> [(nominal, mean empirical coverage over its images)], inpainting's missing pixels only; ``field``:
    "coverage" (mean +- z std) or "predictive"."""
    shares: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["pixels"] == "known":
            continue
        for level, share in row[field].items():
            shares[row["task"]][float(level)].append(float(share))
    return {task: sorted((level, sum(v) / len(v)) for level, v in levels.items()) for task, levels in shares.items()}


def exact_curve(samples: int) -> list[tuple[float, float]]:
    """(nominal, share) an exact sampler's mean +- z std interval covers with ``samples`` samples, at 5 % .. 95 %:
    P(|t_(N-1)| <= z / sqrt(1 + 1/N)) for a Gaussian posterior."""
    from scipy import stats

    points = []
    for p in range(1, 20):
        level = p / 20
        z = NormalDist().inv_cdf(0.5 + level / 2) / (1.0 + 1.0 / samples) ** 0.5
        points.append((level, float(2.0 * stats.t.cdf(z, samples - 1) - 1.0)))
    return points


def dashed(pen: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
    """Every other piece of the polyline through ``points``, each a fifth of its segment."""
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        for k in range(0, 5, 2):
            a, b = k / 5, (k + 1) / 5
            pen.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                     fill=colour, width=2)


def draw(curves: dict[str, list[tuple[float, float]]], images: list[str], samples: int, title: str | None = None,
         reference: list[tuple[float, float]] | None = None) -> Image.Image:
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
    heading = title or f"DAPS fast, default prior, {samples} samples"
    pen.text((MARGIN, 10), f"{heading}; {', '.join(images)}", fill=(0, 0, 0), font=font)
    if reference:
        dashed(pen, [at(p, q) for p, q in reference], (120, 120, 120))
        y = MARGIN + 18 * len(curves)
        dashed(pen, [(SIZE - 20, y + 6), (SIZE, y + 6)], (120, 120, 120))
        pen.text((SIZE + 6, y), f"exact sampler, {samples} samples", fill=(0, 0, 0), font=font)
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
    parser.add_argument("--predictive", action="store_true",
                        help="plot the predictive intervals (target: the diagonal) instead of mean +- z std")
    parser.add_argument("--title", default=None, help="the heading (default: DAPS fast, default prior, N samples)")
    args = parser.parse_args(argv)
    rows = [row for path in args.files for row in json.loads(path.read_text())]
    images = sorted({row["image"] for row in rows})
    samples = sorted({row["samples"] for row in rows})
    field = "predictive" if args.predictive else "coverage"
    count = samples[0] if len(samples) == 1 else 0
    reference = exact_curve(count) if count > 1 and not args.predictive else None
    curves = task_curves(rows, field)
    draw(curves, images, count, args.title, reference).save(args.output)
    for task, points in sorted(curves.items()):
        at90 = dict(points).get(0.9)
        print(f"{task}: 90 % intervals cover {at90 * 100:.1f} %" if at90 is not None else task)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
