"""Where DAPS's time goes on a real-size image: network calls against the solver's own work, measured in one run.

    python benchmarks/daps_speed.py [--size 512] [--task inpaint|sr4|blur]

Default prior, one image (astronaut, resized crop of --size), DAPS fast preset with its exact inner step (the
Gaussian inner target's mean) and with the paper's Langevin loop (50 steps drawing the target). First times 20
network calls alone (the same shapes, sigmas from 100 to 0.01), then each solver run; prints seconds, seconds per
call, and total / network time.
"""

from __future__ import annotations

import argparse
import time

import torch

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.builtin import default_prior
from diffrestore.run.runtime import make_generator
from diffrestore.solvers import get_solver

TASKS = {
    "inpaint": ("inpaint", {"box": (150, 200, 100, 150)}),
    "sr4": ("sr", {"factor": 4}),
    "blur": ("gaussian_blur", {"kernel_size": 61, "sigma": 3.0}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--task", default="inpaint", choices=sorted(TASKS))
    parser.add_argument("--inner", default="exact,langevin")
    args = parser.parse_args()
    from skimage import data

    s = args.size
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
    x = torch.nn.functional.interpolate(photo, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    name, params = TASKS[args.task]
    if name == "inpaint":
        top, left, h, w = params["box"]
        params = {"box": (top * s // 512, left * s // 512, h * s // 512, w * s // 512)}
    op = build_operator(name, (3, s, s), generator=make_generator(1), **params)
    noise = GaussianNoise(0.025)
    y = noise.sample(op(x), make_generator(2))
    prior = default_prior()
    with torch.no_grad():
        prior.denoise(x, 1.0)  # warm-up
        t0 = time.perf_counter()
        calls = 20
        for sigma in torch.logspace(2, -2, calls).tolist():
            prior.denoise(x + sigma * torch.randn(x.shape, generator=make_generator(3)), sigma)
        per_call = (time.perf_counter() - t0) / calls
    print(f"{args.task} {s}x{s}: one network call {per_call * 1000:.0f} ms ({calls} timed)")
    for inner_name in args.inner.split(","):
        drawn = {"inner_spread": 1.0} if inner_name in ("langevin", "hmc") else {}  # the paper's draw
        solver = get_solver("daps", "fast", inner=inner_name, **drawn)
        t0 = time.perf_counter()
        solver.run(prior, Problem(op, noise, y), generator=make_generator(4))
        total = time.perf_counter() - t0
        network = solver.network_calls() * per_call
        print(f"  inner={inner_name:8s} total {total:6.1f} s, network {network:5.1f} s ({solver.network_calls()} calls)"
              f" -> total / network {total / network:.2f}")


if __name__ == "__main__":
    main()
