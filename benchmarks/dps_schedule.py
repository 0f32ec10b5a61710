"""DPS's noise schedule on a prior whose sigma_max is below the DDPM table's top (the default prior: 80 against
157): the table clamped at sigma_max (several steps spent at sigma_max) against the table respaced over the noise
levels the prior covers (what ``solvers.dps`` does). Prints one row per image, task and schedule: the PSNR of one
sample per seed, the network calls of the batch of seeds and how many of them sit at sigma_max. MCG shares the schedule.

    python benchmarks/dps_schedule.py                       # astronaut and coffee at 64 px, 3 seeds
    python benchmarks/dps_schedule.py --size 128 --seeds 0,1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from diffrestore.metrics import psnr
from diffrestore.operators import GaussianNoise, build_operator
from diffrestore.operators.noise import simulate
from diffrestore.priors.load import load_prior
from diffrestore.solvers.base import ddpm_sigmas
from diffrestore.solvers.dps import DPS


class ClampedDPS(DPS):
    """The schedule before respacing: the paper's table with every sigma above the prior's range clamped."""

    def sigma_schedule(self, prior) -> list[float]:
        return ddpm_sigmas(int(self.config.steps)).clamp(max=prior.sigma_max).tolist()


class CountedPrior:
    """The prior, counting its calls and those at sigma_max."""

    def __init__(self, prior) -> None:
        self.inner, self.calls, self.at_top = prior, 0, 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def denoise(self, x, sigma, *args):
        self.calls += 1
        self.at_top += int(float(sigma) >= self.inner.sigma_max - 1e-6)
        return self.inner.denoise(x, sigma, *args)


def centre_crop(name: str, size: int) -> torch.Tensor:
    image = Image.fromarray(getattr(data, name)())
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    image = image.resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="astronaut,coffee")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--noise", type=float, default=0.025, help="Gaussian noise std on [0, 1]")
    parser.add_argument("--steps", type=int, default=None, help="DPS steps (default: the fast preset's 100)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    prior = load_prior("builtin")
    size, hole = args.size, args.size * 3 // 8
    print("| image | task | schedule | PSNR per seed | mean | calls (at sigma_max) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in args.images.split(","):
        x = centre_crop(name, size)
        operators = {"inpaint box": build_operator("inpaint", (3, size, size), box=((size - hole) // 2,) * 2
                                                  + (hole, hole)),
                     "sr x2": build_operator("sr", (3, size, size), factor=2)}
        for task, operator in operators.items():
            problem = simulate(operator, GaussianNoise(args.noise), x, torch.Generator().manual_seed(7))
            problem.y = problem.y.repeat(len(seeds), 1, 1, 1)
            for label, solver_class in (("clamped", ClampedDPS), ("respaced", DPS)):
                counted = CountedPrior(prior)
                t0 = time.perf_counter()
                overrides = {"steps": args.steps} if args.steps else {}
                out = solver_class.from_preset("fast", **overrides).run(
                    counted, problem, generator=[torch.Generator().manual_seed(s) for s in seeds])
                scores = psnr(out, x.expand_as(out)).tolist()
                print(f"| {name} | {task} | {label} | {' '.join(f'{v:.2f}' for v in scores)} | "
                      f"{np.mean(scores):.2f} | {counted.calls} ({counted.at_top}) | "
                      f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
