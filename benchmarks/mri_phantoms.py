"""Synthetic complex MR images for the MRI prior: seeded, deterministic phantoms with anatomy-like structure, a
smooth receive-bias field and a smooth phase, as complex64 (H, W) arrays (magnitude about 0 .. 1).

Two families, both drawn from one seed:

    head   scalp (bright fat rim), skull (dark), brain with grey/white matter of T1- or T2-like contrast,
           ventricles (CSF), 0-4 small lesions
    knee   subcutaneous fat rim and muscle around two bones (dark cortex, bright fatty marrow) meeting at a joint
           with thin cartilage and joint fluid, tendons as dark bands

Every image then gets a multiplicative smooth bias field (0.75 .. 1.25, as a receive coil gives), faint smooth
texture, and a smooth random phase (``diffrestore.operators.mri_phase.smooth_phase``, up to pi radians).
Training images come from seeds 0, 1, 2, ...; held-out images (``held_out``) from seeds HELD_OUT_SEED + i, a
range training never reaches. Shapes are rasterised at 4x and averaged down (smooth edges, no pixel-exact
k-space).

    python benchmarks/mri_phantoms.py export-train DIR [--count 2000 --size 64]   # complex .npy files
    python benchmarks/mri_phantoms.py export-held-out DIR [--count 8 --size 64]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

#: held-out phantoms use seeds from here on (training exports seeds 0 .. count - 1)
HELD_OUT_SEED = 1_000_000
SUPERSAMPLE = 4
FAMILIES = ("head", "knee")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled coordinates in [-1, 1] (y down, x right)."""
    n = size * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / n * 2 - 1
    return np.meshgrid(c, c, indexing="ij")


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _smooth_field(rng: np.random.Generator, yy, xx, terms: int = 4, cycles: float = 1.0) -> np.ndarray:
    """A sum of a few random plane cosines, zero mean, peak 1."""
    field = np.zeros_like(yy)
    for _ in range(terms):
        f = cycles * rng.uniform(0.2, 1.0)
        t = rng.uniform(0, 2 * math.pi)
        amplitude = rng.uniform(0.3, 1.0)
        field += amplitude * np.cos(math.pi * f * (math.cos(t) * xx + math.sin(t) * yy) + rng.uniform(0, 6.3))
    field -= field.mean()
    return field / max(np.abs(field).max(), 1e-9)


def _head(rng: np.random.Generator, yy, xx) -> np.ndarray:
    t2 = rng.random() < 0.5  # T2-like: CSF bright, white matter darker than grey
    img = np.zeros_like(yy)
    cy, cx = rng.uniform(-0.06, 0.06, 2)
    ry, rx = rng.uniform(0.78, 0.92), rng.uniform(0.62, 0.78)
    angle = rng.uniform(-0.25, 0.25)
    img[_ellipse(yy, xx, cy, cx, ry, rx, angle)] = rng.uniform(0.7, 0.95)  # scalp fat
    img[_ellipse(yy, xx, cy, cx, ry - 0.05, rx - 0.05, angle)] = rng.uniform(0.03, 0.1)  # skull
    grey, white = (0.6, 0.45) if t2 else (0.5, 0.72)
    csf = rng.uniform(0.85, 1.0) if t2 else rng.uniform(0.08, 0.2)
    brain = _ellipse(yy, xx, cy, cx, ry - 0.1, rx - 0.1, angle)
    img[brain] = grey * rng.uniform(0.9, 1.1)
    # white matter: a few overlapping lobes inside the brain
    for _ in range(rng.integers(3, 6)):
        wy, wx = cy + rng.uniform(-0.35, 0.35), cx + rng.uniform(-0.3, 0.3)
        lobe = _ellipse(yy, xx, wy, wx, rng.uniform(0.12, 0.3), rng.uniform(0.08, 0.2), rng.uniform(0, math.pi))
        img[lobe & brain] = white * rng.uniform(0.92, 1.08)
    # ventricles: two mirrored crescent-ish ellipses near the centre
    vy, vs = cy + rng.uniform(-0.12, 0.05), rng.uniform(0.06, 0.14)
    for side in (-1, 1):
        img[_ellipse(yy, xx, vy, cx + side * vs, rng.uniform(0.12, 0.22), rng.uniform(0.04, 0.07),
                     side * rng.uniform(0.2, 0.5))] = csf
    for _ in range(rng.integers(0, 5)):
        ly, lx = cy + rng.uniform(-0.5, 0.5), cx + rng.uniform(-0.4, 0.4)
        lesion = _ellipse(yy, xx, ly, lx, rng.uniform(0.02, 0.06), rng.uniform(0.02, 0.06))
        img[lesion & brain] = rng.uniform(0.2, 1.0)
    return img


