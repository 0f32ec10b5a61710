"""What MCG's paper preset on sparse-view CT costs with the paper's network: NCSN++ (MCG's AAPM 256 config,
61.4M parameters) at RANDOM initialisation (the checkpoint is not downloaded here; time and memory do not depend on
the weights), one 256 x 256 slice, the official CT loop (solvers/mcg_ct.py).

    python benchmarks/ct_mcg_cost.py [--views 30] [--steps 1,2]

Runs the loop with ``ct_steps`` = each of ``--steps`` and reports the process's CPU seconds (one torch thread: on a
shared machine wall time mostly measures the neighbours) and its peak resident memory; the cost of one
predictor-corrector step is the difference between the two runs, and the paper preset's 2000 steps are
extrapolated from it (the setup, the 180-view operator and the first state, is the rest).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=30)
    parser.add_argument("--steps", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffrestore.operators import ParallelBeamCT, simulate
    from diffrestore.operators.noise import GaussianNoise
    from diffrestore.priors.ncsnpp import AAPM_256, NCSNpp, NCSNppPrior
    from diffrestore.solvers import get_solver

    torch.manual_seed(0)
    net = NCSNpp(AAPM_256)
    prior = NCSNppPrior(net.eval(), name="ncsnpp-random")
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(1, 1, 256, 256) * 2 - 1
    op = ParallelBeamCT((1, 256, 256), views=args.views)
    problem = simulate(op, GaussianNoise(0.05), x, torch.Generator().manual_seed(0))
    seconds = {}
    for steps in (int(s) for s in args.steps.split(",")):
        solver = get_solver("mcg", "paper", ct_steps=steps)
        start = time.process_time()
        solver.run(prior, problem, generator=torch.Generator().manual_seed(0))
        seconds[steps] = time.process_time() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ct_steps {steps}: {seconds[steps]:.1f} CPU s, peak RSS {peak:.0f} MiB", flush=True)
    low, high = min(seconds), max(seconds)
    per_step = (seconds[high] - seconds[low]) / max(high - low, 1)
    setup = seconds[low] - low * per_step
    print(f"NCSN++ {params:,} parameters, {args.views} views, {args.threads} thread(s): {per_step:.1f} CPU s per "
          f"predictor-corrector step; 2000 steps ~ {(setup + 2000 * per_step) / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
