"""Compressed-sensing MRI: the classical reconstructions (``zero-filled``, ``sense``, ``cs-wavelet``, ``cs-tv``;
solvers/classical_mri.py) on held-out images at 4x and 8x, and the tuning of the CS weights on other images.

Problems are the ``mri`` task's: a complex image on the 99th-percentile scale (magnitude 1 at its 99th percentile),
a vertical random-line mask (InverseBench's pattern: floor(N / R) lines with floor(0.08 N) centre lines at 4x,
floor(0.04 N) at 8x; seed 0), complex Gaussian noise of std ``--noise-sigma`` per real and imaginary part (the
task's default 0.01). Scores are InverseBench's: PSNR / SSIM of the magnitude against the reference magnitude,
data range its maximum, the restoration clipped to [0, max] (``tasks.mri.MRI.scored``); time per image on one
thread.

Held-out images:

    analytic   phantominator's Shepp-Logan k-space through 7 analytic coils (tests/mri_support.py: the continuous
               Fourier transform, no inverse crime), with the analytic maps; reference: the fully sampled MVUE
    MR_small   pydicom's 64 x 64 MR slice, a smooth phase (operators.mri_phase), 8 birdcage coils
    s1045      matplotlib's 256 x 256 MR brain slice (sample_data/s1045.ima.gz), the same
    phantoms   benchmarks/mri_phantoms.py's held-out head / knee phantoms (the MRI prior's own held-out set)

The CS weights are tuned (``tune``) on training phantoms of mri_phantoms.py (seeds 0 .. count - 1), never on the
held-out images.

    python benchmarks/mri_baselines.py table [--accelerations 4,8 --size 128]
    python benchmarks/mri_baselines.py tune  [--count 4 --size 128]
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from diffrestore import metrics
from diffrestore.operators.mri import MultiCoilMRI, normalise_maps, simulated_maps
from diffrestore.operators.mri_masks import build_mask
from diffrestore.operators.mri_phase import smooth_phase, to_prior
from diffrestore.solvers.classical_mri import cs_tv, cs_wavelet, sense, zero_filled
from diffrestore.tasks.mri import MRI, MRI_NOISE_SIGMA

METHODS = ("zero-filled", "sense", "cs-wavelet", "cs-tv")
#: the weights ``tune`` tries: the L1 weights, and SENSE's Tikhonov weight
WEIGHTS = {"cs-wavelet": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "cs-tv": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
           "sense": (0.0, 1e-3, 1e-2, 3e-2, 0.1, 0.3)}
COILS = 8


def reconstruct(method: str, op: MultiCoilMRI, k: torch.Tensor, weight: float | None = None) -> torch.Tensor:
    """The method's complex images ``(N, H, W)`` from masked k-space ``(N, C, H, W)`` (the solvers' defaults)."""
    from diffrestore.solvers import get_solver

    config = get_solver(method).config
    if method == "zero-filled":
        return zero_filled(op, k)
    if method == "sense":
        return sense(op, k, config.steps, config.weight if weight is None else weight, config.tolerance)
    if method == "cs-wavelet":
        return cs_wavelet(op, k, config.steps, config.weight if weight is None else weight, config.wavelet,
                          config.levels)
    return cs_tv(op, k, config.steps, config.weight if weight is None else weight)


def scores(restored: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """InverseBench's magnitude PSNR / SSIM of complex images ``(H, W)``."""
    def channels(z: torch.Tensor) -> torch.Tensor:
        return torch.stack((z.real, z.imag))[None].to(torch.float32)

    a, b = MRI().scored(channels(restored), channels(reference))
    return float(metrics.psnr(a, b)[0]), float(metrics.ssim(a, b)[0])


def problem(reference: torch.Tensor, acceleration: float, maps: torch.Tensor | None, *, kspace: torch.Tensor | None
            = None, sigma: float = MRI_NOISE_SIGMA, seed: int = 0) -> tuple[MultiCoilMRI, torch.Tensor, torch.Tensor]:
    """(operator, noisy masked k-space (1, C, H, W), reference) on the reference's 99th-percentile scale; the
    k-space is ``kspace`` (analytic data) or simulated through the operator."""
    height, width = reference.shape
    mask = build_mask("random", (height, width), acceleration, generator=torch.Generator().manual_seed(0)).mask
    op = MultiCoilMRI((2, height, width), mask, maps)
    _, scale = to_prior(reference)
    clean = (kspace / scale)[None] if kspace is not None else op._forward_complex((reference / scale)[None])
    noise = torch.randn(2, *clean.shape, generator=torch.Generator().manual_seed(seed))
    k = (clean + sigma * torch.complex(noise[0], noise[1])) * op.mask[0]
    return op, k.to(torch.complex64), reference / scale


