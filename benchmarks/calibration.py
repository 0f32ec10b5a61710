"""Do the `-n N` uncertainty maps mean anything? Coverage of DAPS's per-pixel intervals on the held-out crops.

    python benchmarks/calibration.py [--images astronaut,coffee] [--samples 8] [--tasks all] [--json FILE]
        [--steps N] [--set KEY=VALUE ...]       # DAPS fast with the CLI's --steps / --set on top
    python benchmarks/calibration.py --samples 4 --set inner_spread=0 --json mean.json     # the inner steps
    python benchmarks/calibration.py --samples 4 --set inner_spread=1 --json draw.json     #   of -n N
    python benchmarks/calibration.py --samples 4 --set r_t=tweedie --set inner_spread=1 --json tweedie.json
    python benchmarks/calibration.py --summary mean.json draw.json tweedie.json            # their table
    python benchmarks/reliability_diagram.py FILE... -o docs/images/reliability.png   # the picture

For every crop and task (default_prior.py's five, simulated as there), N posterior samples (the CLI's per-sample
streams); per pixel and channel the interval mean +- z_p std of the samples (a Gaussian interval: 8 samples are
too few for empirical 5 % quantiles); the share of pixels whose truth lies inside, at nominal levels 50 / 80 / 90 /
95 %. A calibrated sampler covers about the nominal share; less means the spread is too narrow (over-confident).
Pixels the measurement pins down (known pixels when inpainting) are counted apart from the others.

With few samples the sample std is itself noisy, so even an exact sampler's mean +- z std intervals cover less
than nominal: for a Gaussian posterior (truth - mean) / std follows sqrt(1 + 1/N) t_(N-1), and the 90 % interval
covers 76 % at N = 4, 83 % at N = 8 (``exact_share``). Each row therefore also holds the predictive interval's
coverage, mean +- sqrt(1 + 1/N) t_(N-1) std ("predictive"), whose target is the nominal level itself whatever N.
Each image and task also gets the PSNR ([0, 1] scale, as default_prior.py) of sample 1 and of the mean of the N
(what the CLI writes with -n N), and the seconds the N samples took.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import NormalDist

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_prior import HELD_OUT, TASKS, _scores, held_out_crop

from diffrestore.operators import GaussianNoise, Problem, build_operator, simulate
from diffrestore.priors.builtin import default_prior
from diffrestore.run.runtime import image_identity, make_generator, sample_generators
from diffrestore.run.solver_settings import parse_pairs, typed_settings
from diffrestore.solvers import get_solver

LEVELS = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}
#: the nominal levels a reliability diagram plots (--json): z = the standard normal's (1 + level) / 2 quantile
DIAGRAM_LEVELS = {p / 20: NormalDist().inv_cdf(0.5 + p / 40) for p in range(1, 20)}


def predictive_levels(samples: int, levels: dict[float, float] = LEVELS) -> dict[float, float]:
    """level -> the multiple of the N samples' std whose interval around their mean holds a new draw from the
    same Gaussian with that probability: sqrt(1 + 1/N) times the t quantile with N - 1 degrees of freedom."""
    scale = (1.0 + 1.0 / samples) ** 0.5
    return {level: scale * float(stats.t.ppf(0.5 + level / 2, samples - 1)) for level in levels}


def exact_share(samples: int, level: float) -> float:
    """The share an exact sampler's mean +- z std interval (z the normal quantile of ``level``) covers with N
    samples: P(|t_(N-1)| <= z / sqrt(1 + 1/N))."""
    z = float(NormalDist().inv_cdf(0.5 + level / 2)) / (1.0 + 1.0 / samples) ** 0.5
    return float(2.0 * stats.t.cdf(z, samples - 1) - 1.0)


def coverage(samples: torch.Tensor, x: torch.Tensor, where: torch.Tensor | None = None,
             levels: dict[float, float] = LEVELS) -> dict[float, float]:
    """level -> the share of pixels (of ``where``) whose truth lies within levels[level] std of the samples' mean."""
    mean, std = samples.mean(0, keepdim=True), samples.std(0, keepdim=True)
    err = (x - mean).abs()
    out = {}
    for level, z in levels.items():
        inside = (err <= z * std).float()
        out[level] = float(inside[where].mean() if where is not None else inside.mean())
    return out


