"""Sparse-view CT quality: the shipped CT prior (``ct-phantom``) with DAPS, DPS and MCG against FBP, SART and TV.

Problems are the ``ct`` task's own (``diffrestore ct X --simulate``): a CT-scale slice u, tensors x = 2 u - 1, the
sinogram of ``--views`` equally spaced views, the task's default Gaussian noise (``--noise-sigma 0.05``) or Beer-
Lambert photon counts (``--photons``). Scores are PSNR and SSIM on the CT scale [0, 1] (restorations clipped to it,
as the command writes them), mean over slices, and seconds per slice (one thread, this machine).

    python benchmarks/ct_quality.py table  [--size 128 --count 4 --views 30,18 --photons 1e5]
    python benchmarks/ct_quality.py tune-tv    [--size 128 --count 4]     # TV's weight on TRAINING phantoms
    python benchmarks/ct_quality.py tune-daps  [--size 128 --count 2]     # DAPS / DPS settings, TRAINING phantoms
    python benchmarks/ct_quality.py tune-dps   [--size 128 --count 2]

Held-out phantoms come from ``ct_phantoms.held_out`` (seeds training never uses); the out-of-distribution row is
pydicom's CT_small.dcm (a real 128 x 128 slice), which the prior has never seen anything like.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ct_phantoms

from diffrestore.operators import simulate
from diffrestore.tasks import resolve_task

CLASSICAL = ("fbp", "sart", "tv")
DIFFUSION = ("daps", "dps", "mcg")
#: TV's weight for the table: the best of 1e-4 / 3e-4 / 1e-3 on training phantoms (64 px, 30 views, default noise;
#: docs/ct.md), used for photon noise too
TV_WEIGHT = {"gaussian": 3e-4, "photons": 3e-4}


def ct_problem(unit: np.ndarray | torch.Tensor, views: int, photons: float | None = None, seed: int = 0):
    """The ``ct`` task's simulated problem for CT-scale slices ``unit`` ((N, H, W) or (H, W)), and x = 2 u - 1."""
    u = torch.as_tensor(np.asarray(unit, dtype=np.float32))
    u = u[None] if u.dim() == 2 else u
    x = (2 * u - 1)[:, None]
    values: dict[str, Any] = {"views": views}
    if photons is not None:
        values["photons"] = photons
    task = resolve_task("ct", values, simulate=True)
    op = task.operator(tuple(x.shape[1:]), seed=0)
    return simulate(op, task.noise_model(), x, torch.Generator().manual_seed(seed)), x


def solve(method: str, prior: Any, problem: Any, *, seed: int = 0, preset: str = "fast",
          **overrides: Any) -> torch.Tensor:
    """One restoration (``solvers.get_solver``) of the whole batch, clipped to [-1, 1] as the command writes."""
    from diffrestore.solvers import get_solver

    solver = get_solver(method, preset, **overrides)
    if method in CLASSICAL:
        prior = solver.stand_in_prior("cpu")
    out = solver.run(prior, problem, generator=torch.Generator().manual_seed(seed))
    return out.clamp(-1.0, 1.0)


