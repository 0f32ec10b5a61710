"""Do the `-n N` uncertainty maps mean anything? Coverage of DAPS's per-pixel intervals on the held-out crops.

    python benchmarks/calibration.py [--images astronaut,coffee] [--samples 8] [--tasks all] [--json FILE]
        [--steps N] [--set KEY=VALUE ...]       # DAPS fast with the CLI's --steps / --set on top
    python benchmarks/reliability_diagram.py FILE... -o docs/images/reliability.png   # the picture

For every crop and task (default_prior.py's five, simulated as there), N posterior samples (the CLI's per-sample
streams); per pixel and channel the interval mean +- z_p std of the samples (a Gaussian interval: 8 samples are
too few for empirical 5 % quantiles); the share of pixels whose truth lies inside, at nominal levels 50 / 80 / 90 /
95 %. A calibrated sampler covers about the nominal share; less means the spread is too narrow (over-confident).
Pixels the measurement pins down (known pixels when inpainting) are counted apart from the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import NormalDist

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_prior import HELD_OUT, TASKS, held_out_crop

from diffrestore.operators import GaussianNoise, Problem, build_operator, simulate
from diffrestore.priors.builtin import default_prior
from diffrestore.run.runtime import image_identity, make_generator, sample_generators
from diffrestore.run.solver_settings import parse_pairs, typed_settings
from diffrestore.solvers import get_solver

LEVELS = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}
#: the nominal levels a reliability diagram plots (--json): z = the standard normal's (1 + level) / 2 quantile
DIAGRAM_LEVELS = {p / 20: NormalDist().inv_cdf(0.5 + p / 40) for p in range(1, 20)}


def coverage(samples: torch.Tensor, x: torch.Tensor, where: torch.Tensor | None = None,
             levels: dict[float, float] = LEVELS) -> dict[float, float]:
    mean, std = samples.mean(0, keepdim=True), samples.std(0, keepdim=True)
    err = (x - mean).abs()
    out = {}
    for level, z in levels.items():
        inside = (err <= z * std).float()
        out[level] = float(inside[where].mean() if where is not None else inside.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=",".join(HELD_OUT))
    parser.add_argument("--tasks", default="all")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every row, at 19 nominal levels 5 %% .. 95 %%, to this JSON file")
    parser.add_argument("--steps", type=int, default=None, help="DAPS annealing steps (default: the fast preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a DAPS hyper-parameter as the CLI's --set, e.g. --set inner_spread=1 (repeatable)")
    args = parser.parse_args()
    settings = typed_settings("daps", parse_pairs(args.set))
    rows = []
    prior = default_prior()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    print(f"| image | task | pixels | {' | '.join(f'{int(p * 100)} %' for p in LEVELS)} |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    for name in args.images.split(","):
        i = HELD_OUT.index(name)
        x = held_out_crop(name)
        for task in tasks:
            op_name, params, sigma = TASKS[task]
            gen = make_generator(args.seed + i)
            op = build_operator(op_name, tuple(x.shape[1:]), generator=gen, **params)
            problem = simulate(op, GaussianNoise(sigma), x, gen)
            batch = Problem(op, problem.noise, problem.y.expand(args.samples, *problem.y.shape[1:]).contiguous())
            streams = sample_generators(args.seed, image_identity(x), args.samples)
            solver = get_solver("daps", "fast", steps=args.steps, **settings)
            samples = solver.run(prior, batch, generator=streams).clamp(-1, 1)
            groups = {"all": None}
            if op_name == "inpaint":
                missing = op.missing.expand_as(x)
                groups = {"missing": missing, "known": ~missing}
            for label, where in groups.items():
                cov = coverage(samples, x, where)
                print(f"| {name} | {task} | {label} | {' | '.join(f'{cov[p] * 100:.1f}' for p in LEVELS)} |",
                      flush=True)
                diagram = coverage(samples, x, where, DIAGRAM_LEVELS)
                rows.append({"image": name, "task": task, "pixels": label, "samples": args.samples,
                             "settings": {"steps": args.steps, **settings},
                             "coverage": {f"{level:.2f}": share for level, share in diagram.items()}})
                if args.json:  # after every row: a long run stopped early keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
