"""Compressed-sensing MRI with the shipped ``mri-phantom`` prior: DAPS and DPS against zero-filled, the exact
pseudo-inverse, SENSE and L1-wavelet / TV compressed sensing on held-out phantoms (benchmarks/mri_phantoms.py),
single-coil and 8 simulated coils, 4x and 8x
(InverseBench's random line masks: its ACS rule, mask seed 0, vertical lines).

The measurement: ``y = M F (S x) + n`` in the image's own units, n white Gaussian with std ``NOISE`` x the 99th
percentile of |x| per real component. The prior sees the problem divided by ``s`` = the 99th percentile of the
magnitude of the zero-filled image ``op.zero_filled(y)`` (the coil-combined adjoint), as the ``mri`` command
estimates it (``operators.mri_phase``; the target is never used), and the reconstruction is multiplied back by s.
(The exact pseudo-inverse would be a poor choice with several coils: it amplifies the noise, and its 99th
percentile is about twice the image's at 4x with 8 coils.)

Metrics as InverseBench computes them: PSNR and SSIM of the magnitude, data range max |target|, the prediction
clipped to [0, max |target|].

    python benchmarks/mri_quality.py table [--images 4 --size 64]     # the docs/benchmarks.md table
    python benchmarks/mri_quality.py tune [--images 4]               # fast-preset variants on TRAINING phantoms
    python benchmarks/mri_quality.py knee-cost                       # InverseBench's 320x320 prior, random init
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import mri_phantoms

from diffrestore.metrics.pixel import psnr, ssim
from diffrestore.operators import GaussianNoise, Problem
from diffrestore.operators.mri import MultiCoilMRI, channels_to_complex, complex_to_channels, simulated_maps
from diffrestore.operators.mri_masks import inversebench_lines
from diffrestore.operators.mri_phase import scale_from_image

#: measurement noise, in units of the 99th percentile of |x| per real component
NOISE = 0.01
MASK_SEED = 0
COILS = 8


def case(image: np.ndarray, acceleration: float, coils: int = 1, *, seed: int = 0, noise: float = NOISE):
    """(problem in the prior's units, scale s, target complex (H, W) tensor, op) for one complex image."""
    target = torch.from_numpy(np.asarray(image)).to(torch.complex64)
    height, width = target.shape
    mask = inversebench_lines((height, width), acceleration, "random", seed=MASK_SEED)
    maps = simulated_maps(coils, (height, width)) if coils > 1 else None
    op = MultiCoilMRI((2, height, width), mask, maps)
    x = complex_to_channels(target[None, None])
    gen = torch.Generator().manual_seed(seed)
    std = noise * scale_from_image(target)
    with torch.no_grad():
        y = op(x)
        y = y + std * torch.randn(y.shape, generator=gen) * op.mask.repeat(1, y.shape[1], 1, 1)
        scale = scale_from_image(channels_to_complex(op.zero_filled(y)))  # as the mri command (tasks/mri.py)
    problem = Problem(op, GaussianNoise(std / scale / 2), y / scale)
    return problem, scale, target, op


def metrics(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """InverseBench's PSNR and SSIM of complex (H, W) images' magnitudes (module doc)."""
    reference = target.abs()
    peak = float(reference.max())
    guess = prediction.abs().clamp(0, peak) / peak
    reference = (reference / peak)[None, None]
    guess = guess[None, None].to(reference.dtype)
    return float(psnr(guess, reference)[0]), float(ssim(guess, reference)[0])


#: the classical reconstructions beside zero-filled and pinv (solvers/classical_mri.py, their tuned defaults)
CLASSICAL = ("sense", "cs-wavelet", "cs-tv")


def baselines(problem: Problem, scale: float) -> dict[str, torch.Tensor]:
    """Zero-filled (coil-combined adjoint), the exact pseudo-inverse and the classical methods (SENSE, L1-wavelet
    and TV compressed sensing), complex (H, W), original units."""
    from diffrestore.solvers import get_solver

    op = problem.operator
    with torch.no_grad():
        out = {"zero-filled": channels_to_complex(op.zero_filled(problem.y))[0, 0] * scale,
               "pinv": channels_to_complex(op.pinv(problem.y))[0, 0] * scale}
        for method in CLASSICAL:
            solver = get_solver(method, "fast")
            x = solver.run(solver.stand_in_prior("cpu"), problem, generator=torch.Generator().manual_seed(0))
            out[method] = channels_to_complex(x.detach().cpu())[0, 0] * scale
    return out


def solve(prior, problem: Problem, scale: float, method: str, preset: str, seed: int = 0, **overrides) -> torch.Tensor:
    from diffrestore.solvers import get_solver

    solver = get_solver(method, preset, **overrides)
    out = solver.run(prior, problem, generator=torch.Generator().manual_seed(seed))
    return channels_to_complex(out.detach().cpu())[0, 0] * scale


def load_mri_prior():
    from diffrestore.priors.load import load_prior

    return load_prior("mri-phantom")


def table(images: int, size: int, paper: bool) -> None:
    prior = load_mri_prior()
    held = mri_phantoms.held_out(images, size)
    rows = []
    for coils in (1, COILS):
        for acceleration in (4, 8):
            results: dict[str, list[tuple[float, float, float]]] = {}
            for index, image in enumerate(held):
                problem, scale, target, _ = case(image, acceleration, coils, seed=index)
                for name, guess in baselines(problem, scale).items():
                    results.setdefault(name, []).append((*metrics(guess, target), 0.0))
                runs = [("daps fast", "daps", "fast", {}), ("dps fast", "dps", "fast", {})]
                if paper and index == 0:
                    runs.append(("daps paper (image 0)", "daps", "paper", {}))
                for label, method, preset, extra in runs:
                    t0 = time.perf_counter()
                    guess = solve(prior, problem, scale, method, preset, seed=index, **extra)
                    results.setdefault(label, []).append((*metrics(guess, target), time.perf_counter() - t0))
            for label, values in results.items():
                arr = np.array(values)
                rows.append((coils, acceleration, label, arr[:, 0].mean(), arr[:, 1].mean(), arr[:, 2].mean(),
                             len(values)))
                print(f"| {coils} | {acceleration}x | {label} | {arr[:, 0].mean():.2f} | {arr[:, 1].mean():.3f} | "
                      f"{arr[:, 2].mean():.1f} | {len(values)} |", flush=True)


def tune(images: int, size: int) -> None:
    """The fast preset's variants on TRAINING phantoms (seeds 0..images-1), single-coil 4x."""
    prior = load_mri_prior()
    train = [mri_phantoms.phantom(seed, size) for seed in range(images)]
    variants = [("daps", "fast", {}), ("daps", "fast", {"steps": 50}), ("daps", "fast", {"steps": 200}),
                ("daps", "fast", {"sigma_min": 0.05}), ("daps", "fast", {"tau": 0.02}),
                ("daps", "fast", {"inner_spread": 1.0}),
                ("dps", "fast", {"zeta": 0.1}), ("dps", "fast", {"zeta": 0.3}), ("dps", "fast", {"zeta": 1.0})]
    scores = []
    for index, image in enumerate(train):
        problem, scale, target, _ = case(image, 4, 1, seed=index)
        scores.append(metrics(baselines(problem, scale)["zero-filled"], target))
    print(f"zero-filled: PSNR {np.mean([s[0] for s in scores]):.2f} SSIM {np.mean([s[1] for s in scores]):.3f}")
    for method, preset, extra in variants:
        scores = []
        t0 = time.perf_counter()
        for index, image in enumerate(train):
            problem, scale, target, _ = case(image, 4, 1, seed=index)
            scores.append(metrics(solve(prior, problem, scale, method, preset, seed=index, **extra), target))
        arr = np.array(scores)
        print(f"{method} {preset} {extra}: PSNR {arr[:, 0].mean():.2f} SSIM {arr[:, 1].mean():.3f} "
              f"({(time.perf_counter() - t0) / len(train):.1f} s/image)", flush=True)


def knee_cost() -> None:
    """InverseBench's knee architecture at random init: one network call on this CPU, extrapolated to 1000."""
    import resource

    from diffrestore.priors.edm_unet import INVERSEBENCH_MRI, EDMPrecond, EDMPrior

    torch.manual_seed(0)
    prior = EDMPrior(EDMPrecond(INVERSEBENCH_MRI))
    params = sum(p.numel() for p in prior.net.parameters())
    x = torch.randn(1, 2, 320, 320)
    with torch.no_grad():
        prior.denoise(x, 1.0)  # warm-up
        t0 = time.perf_counter()
        prior.denoise(x, 1.0)
        call = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"parameters {params:,} ({params * 4 / 1e6:.0f} MB float32); one call (1x2x320x320, no grad, "
          f"{torch.get_num_threads()} threads) {call:.2f} s; peak RSS {rss:.0f} MB; 1000 calls (DAPS paper) "
          f"~{1000 * call / 60:.0f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("table", "tune", "knee-cost"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--paper", action="store_true", help="also DAPS's paper preset on image 0 of each row")
    args = parser.parse_args(argv)
    if args.what == "table":
        table(args.images, args.size, args.paper)
    elif args.what == "tune":
        tune(args.images, args.size)
    else:
        knee_cost()


if __name__ == "__main__":
    main()