def _knee(rng: np.random.Generator, yy, xx) -> np.ndarray:
    img = np.zeros_like(yy)
    cx = rng.uniform(-0.08, 0.08)
    angle = rng.uniform(-0.2, 0.2)
    ry, rx = 1.3, rng.uniform(0.68, 0.85)
    img[_ellipse(yy, xx, 0.0, cx, ry, rx, angle)] = rng.uniform(0.75, 0.95)  # subcutaneous fat
    img[_ellipse(yy, xx, 0.0, cx, ry, rx - rng.uniform(0.06, 0.12), angle)] = rng.uniform(0.3, 0.42)  # muscle
    joint = rng.uniform(-0.1, 0.15)
    gap = rng.uniform(0.05, 0.09)
    half = rng.uniform(0.38, 0.5)
    marrow = rng.uniform(0.75, 0.95)
    fluid = rng.uniform(0.6, 1.0)
    # femur (above the joint, rounded condyles) and tibia (below, flat plateau)
    femur = (_ellipse(yy, xx, joint - gap - 0.18, cx, 0.2, half, angle) | (
        (np.abs(xx - cx) < half * 0.75) & (yy < joint - gap - 0.18)))
    tibia = (np.abs(xx - cx) < half * rng.uniform(0.85, 1.0)) & (yy > joint + gap) & (yy < 1.2)
    img[(yy > joint - gap - 0.02) & (yy < joint + gap + 0.02) & (np.abs(xx - cx) < half)] = fluid
    for bone in (femur, tibia):
        img[bone] = 0.05  # cortex
    for bone, shrink in ((femur, 0.04), (tibia, 0.04)):
        rows, cols = int(shrink * yy.shape[0] / 2), int(shrink * yy.shape[1] / 2)
        inner = bone & ~np.roll(~bone, rows, axis=0) & ~np.roll(~bone, -rows, axis=0)  # cortex: a rim this thick
        inner &= ~np.roll(~bone, cols, axis=1) & ~np.roll(~bone, -cols, axis=1)
        img[inner] = marrow * rng.uniform(0.9, 1.05)
    # cartilage: thin bright-grey bands on each joint surface
    img[(np.abs(yy - (joint - gap)) < 0.02) & (np.abs(xx - cx) < half * 0.9)] = rng.uniform(0.45, 0.6)
    img[(np.abs(yy - (joint + gap)) < 0.02) & (np.abs(xx - cx) < half * 0.9)] = rng.uniform(0.45, 0.6)
    # tendons/ligaments: dark bands in the muscle
    for _ in range(rng.integers(1, 4)):
        ty, tx = rng.uniform(-0.8, 0.8), cx + rng.choice([-1, 1]) * rng.uniform(0.5, 0.65)
        img[_ellipse(yy, xx, ty, tx, rng.uniform(0.2, 0.4), rng.uniform(0.02, 0.04), rng.uniform(-0.3, 0.3))] = 0.05
    return img


def phantom(seed: int, size: int = 64, family: str | None = None) -> np.ndarray:
    """One complex64 (size, size) phantom; the family is drawn from the seed unless given."""
    import torch

    from diffrestore.operators.mri_phase import with_smooth_phase

    rng = np.random.default_rng([seed, 20261207])
    family = family or FAMILIES[int(rng.integers(len(FAMILIES)))]
    yy, xx = _grid(size)
    scale = rng.uniform(0.85, 1.05)  # field of view
    yy, xx = yy / scale, xx / scale
    img = _head(rng, yy, xx) if family == "head" else _knee(rng, yy, xx)
    img = img * (1 + 0.04 * _smooth_field(rng, yy, xx, terms=6, cycles=6.0))  # faint texture
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    cy, cx = yy.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3)), xx.reshape(
        size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    img = img * (1 + 0.25 * _smooth_field(rng, cy, cx, terms=3, cycles=0.8))  # receive bias
    img = img + np.abs(rng.normal(0, 0.005, img.shape))  # a little background signal
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return with_smooth_phase(torch.from_numpy(img.astype(np.float32)), gen).numpy().astype(np.complex64)


def train_set(count: int, size: int = 64) -> list[np.ndarray]:
    return [phantom(seed, size) for seed in range(count)]


def held_out(count: int, size: int = 64, family: str | None = None) -> list[np.ndarray]:
    """Phantoms from seeds HELD_OUT_SEED + i: never among the training ones."""
    return [phantom(HELD_OUT_SEED + i, size, family) for i in range(count)]


def _export(images: list[np.ndarray], out: Path, prefix: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        np.save(out / f"{prefix}{i:05d}.npy", img)
    print(f"wrote {len(images)} complex phantoms to {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("export-train", "export-held-out", "preview"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.what == "export-train":
        _export(train_set(args.count or 2000, args.size), args.out, "train")
    elif args.what == "export-held-out":
        _export(held_out(args.count or 8, args.size), args.out, "held")
    else:  # a PNG sheet of magnitudes, for a look
        from PIL import Image

        tiles = [np.abs(phantom(s, args.size)) for s in range(args.count or 16)]
        row = np.concatenate([np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles) - 3, 4)], axis=0)
        Image.fromarray((np.clip(row / np.percentile(row, 99.5), 0, 1) * 255).astype(np.uint8)).save(args.out)


if __name__ == "__main__":
    main()