def scores(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM over the batch on the CT scale [0, 1]."""
    from diffrestore.metrics.pixel import psnr, ssim

    return float(psnr(x_hat, x).mean()), float(ssim(x_hat, x).mean())


def load_prior(model: str | None = None) -> Any:
    """The shipped CT prior (or a model folder)."""
    from diffrestore.priors.builtin import load_model_dir
    from diffrestore.registry import load_registry

    path = Path(model) if model else load_registry().get("ct-phantom").builtin_dir()
    return load_model_dir(path)


def random_prior(like: Any, seed: int = 0) -> Any:
    """The same network as ``like`` at random initialisation (for the untrained-prior check)."""
    from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet

    torch.manual_seed(seed)
    net = DenoiserUNet(like.net.config)
    return BuiltinPrior(net.eval(), device="cpu", name="random")


def dicom_slice(size: int | None = None) -> np.ndarray:
    """pydicom's CT_small.dcm on the CT scale (128 x 128), centre-cropped to ``size`` if given."""
    from pydicom.data import get_testdata_file

    from diffrestore.imageio import dicom

    unit = np.clip(dicom.hu_to_unit(dicom.read_ct_slice(Path(get_testdata_file("CT_small.dcm"))).hu), 0.0, 1.0)
    if size is not None and size < unit.shape[0]:
        top = (unit.shape[0] - size) // 2
        unit = unit[top:top + size, top:top + size]
    return unit.astype(np.float32)


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


METHOD_SETTINGS: dict[str, dict[str, Any]] = {"fbp": {}, "sart": {}, "daps": {}, "dps": {}, "mcg": {}}


def table(size: int, count: int, views_list: Sequence[int], photons: float, methods: Sequence[str],
          model: str | None, which: Sequence[str] = ("phantoms", "dicom")) -> list[str]:
    prior = load_prior(model)
    sets = {}
    if "phantoms" in which:
        sets["held-out phantoms"] = np.stack(ct_phantoms.held_out(count, size))
    if "dicom" in which:
        sets["CT_small.dcm"] = dicom_slice()[None]
    rows = ["| slices | views | noise | " + " | ".join(methods) + " |", "|---|---:|---|" + "---|" * len(methods)]
    for (name, unit), views, noise in itertools.product(sets.items(), views_list, ("gaussian", "photons")):
        problem, x = ct_problem(unit, views, photons if noise == "photons" else None)
        cells = []
        for method in methods:
            extra = {"weight": TV_WEIGHT[noise]} if method == "tv" else METHOD_SETTINGS.get(method, {})
            x_hat, seconds = timed(lambda m=method, e=extra, p=problem: solve(m, prior, p, **e))
            p, s = scores(x_hat, x)
            cells.append(f"{p:.2f} / {s:.3f} / {seconds / len(x):.1f} s")
            print(name, views, noise, method, cells[-1], flush=True)
        label = "sigma 0.05" if noise == "gaussian" else f"photons {photons:g}"
        rows.append(f"| {name} ({len(unit)}) | {views} | {label} | " + " | ".join(cells) + " |")
    return rows


def tune(method: str, grid: Sequence[dict[str, Any]], size: int, count: int, views: int, photons: float | None,
         model: str | None) -> None:
    """Each setting of ``grid`` on TRAINING phantoms (the last ``count`` of the first 256 seeds)."""
    prior = None if method in CLASSICAL else load_prior(model)
    unit = np.stack(ct_phantoms.training(count, size, start=256 - count))
    problem, x = ct_problem(unit, views, photons)
    for settings in grid:
        x_hat, seconds = timed(lambda s=settings: solve(method, prior, problem, **s))
        p, s = scores(x_hat, x)
        print(f"{method} {settings}: PSNR {p:.2f} SSIM {s:.3f} {seconds / count:.1f} s/slice", flush=True)


GRIDS: dict[str, list[dict[str, Any]]] = {
    "tv": [{"weight": w} for w in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)],
    "daps": [{"steps": s} for s in (25, 50, 100)],
    "dps": [{"steps": 100, "zeta": z} for z in (0.3, 1.0, 3.0, 10.0)],
    "mcg": [{"steps": s} for s in (50, 100)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("table", *(f"tune-{m}" for m in GRIDS)))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--views", default="30,18")
    parser.add_argument("--photons", type=float, default=1e5)
    parser.add_argument("--noise", choices=("gaussian", "photons"), default="gaussian", help="for tune-*")
    parser.add_argument("--methods", default=",".join((*CLASSICAL, *DIFFUSION)))
    parser.add_argument("--sets", default="phantoms,dicom", help="for table: phantoms, dicom or both")
    parser.add_argument("--model", default=None, help="a model folder instead of the shipped ct-phantom")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for tune-*: one setting to try")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    views = [int(v) for v in args.views.split(",")]
    if args.command == "table":
        print("\n".join(table(args.size, args.count, views, args.photons, args.methods.split(","), args.model,
                              args.sets.split(","))))
        return 0
    method = args.command.removeprefix("tune-")
    grid = GRIDS[method]
    if args.set:
        grid = [{k: _number(v) for k, v in (item.split("=", 1) for item in args.set)}]
    tune(method, grid, args.size, args.count, views[0], args.photons if args.noise == "photons" else None,
         args.model)
    return 0


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    raise SystemExit(main())