def with_phase(magnitude: np.ndarray, seed: int) -> torch.Tensor:
    height, width = magnitude.shape
    phase = smooth_phase(height, width, generator=torch.Generator().manual_seed(seed))
    return torch.polar(torch.from_numpy(magnitude.astype(np.float32)), phase)


def held_out_images(size: int) -> list[tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """(name, reference, maps, analytic k-space or None)."""
    images = []
    from mri_support import analytic_kspace, analytic_maps, mvue

    kspace = analytic_kspace(size)
    maps = normalise_maps(torch.from_numpy(analytic_maps(size)))
    images.append(("analytic", torch.from_numpy(mvue(kspace, maps.numpy())), maps, torch.from_numpy(kspace)))
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    small = dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)
    images.append(("MR_small", with_phase(small / small.max(), 1), simulated_maps(COILS, small.shape), None))
    import matplotlib

    path = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "s1045.ima.gz"
    if path.is_file():
        brain = np.frombuffer(gzip.decompress(path.read_bytes()), ">u2").reshape(256, 256).astype(np.float32)
        images.append(("s1045", with_phase(brain / brain.max(), 2), simulated_maps(COILS, brain.shape), None))
    try:
        import mri_phantoms
    except ImportError:
        return images
    for i, z in enumerate(mri_phantoms.held_out(4, size=size)):
        z = torch.from_numpy(z)
        images.append((f"phantom{i}", z, simulated_maps(COILS, tuple(z.shape)), None))
    return images


def table(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    accelerations = [float(a) for a in args.accelerations.split(",")]
    images = held_out_images(args.size)
    print(f"noise sigma {args.noise_sigma:g} per component; random vertical lines (seed 0); one thread")
    print("| image | size | coils | R | " + " | ".join(METHODS) + " |")
    print("|---|---|---|---|" + "---|" * len(METHODS))
    totals: dict[tuple[float, str], list[tuple[float, float, float]]] = {}
    for name, reference, maps, kspace in images:
        for accel in accelerations:
            op, k, ref = problem(reference, accel, maps, kspace=kspace, sigma=args.noise_sigma)
            cells = []
            for method in METHODS:
                t0 = time.perf_counter()
                z = reconstruct(method, op, k)[0]
                seconds = time.perf_counter() - t0
                p, s = scores(z, ref)
                totals.setdefault((accel, method), []).append((p, s, seconds))
                cells.append(f"{p:.2f} / {s:.3f} / {seconds:.2f} s")
            coils = 1 if maps is None else maps.shape[0]
            print(f"| {name} | {reference.shape[-1]} | {coils} | {accel:g}x (real {op.acceleration:.2f}) | "
                  + " | ".join(cells) + " |")
    for accel in accelerations:
        means = [np.mean(totals[(accel, m)], axis=0) for m in METHODS]
        print(f"| mean of {len(images)} | | | {accel:g}x | " + " | ".join(
            f"{p:.2f} / {s:.3f} / {t:.2f} s" for p, s, t in means) + " |")


def tune(args: argparse.Namespace) -> None:
    import mri_phantoms

    torch.set_num_threads(1)
    train = [torch.from_numpy(z) for z in mri_phantoms.train_set(args.count, size=args.size)]
    for accel in (4.0, 8.0):
        for method in args.methods.split(","):
            row = []
            for weight in WEIGHTS[method]:
                values = []
                for i, z in enumerate(train):
                    op, k, ref = problem(z, accel, simulated_maps(COILS, tuple(z.shape)), seed=i)
                    values.append(scores(reconstruct(method, op, k, weight)[0], ref)[0])
                row.append(float(np.mean(values)))
            best = WEIGHTS[method][int(np.argmax(row))]
            print(f"{accel:g}x {method}: " + ", ".join(f"{w:g}: {v:.2f}" for w, v in zip(WEIGHTS[method], row,
                                                                                          strict=True))
                  + f"  -> best {best:g}")


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table")
    t.add_argument("--accelerations", default="4,8")
    t.add_argument("--size", type=int, default=128)
    t.add_argument("--noise-sigma", type=float, default=MRI_NOISE_SIGMA)
    u = sub.add_parser("tune")
    u.add_argument("--count", type=int, default=4)
    u.add_argument("--size", type=int, default=128)
    u.add_argument("--methods", default="sense,cs-wavelet,cs-tv")
    args = parser.parse_args(argv)
    if not math.isfinite(getattr(args, "noise_sigma", 0.0)):
        parser.error("--noise-sigma must be finite")
    {"table": table, "tune": tune}[args.command](args)


if __name__ == "__main__":
    main()
