"""Spatially varying blur: DAPS with the true kernel grid against DAPS with one kernel for the whole image and the
classical restorations, on the held-out crops.

    python benchmarks/varying_blur.py [--images astronaut,coffee] [--field shake|defocus] [--noise 0.01]

Each held-out 256 px crop is blurred by a field drawn once from seed 0 (`deblur --blur shake --simulate`: a 4 x 4
grid of 31 px streaks of a shake with a roll; or defocus, 15 px disks growing across the frame), plus Gaussian
noise. Restorations, PSNR / SSIM against the clean crop ([0, 1], data range 1):

- blurred input: y itself;
- Wiener, one kernel: the grid's mean kernel, balance tuned on the ground truth (what a tool with one kernel does);
- Richardson-Lucy, true field: multiplicative updates with the varying operator and its exact adjoint, the
  iteration count tuned on the ground truth;
- DAPS, one kernel: the default prior and the `fast` preset with the grid's mean kernel (`deblur --kernel`);
- DAPS, true field: the same with the grid (`deblur --kernel-grid`).
Seconds are process CPU time of each restoration (one torch thread).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_prior import HELD_OUT, _best_of, _scores, _to_numpy01, held_out_crop

from diffrestore import tasks
from diffrestore.priors.builtin import default_prior
from diffrestore.run import engine
from diffrestore.solvers import get_solver


def richardson_lucy(operator, y: torch.Tensor, iterations: list[int]) -> list[tuple[int, torch.Tensor]]:
    """Richardson-Lucy in [0, 1] intensities (x <- x A^T(y / A x) / A^T 1), returned at each listed count."""
    y01 = ((y + 1) / 2).clamp_min(1e-4)
    norm = operator.adjoint(torch.ones_like(y01)).clamp_min(1e-6)
    x = torch.full_like(y01, float(y01.mean()))
    out = []
    for k in range(1, max(iterations) + 1):
        x = x * operator.adjoint(y01 / operator(x).clamp_min(1e-6)) / norm
        if k in iterations:
            out.append((k, x.clamp(0, 1) * 2 - 1))
    return out


def wiener_one_kernel(y: torch.Tensor, kernel: torch.Tensor, x: torch.Tensor):
    from skimage.restoration import wiener

    y01 = _to_numpy01(y)
    cands = []
    for balance in (0.003, 0.01, 0.03, 0.1, 0.3):
        out = np.stack([wiener(y01[..., c], kernel.double().numpy(), balance, clip=True) for c in range(3)], -1)
        cands.append((f"balance {balance}", torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1)[None] * 2 - 1))
    return _best_of(cands, x)


def _daps(prior, task, y):
    start = time.process_time()
    [result] = engine.restore_batch(prior, get_solver("daps", "fast"), task, [y], mask=None, num_samples=1, seed=0)
    return result, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=",".join(HELD_OUT))
    parser.add_argument("--field", default="shake", choices=("shake", "defocus"))
    parser.add_argument("--noise", type=float, default=0.01, help="Gaussian noise std on [0, 1]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = default_prior()
    print("| image | blurred | Wiener, one kernel | RL, true field | DAPS, one kernel | DAPS, true field |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.images.split(","):
            x = held_out_crop(name)
            simulated = tasks.resolve_task("deblur", {"blur": args.field, "noise_sigma": args.noise}, simulate=True)
            result, t_true = _daps(prior, simulated, x)
            y = result.measurement.to(torch.float32)
            operator = simulated.operator(tuple(x.shape[1:]), seed=0)
            grid_path, kernel_path = Path(folder) / f"{name}-grid.npy", Path(folder) / f"{name}-mean.npy"
            kernels = operator.kernels.reshape(*operator.grid, *operator.kernels.shape[-2:])
            np.save(grid_path, kernels.numpy())
            np.save(kernel_path, operator.kernels.mean(dim=0).numpy())
            one_kernel = tasks.resolve_task("deblur", {"kernel": kernel_path, "noise_sigma": args.noise})
            uniform, t_uniform = _daps(prior, one_kernel, y)
            label, wiener_score, _ = wiener_one_kernel(y, operator.kernels.mean(dim=0), x)
            start = time.process_time()
            with torch.no_grad():
                rl_label, rl_score, _ = _best_of(
                    [(f"{k} iterations", img) for k, img in richardson_lucy(operator, y, [5, 10, 20, 40, 80])], x)
            t_rl = time.process_time() - start

            def cell(score, seconds=None, note=""):
                extra = f" ({note})" if note else ""
                timing = f", {seconds:.0f} s" if seconds is not None else ""
                return f"{score[0]:.2f} / {score[1]:.3f}{extra}{timing}"

            print(f"| {name} | {cell(_scores(y, x))} | {cell(wiener_score, note=label)} | "
                  f"{cell(rl_score, t_rl, rl_label)} | {cell(_scores(uniform.image, x), t_uniform)} | "
                  f"{cell(_scores(result.image, x), t_true)} |", flush=True)


if __name__ == "__main__":
    main()
