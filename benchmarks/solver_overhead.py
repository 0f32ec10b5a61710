"""Is the solver's own work noise next to the network? overhead = solver time / (network calls x time of one call).

    .venv/bin/python benchmarks/solver_overhead.py
    .venv/bin/python benchmarks/solver_overhead.py --operators inpaint,gaussian_blur --paper-steps 20

A small randomly initialised UNet2DModel (3 x 64 x 64, channels 32/64/64, one attention level; ~1.7 M parameters)
on the CPU, one image. The unit cost of a call is measured the way each solver uses the network: a forward pass
(DAPS: no gradient through the network) or a forward + backward pass to the input (DPS, MCG). The target is
overhead <= 1.15.

Paper presets are long (1000 calls), so they are timed on their first ``--paper-steps`` steps (the loop is
stopped from the progress callback; the per-step work is the same throughout). Times are the process's CPU time
with one torch thread (``time.process_time``): on a shared machine wall time mostly measures the neighbours, CPU
time of a single-threaded process measures our work. Unit costs are the minimum over ``--repeats`` calls, run
times the minimum over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch
from diffusers import DDPMScheduler, UNet2DModel
from network_cost import call_cost

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior
from diffrestore.run.runtime import make_generator
from diffrestore.solvers import SOLVER_NAMES, get_solver

SHAPE = (3, 64, 64)
OPERATORS: dict[str, dict] = {
    "inpaint": {"fraction": 0.7},
    "sr": {"factor": 4},
    "gaussian_blur": {},  # the papers' 61 x 61, sigma 3 kernel
    "phase_retrieval": {},
}


class _Stop(Exception):
    pass


def make_prior() -> DiffusersPixelPrior:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )
    return DiffusersPixelPrior(unet, DDPMScheduler(num_train_timesteps=1000), native_size=None)


def unit_cost(prior: DiffusersPixelPrior, backward: bool, repeats: int) -> float:
    return call_cost(prior.denoise, torch.randn(1, *SHAPE, generator=make_generator(0)), backward=backward,
                     repeats=repeats)


def timed_run(solver, prior, problem, max_steps: int | None) -> tuple[float, int]:
    """Wall time and steps done, stopping after max_steps steps (None: the whole run)."""
    done = [0]

    def progress(step: int, total: int, what: str) -> None:
        done[0] = step
        if max_steps is not None and step >= max_steps:
            raise _Stop

    start = time.process_time()
    with contextlib.suppress(_Stop):
        solver.run(prior, problem, generator=make_generator(1), progress=progress)
    return time.process_time() - start, done[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solvers", default=",".join(SOLVER_NAMES))
    parser.add_argument("--presets", default="fast,paper")
    parser.add_argument("--operators", default="inpaint,gaussian_blur")
    parser.add_argument("--paper-steps", type=int, default=20, help="steps timed for the paper presets")
    parser.add_argument("--fast-steps", type=int, default=None, help="truncate the fast presets too")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = make_prior()
    cost = {False: unit_cost(prior, False, args.repeats), True: unit_cost(prior, True, args.repeats)}
    print(f"# solver overhead: UNet {sum(p.numel() for p in prior.unet.parameters()) / 1e6:.2f} M params, {SHAPE}, CPU")
    print(f"# one call: forward {cost[False] * 1e3:.1f} ms, forward + backward {cost[True] * 1e3:.1f} ms")
    print(f"{'operator':14s} {'solver':6s} {'preset':6s} {'steps':>11s} {'calls':>6s} {'cpu s':>7s} {'overhead':>8s}")
    for op_name in args.operators.split(","):
        operator = build_operator(op_name, SHAPE, generator=make_generator(2), **OPERATORS.get(op_name, {}))
        noise = GaussianNoise(0.025)
        x = torch.rand(1, *SHAPE, generator=make_generator(3)) * 2 - 1
        with torch.no_grad():
            problem = Problem(operator, noise, noise.sample(operator(x), make_generator(4)))
        for solver_name in args.solvers.split(","):
            for preset in args.presets.split(","):
                solver = get_solver(solver_name, preset)
                total_steps = int(solver.config.steps)
                limit = args.paper_steps if preset == "paper" else args.fast_steps
                calls_per_step = solver.network_calls() // total_steps
                runs = [timed_run(solver, prior, problem, limit) for _ in range(args.runs)]
                wall = min(r[0] for r in runs)
                steps = runs[0][1]
                calls = steps * calls_per_step
                ratio = wall / (calls * cost[solver.needs_network_gradient()])
                print(
                    f"{op_name:14s} {solver_name:6s} {preset:6s} {f'{steps}/{total_steps}':>11s} {calls:6d} "
                    f"{wall:7.2f} {ratio:8.3f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