def measure(name: str, task: str, args: argparse.Namespace, settings: dict, prior) -> list[dict]:
    """The rows of one crop and task: N samples as the CLI draws them, their coverage per pixel group, the PSNR of
    sample 1 and of their mean."""
    i = HELD_OUT.index(name)
    x = held_out_crop(name)
    op_name, params, sigma = TASKS[task]
    gen = make_generator(args.seed + i)
    op = build_operator(op_name, tuple(x.shape[1:]), generator=gen, **params)
    problem = simulate(op, GaussianNoise(sigma), x, gen)
    batch = Problem(op, problem.noise, problem.y.expand(args.samples, *problem.y.shape[1:]).contiguous())
    streams = sample_generators(args.seed, image_identity(x), args.samples)
    solver = get_solver("daps", "fast", steps=args.steps, **settings)
    t0 = time.time()
    samples = solver.run(prior, batch, generator=streams).clamp(-1, 1)
    seconds = time.time() - t0
    scores = {"psnr_first": _scores(samples[:1], x)[0], "psnr_mean": _scores(samples.mean(0, keepdim=True), x)[0]}
    groups = {"all": None}
    if op_name == "inpaint":
        missing = op.missing.expand_as(x)
        groups = {"missing": missing, "known": ~missing}
    rows = []
    for label, where in groups.items():
        diagram = coverage(samples, x, where, DIAGRAM_LEVELS)
        predictive = coverage(samples, x, where, predictive_levels(args.samples, DIAGRAM_LEVELS))
        rows.append({"image": name, "task": task, "pixels": label, "samples": args.samples, "label": args.label,
                     "settings": {"steps": args.steps, **settings}, "seconds": seconds, **scores,
                     "coverage": {f"{level:.2f}": share for level, share in diagram.items()},
                     "predictive": {f"{level:.2f}": share for level, share in predictive.items()}})
    return rows


def _cell(rows: list[dict]) -> str:
    """PSNR of the mean of N / of sample 1, 90 % coverage (predictive), seconds: averaged over ``rows``."""
    if not rows:
        return ""
    n = len(rows)
    mean = {key: sum(r[key] for r in rows) / n for key in ("psnr_mean", "psnr_first", "seconds")}
    z90 = sum(r["coverage"]["0.90"] for r in rows) / n * 100
    pred90 = sum(r["predictive"]["0.90"] for r in rows) / n * 100
    return f"{mean['psnr_mean']:.2f} / {mean['psnr_first']:.2f} / {z90:.1f} ({pred90:.1f}) / {mean['seconds']:.0f}"


def summary(paths: list[Path]) -> None:
    """Per image and task, each column's PSNR of the mean of N and of sample 1, 90 % coverage (inpainting: the
    missing pixels) and seconds; then the averages per task over the crops every column holds. One column per
    ``--label`` (the file's name for rows without one): files of one label, e.g. runs split by crop, join."""
    unique: dict[str, dict[tuple[str, str], dict]] = {}  # a crop and task measured twice counts once (the last)
    for path in paths:
        for row in json.loads(path.read_text()):
            if row["pixels"] != "known":
                unique.setdefault(row.get("label") or path.stem, {})[(row["image"], row["task"])] = row
    runs = {label: list(rows.values()) for label, rows in unique.items()}
    names = list(runs)
    heading = "PSNR mean of N / sample 1 / 90 % (predictive) / s"
    print("| image | task | " + " | ".join(f"{n}: {heading}" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    keys = sorted({(r["image"], r["task"]) for rows in runs.values() for r in rows},
                  key=lambda k: (list(TASKS).index(k[1]), HELD_OUT.index(k[0])))
    for image, task in keys:
        cells = [_cell([r for r in runs[n] if (r["image"], r["task"]) == (image, task)]) for n in names]
        print(f"| {image} | {task} | " + " | ".join(cells) + " |")
    print()
    print("| task (crops in every file) | " + " | ".join(f"{n}: {heading}" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for task in TASKS:
        common = set.intersection(*({r["image"] for r in runs[n] if r["task"] == task} for n in names))
        if not common:
            continue
        cells = [_cell([r for r in runs[n] if r["task"] == task and r["image"] in common]) for n in names]
        print(f"| {task} ({len(common)}) | " + " | ".join(cells) + " |")


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
    parser.add_argument("--label", default="", help="a name for these rows in the JSON (e.g. the inner step)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--summary", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table of these --json files (one column each) and stop")
    args = parser.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.samples < 2:
        parser.error("--samples must be at least 2: one sample has no spread")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = typed_settings("daps", parse_pairs(args.set))
    rows: list[dict] = []
    prior = default_prior()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    print(f"exact sampler, mean +- z std at 90 %: {exact_share(args.samples, 0.9) * 100:.1f} % with {args.samples}")
    print(f"| image | task | pixels | {' | '.join(f'{int(p * 100)} %' for p in LEVELS)} | 90 % pred. | "
          "PSNR mean | PSNR 1 | s |")
    print("|---|---|---|" + "---|" * (len(LEVELS) + 4))
    for name in args.images.split(","):
        for task in tasks:
            for row in measure(name, task, args, settings, prior):
                cov = {float(k): v for k, v in row["coverage"].items()}
                print(f"| {name} | {task} | {row['pixels']} | {' | '.join(f'{cov[p] * 100:.1f}' for p in LEVELS)} | "
                      f"{row['predictive']['0.90'] * 100:.1f} | {row['psnr_mean']:.2f} | {row['psnr_first']:.2f} | "
                      f"{row['seconds']:.0f} |", flush=True)
                rows.append(row)
            if args.json:  # after every task: a long run stopped early keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
