"""Synthetic CT slices for the CT prior: seeded, deterministic phantoms on the CT scale u = (HU + 1024) / 4096
(air 0, water 0.25, 3072 HU = 1), the scale of ``diffrestore ct`` (tasks/medical.py).

Two families, both drawn from one seed:

    body   an elliptic body outline (skin/fat rim around soft tissue), optional lungs, 2-5 organs of soft-tissue
           contrast, bones (round or ring-shaped, 300-1500 HU), 0-4 small low-contrast lesions, and mild smooth
           texture (a band-limited random field of a few HU) plus faint white noise
    shepp  the modified Shepp-Logan head phantom, every ellipse moved, resized, turned and its value perturbed at
           random, mapped to the CT scale (skull ~ bone, brain ~ soft tissue)

Training images come from seeds 0, 1, 2, ...; held-out images (``held_out``) from seeds HELD_OUT_SEED + i, a
range training never reaches. Shapes are rasterised at 4x and averaged down (smooth, antialiased edges).

    python benchmarks/ct_phantoms.py export-train DIR [--count 2000 --size 128]   # 16-bit PNGs on the CT scale
    python benchmarks/ct_phantoms.py export-held-out DIR [--count 8 --size 128]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

#: held-out phantoms use seeds from here on (training exports seeds 0 .. count - 1)
HELD_OUT_SEED = 1_000_000
SUPERSAMPLE = 4


def hu(value: float) -> float:
    """Hounsfield units on the CT scale."""
    return (value + 1024.0) / 4096.0


# tissue values (HU) a draw picks around
FAT, SOFT, LUNG = -100.0, 40.0, -820.0
ORGANS = (-30.0, 20.0, 35.0, 50.0, 60.0, 75.0)

# the modified Shepp-Logan table (Toft 1996): value, a, b, x0, y0, angle in degrees
SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


class Canvas:
    """A supersampled square grid on [-1, 1]^2 (x right, y up) to paint ellipses on."""

    def __init__(self, size: int) -> None:
        n = size * SUPERSAMPLE
        axis = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0
        self.size = size
        self.x, self.y = np.meshgrid(axis, -axis)
        self.image = np.zeros((n, n), dtype=np.float64)

    def inside(self, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = self.x - cx, self.y - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0

    def set(self, value: float, *ellipse: float) -> np.ndarray:
        mask = self.inside(*ellipse)
        self.image[mask] = value
        return mask

    def add(self, value: float, *ellipse: float) -> None:
        self.image[self.inside(*ellipse)] += value

    def result(self) -> np.ndarray:
        n = self.size
        return self.image.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(1, 3))


def smooth_field(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """A random field with unit std and a Gaussian spectrum of length scale ``scale_px``."""
    noise = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size)
    k2 = f[:, None] ** 2 + f[None, :] ** 2
    field = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2.0 * (math.pi * scale_px) ** 2 * k2)).real
    return field / max(float(field.std()), 1e-12)


def body_phantom(rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = Canvas(size)
    a, b = rng.uniform(0.72, 0.94), rng.uniform(0.5, 0.8)
    cx, cy, turn = rng.uniform(-0.04, 0.04), rng.uniform(-0.06, 0.04), rng.uniform(-0.15, 0.15)
    fat = rng.uniform(0.04, 0.12)
    canvas.set(hu(rng.uniform(FAT - 20, FAT + 20)), cx, cy, a, b, turn)
    body = canvas.set(hu(rng.uniform(SOFT - 15, SOFT + 15)), cx, cy, a - fat, b - fat, turn)
    inner_a, inner_b = a - fat, b - fat

    def spot(scale: float) -> tuple[float, float]:  # a point well inside the body
        r, t = math.sqrt(rng.uniform(0, 1)) * scale, rng.uniform(0, 2 * math.pi)
        return cx + r * inner_a * math.cos(t), cy + r * inner_b * math.sin(t)

    if rng.uniform() < 0.5:  # a thorax: two lungs
        la, lb, lx = inner_a * rng.uniform(0.25, 0.38), inner_b * rng.uniform(0.45, 0.7), inner_a * 0.45
        for side in (-1, 1):
            canvas.set(hu(rng.uniform(LUNG - 80, LUNG + 80)), cx + side * lx, cy + rng.uniform(-0.05, 0.1),
                       la, lb, side * rng.uniform(0.0, 0.3))
    for _ in range(int(rng.integers(2, 6))):  # organs
        ox, oy = spot(0.6)
        canvas.set(hu(float(rng.choice(ORGANS)) + rng.uniform(-10, 10)), ox, oy, inner_a * rng.uniform(0.1, 0.35),
                   inner_b * rng.uniform(0.1, 0.35), rng.uniform(0, math.pi))
    for _ in range(int(rng.integers(1, 5))):  # bones: a ring (cortex around marrow) or solid
        bx, by = spot(0.8)
        ba, bb = inner_a * rng.uniform(0.04, 0.13), inner_b * rng.uniform(0.04, 0.13)
        turn_b = rng.uniform(0, math.pi)
        canvas.set(hu(rng.uniform(700, 1500)), bx, by, ba, bb, turn_b)
        if rng.uniform() < 0.6:
            canvas.set(hu(rng.uniform(150, 400)), bx, by, ba * 0.6, bb * 0.6, turn_b)
    for _ in range(int(rng.integers(0, 5))):  # small lesions, a few tens of HU of contrast
        lx2, ly2 = spot(0.7)
        r = rng.uniform(0.02, 0.07)
        canvas.add(rng.choice((-1.0, 1.0)) * rng.uniform(15, 80) / 4096.0, lx2, ly2, r,
                   r * rng.uniform(0.7, 1.3), rng.uniform(0, math.pi))
    image = canvas.result()
    inside = _down(body, size)
    texture = smooth_field(rng, size, rng.uniform(1.0, 3.0)) * rng.uniform(2.0, 10.0) / 4096.0
    image += inside * texture + (image > 0.02) * rng.standard_normal((size, size)) * rng.uniform(0.5, 3.0) / 4096.0
    return image


def _down(mask: np.ndarray, size: int) -> np.ndarray:
    return mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def shepp_phantom(rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = Canvas(size)
    zoom = rng.uniform(0.8, 1.02)
    for i, (value, a, b, x0, y0, angle) in enumerate(SHEPP_LOGAN):
        jitter = 0.15 if i >= 2 else 0.03
        value = value * (1.0 + rng.uniform(-0.3, 0.3)) if i >= 2 else value
        shift = 0.3 * jitter
        ellipse = (zoom * (x0 + rng.uniform(-shift, shift)), zoom * (y0 + rng.uniform(-shift, shift)),
                   zoom * a * rng.uniform(1 - jitter, 1 + jitter), zoom * b * rng.uniform(1 - jitter, 1 + jitter),
                   math.radians(angle + rng.uniform(-15, 15) * (i >= 2)))
        canvas.add(value, *ellipse)
        if i == 0:
            outline = _down(canvas.inside(*ellipse), size)
    v = canvas.result()
    head = _down(canvas.inside(0.0, 0.0, zoom * 0.69 * 0.97, zoom * 0.92 * 0.97, 0.0), size)
    skull, brain = hu(rng.uniform(800, 1400)), hu(rng.uniform(20, 45))
    contrast = rng.uniform(0.05, 0.12)  # CT scale per Shepp-Logan unit inside the skull
    image = np.where(v > 0.6, skull * np.clip(v, 0, 1), brain + (v - 0.2) * contrast * head)
    image = np.clip(image, 0.0, None) * outline
    return image + head * smooth_field(rng, size, 2.0) * rng.uniform(1.0, 5.0) / 4096.0


def phantom(seed: int, size: int = 128) -> np.ndarray:
    """Phantom ``seed`` (float32, size x size, CT scale, clipped to [0, 1]): a body slice 3 times in 4, else a
    perturbed Shepp-Logan head."""
    rng = np.random.default_rng([int(seed), int(size)])
    image = body_phantom(rng, size) if rng.uniform() < 0.75 else shepp_phantom(rng, size)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def held_out(count: int, size: int = 128) -> list[np.ndarray]:
    """``count`` held-out phantoms (seeds HELD_OUT_SEED + i, never exported for training)."""
    return [phantom(HELD_OUT_SEED + i, size) for i in range(count)]


def training(count: int, size: int = 128, start: int = 0) -> list[np.ndarray]:
    """Training phantoms ``start`` .. ``start + count - 1`` (what export-train writes)."""
    if start + count > HELD_OUT_SEED:
        raise ValueError("training seeds must stay below HELD_OUT_SEED")
    return [phantom(i, size) for i in range(start, start + count)]


def write_png16(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    values = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    Image.fromarray(values).save(path)


def export(dest: Path, seeds: range, size: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = dest / f"phantom_{seed:07d}.png"
        write_png16(path, phantom(seed, size))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("export-train", "export-held-out"):
        p = sub.add_parser(name)
        p.add_argument("dest", type=Path)
        p.add_argument("--count", type=int, default=2000 if name == "export-train" else 8)
        p.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    base = 0 if args.command == "export-train" else HELD_OUT_SEED
    if base == 0 and args.count > HELD_OUT_SEED:
        parser.error("--count would reach the held-out seeds")
    paths = export(args.dest, range(base, base + args.count), args.size)
    print(f"wrote {len(paths)} phantoms of {args.size} px to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
