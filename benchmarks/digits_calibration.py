"""The `-n N` question on the small test priors: the inner step's mean or its draw, for LatentDAPS (the
latent_digits16 fixture, the one latent prior that runs offline) and pixel DAPS (digits16), on held-out digits.

    python benchmarks/digits_calibration.py [--digits 16] [--samples 4] [--json FILE]

Per solver, task (70 % random inpainting, bicubic SR x2; noise 0.01, as tests/test_quality_digits_*.py) and inner
step (``VARIANTS``: spread 0, the mean, or for LatentDAPS's HMC a descent towards the target's mode; spread 1, a
draw; pixel DAPS also the Tweedie draw, r_t="tweedie"): N samples per digit
from the CLI's per-sample streams, then the mean PSNR over the digits of sample 1 and of the mean of the N, and
the coverage of the per-pixel intervals (calibration.py: mean +- z std, and the predictive mean +- sqrt(1 + 1/N)
t_(N-1) std whose target is the nominal level whatever N) at 90 %, inpainting's missing pixels only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import coverage, exact_share, predictive_levels

from diffrestore.operators import GaussianNoise, Problem, build_operator, simulate
from diffrestore.priors.builtin import load_model_dir
from diffrestore.priors.load import load_prior
from diffrestore.run.runtime import image_identity, sample_generators
from diffrestore.solvers import get_solver, inner

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
NOISE_SIGMA = 0.01  # the [0, 1] scale, as the digits quality tests
SOLVERS = {"latent-daps": "latent_digits16", "daps": "digits16"}
#: solver -> inner step -> its settings on top of the fast preset (pixel DAPS: the mean, what -n 1 runs on a
#: Gaussian inner target; the plain draw, Langevin at r_t = sigma_t, what -n N runs; the Tweedie draw). LatentDAPS
#: has no such setting (it always draws): "hmc_spread" scales its HMC chain's noise here (``hmc_spread``)
VARIANTS = {
    "latent-daps": {"mean-seeking": {"hmc_spread": 0.0}, "draw": {}},
    "daps": {"mean": {"inner_spread": 0.0}, "draw": {"inner_spread": 1.0},
             "tweedie draw": {"r_t": "tweedie", "inner_spread": 1.0}},
}


def held_out_digits(count: int) -> torch.Tensor:
    """``count`` digits never trained on, spread over the held-out range, (count, 1, 16, 16) in [-1, 1]."""
    spec = importlib.util.spec_from_file_location("make_digits16", FIXTURES / "digits16" / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    step = max(1, (1797 - module.HELD_OUT_START) // count)
    digits = module.digit_images()[module.HELD_OUT_START :: step][:count]
    return torch.from_numpy(digits.astype(np.float32) / 255.0)[:, None] * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over the batch of per-image PSNR on the [0, 1] scale."""
    mse = ((a.clamp(-1, 1) - b) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(4.0 / mse)).mean())


@contextlib.contextmanager
def hmc_spread(spread: float | None) -> Iterator[None]:
    """LatentDAPS's HMC steps with their noise scaled by ``spread`` (inner.hmc's own ``spread``: 0 descends towards
    the inner target's mode) while the block runs; None: as they are."""
    original = inner.hmc
    if spread is not None:
        inner.hmc = functools.partial(original, spread=spread)
    try:
        yield
    finally:
        inner.hmc = original


def measure(solver_name: str, prior, task: str, variant: str, x: torch.Tensor, samples: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(7)
    if task == "inpaint":
        op = build_operator("inpaint", tuple(x.shape[1:]), fraction=0.7, generator=gen)
    else:
        op = build_operator("sr", tuple(x.shape[1:]), factor=2)
    problem = simulate(op, GaussianNoise(NOISE_SIGMA), x, gen)
    y = problem.y.repeat_interleave(samples, dim=0)  # each digit's samples next to each other, as the CLI
    streams = [g for digit in x for g in sample_generators(seed, image_identity(digit[None]), samples)]
    settings = dict(VARIANTS[solver_name][variant])
    spread = settings.pop("hmc_spread", None)
    solver = get_solver(solver_name, "fast", **settings)
    t0 = time.time()
    with hmc_spread(spread):
        out = solver.run(prior, Problem(op, problem.noise, y), generator=streams).clamp(-1, 1)
    seconds = time.time() - t0
    out = out.reshape(x.shape[0], samples, *x.shape[1:]).transpose(0, 1)  # (samples, digits, 1, H, W)
    where = op.missing.expand_as(x) if task == "inpaint" else None
    z = coverage(out, x[None], None if where is None else where[None], {0.9: 1.6449})[0.9]
    pred = coverage(out, x[None], None if where is None else where[None], predictive_levels(samples, {0.9: 0}))[0.9]
    return {"solver": solver_name, "task": task, "inner_step": variant, "digits": int(x.shape[0]),
            "samples": samples, "psnr_first": psnr(out[0], x), "psnr_mean": psnr(out.mean(0), x),
            "coverage_90": z, "predictive_90": pred, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--tasks", default="inpaint,sr")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = held_out_digits(args.digits)
    rows = []
    print(f"exact sampler, mean +- z std at 90 %: {exact_share(args.samples, 0.9) * 100:.1f} % with {args.samples}")
    print("| solver | task | inner step | PSNR sample 1 | PSNR mean of N | 90 % (predictive) | s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.solvers.split(","):
        fixture = FIXTURES / SOLVERS[name]
        prior = load_prior(str(fixture)) if name == "latent-daps" else load_model_dir(fixture)
        for task in args.tasks.split(","):
            for variant in VARIANTS[name]:
                row = measure(name, prior, task, variant, x, args.samples, args.seed)
                rows.append(row)
                print(f"| {name} | {task} | {variant} | {row['psnr_first']:.2f} | {row['psnr_mean']:.2f} | "
                      f"{row['coverage_90'] * 100:.1f} ({row['predictive_90'] * 100:.1f}) | {row['seconds']:.0f} |",
                      flush=True)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
