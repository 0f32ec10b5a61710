"""Real-input deblurring with DAPS's Gram solve capped at a fixed number of CG steps, against today's rule (CG to
the accuracy the annealing step needs, ``solvers.inner.solve_accuracy``, within 50 steps).

    python benchmarks/deblur_cg_budget.py [--kernels motion,kernel15] [--budgets 1,2,4] [--images astronaut,...]

Each held-out 256 px crop, saved as 8-bit, blurred by the kernel (reflect border) and saved as 8-bit again, the
noise estimated from that file; one DAPS fast sample, 20 steps, seed 0, one torch thread. Prints PSNR against the
clean crop and process CPU seconds per budget ("rule" = today's). The question it answers: can a cheap fixed
budget replace the solve to accuracy on non-separable blurs with a border (docs/benchmarks.md)?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_prior import HELD_OUT, _scores, held_out_crop
from real_inputs import _as_8bit
from task_overhead import write_kernel

from diffrestore import tasks
from diffrestore.operators.blur import BlurOperator
from diffrestore.priors.builtin import default_prior
from diffrestore.run import engine
from diffrestore.solvers import get_solver
from diffrestore.tasks.noise_estimate import estimate_noise_sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", default="motion,kernel15", help="motion (61 px) and/or kernel15 (a 15 px file)")
    parser.add_argument("--budgets", default="1,2,4", help="CG steps per solve, besides today's rule")
    parser.add_argument("--images", default=",".join(HELD_OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = default_prior()
    rule_budget = BlurOperator.gram_cg_max_iter
    budgets = [None, *(int(b) for b in args.budgets.split(","))]
    print("| kernel | image | " + " | ".join("rule" if b is None else f"{b} CG" for b in budgets) + " |")
    print("|---|---|" + "---|" * len(budgets))
    with tempfile.TemporaryDirectory() as folder:
        kernel_file = str(write_kernel(Path(folder) / "kernel15.npy"))
        for kernel in args.kernels.split(","):
            options = {"blur": "motion", "kernel_size": 61} if kernel == "motion" else {"kernel": kernel_file}
            for name in args.images.split(","):
                x = _as_8bit(held_out_crop(name))
                operator = tasks.resolve_task("deblur", dict(options)).operator(tuple(x.shape[1:]), seed=0)
                with torch.no_grad():
                    y = _as_8bit(operator(x))
                task = tasks.resolve_task("deblur", {"noise_sigma": estimate_noise_sigma(y), **options})
                cells = []
                for budget in budgets:
                    BlurOperator.gram_cg_max_iter = rule_budget if budget is None else budget
                    start = time.process_time()
                    [result] = engine.restore_batch(prior, get_solver("daps", "fast", steps=20), task, [y],
                                                    mask=None, num_samples=1, seed=0)
                    seconds = time.process_time() - start
                    cells.append(f"{_scores(result.samples[:1], x)[0]:.2f} / {seconds:.1f}")
                BlurOperator.gram_cg_max_iter = rule_budget
                print(f"| {kernel} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
