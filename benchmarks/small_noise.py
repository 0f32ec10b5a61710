"""Small measurement noise: how well the noise estimator reads photos, and how the solvers do at its floor.

    # the estimator (diffrestore/tasks/noise_estimate.py): truth vs estimate per photo and noise level
    python benchmarks/small_noise.py estimate
    # the solvers at the 8-bit floor (sigma 1/255 on [0, 1]) against the old default 0.025
    python benchmarks/small_noise.py solvers --photos astronaut,coffee --sigmas 1/255,0.025

``estimate``: 256 x 256 centre crops of skimage photos, Gaussian noise of std sigma added on [0, 1], clipped and
rounded to 8 bits as a file holds it; the truth is sqrt(sigma^2 + q^2), q = (1/255) / sqrt(12) the rounding's rms.
The estimate shown is the raw one (before the floor), as a ratio to the truth; clean photos show the raw value
and the floor it is compared with.

``solvers``: a 64 x 64 crop of a held-out photo (the default prior never saw it), the measurement y simulated with
the noise level given and rounded to 8 bits (a file), then DAPS / DPS / MCG (fast preset) with the shipped default
prior and the noise model's sigma. Columns: the rms of A(x_hat) - y in tensor units over the measured entries
(inpainting: the known pixels) and its ratio to the noise std (2 sigma), PSNR against the clean crop ([0, 1] scale,
output clipped as it is saved), whether x_hat is finite, wall time, and the noise estimate of the file y
(``--noise-sigma auto``). Seeds: the random mask, the noise and the solver each get their own stream derived from
``--seed``.
"""

from __future__ import annotations

import argparse
import math
import time
from fractions import Fraction

import numpy as np
import torch

#: photos with little fine detail of their own: the estimate reads the added noise (the tests' 20 % band)
PLAIN_PHOTOS = ("rocket", "moon", "brick", "retina", "cell")
#: photos with grain, fur or print of their own, which the HH band reads as noise at low levels
DETAILED_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "coins", "page", "text", "immunohistochemistry",
                   "hubble_deep_field", "grass", "gravel")
ESTIMATE_SIGMAS = (0.0, 0.01, 0.03, 0.1)
#: the solver benchmark's crops (top, left): some structure in each 64 x 64 window of a held-out photo
SOLVER_CROPS = {"astronaut": (100, 180), "coffee": (150, 250), "chelsea": (60, 180), "rocket": (200, 200)}
SOLVERS = ("daps", "dps", "mcg")
TASKS = ("inpaint_box", "inpaint_random", "sr4", "gaussian_blur")


def photo(name: str) -> np.ndarray:
    """A skimage.data photo as float64 on [0, 1], (H, W) or (H, W, 3) (alpha dropped)."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    return image.astype(np.float64) / 255.0


def crop(image: np.ndarray, size: int, top: int | None = None, left: int | None = None) -> np.ndarray:
    """A size x size window (centred unless top / left are given)."""
    top = (image.shape[0] - size) // 2 if top is None else top
    left = (image.shape[1] - size) // 2 if left is None else left
    return image[top : top + size, left : left + size]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) on [0, 1] -> (1, C, H, W) float32 in tensor units."""
    chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None] * 2 - 1


def as_file(image: np.ndarray, sigma: float, rng: np.random.Generator, bits: int = 8) -> np.ndarray:
    """What a ``bits``-bit file holds of ``image`` (on [0, 1]) with Gaussian noise of std ``sigma`` added:
    clipped to [0, 1] and rounded to the file's levels, returned on [0, 1]."""
    levels = 2**bits - 1
    noisy = image + sigma * rng.standard_normal(image.shape) if sigma > 0 else image
    return np.round(np.clip(noisy, 0.0, 1.0) * levels) / levels


def truth(sigma: float, bits: int = 8) -> float:
    """The noise std of such a file: the added noise and the rounding's rms, step / sqrt(12), in quadrature."""
    return math.hypot(sigma, 1.0 / (2**bits - 1) / math.sqrt(12.0))


def estimate_rows(names: tuple[str, ...], sigmas: tuple[float, ...], seed: int = 0, size: int = 256) -> list[dict]:
    """One row per photo and sigma: truth, the raw estimate, the floored one, the coefficients used."""
    from diffrestore.tasks.noise_estimate import estimate_noise

    rows = []
    for index, name in enumerate(names):
        rng = np.random.default_rng([seed, index])  # a photo's noise does not depend on the others run with it
        clean = crop(photo(name), size)
        for sigma in sigmas:
            found = estimate_noise(to_tensor(as_file(clean, sigma, rng)))
            rows.append(dict(photo=name, sigma=sigma, truth=truth(sigma), raw=found.raw, sigma_hat=found.sigma,
                             floor=found.floor, coefficients=found.coefficients))
    return rows


def print_estimates(rows: list[dict]) -> None:
    print(f"{'photo':22s} {'sigma':>6s} {'truth':>7s} {'raw':>7s} {'ratio':>6s} {'coeffs':>7s}")
    for row in rows:
        raw = row["raw"] if row["raw"] is not None else float("nan")
        ratio = f"{raw / row['floor']:5.2f}F" if row["sigma"] == 0 else f"{raw / row['truth']:6.2f}"
        print(f"{row['photo']:22s} {row['sigma']:6.3f} {row['truth']:7.4f} {raw:7.4f} {ratio:>6s}"
              f" {row['coefficients']:7d}")
    print("ratio: raw / truth; for clean photos (sigma 0) raw / floor (F), the floor being 1/255")


def task_operator(task: str, size: int, generator: torch.Generator):
    """The operator of ``task`` for a (3, size, size) image (the default benchmark's settings, scaled to size)."""
    from diffrestore.operators import build_operator

    shape = (3, size, size)
    if task == "inpaint_box":
        return build_operator("inpaint", shape, box=(size // 4, size // 4, size // 2, size // 2))
    if task == "inpaint_random":
        return build_operator("inpaint", shape, fraction=0.7, generator=generator)
    if task == "sr4":
        return build_operator("sr", shape, factor=4)
    if task == "gaussian_blur":
        return build_operator("gaussian_blur", shape, kernel_size=min(61, 2 * (size // 2) - 1), sigma=3.0)
    raise ValueError(f"unknown task {task!r} (one of {', '.join(TASKS)})")


def quantise(y: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """A measurement in tensor units as a ``bits``-bit file holds it (clipped, rounded)."""
    levels = 2**bits - 1
    return torch.round(((y + 1) / 2).clamp(0, 1) * levels) / levels * 2 - 1


def measured(operator, values: torch.Tensor) -> torch.Tensor:
    """The entries of a measurement-shaped tensor that y actually measures (inpainting: the known pixels)."""
    known = getattr(operator, "known", None)
    return values[known.expand_as(values) > 0.5] if known is not None else values.flatten()


def run_case(prior, solver: str, task: str, x: torch.Tensor, sigma: float, *, seed: int = 0,
             steps: int | None = None) -> dict:
    """One restoration of crop ``x`` at noise ``sigma`` (on [0, 1]): residual, PSNR, finiteness, time, estimate."""
    from diffrestore.operators import GaussianNoise, Problem, simulate
    from diffrestore.run.runtime import derive_seed, make_generator
    from diffrestore.solvers import get_solver
    from diffrestore.tasks.noise_estimate import estimate_noise

    operator = task_operator(task, x.shape[-1], make_generator(derive_seed(seed, "mask")))
    simulated = simulate(operator, GaussianNoise(sigma), x, make_generator(derive_seed(seed, "noise")))
    problem = Problem(operator=operator, noise=simulated.noise, y=quantise(simulated.y))
    known = getattr(operator, "known", None)
    found = estimate_noise(problem.y, known=None if known is None else known > 0.5)
    started = time.perf_counter()
    x_hat = get_solver(solver, "fast", steps=steps).run(prior, problem,
                                                        generator=make_generator(derive_seed(seed, "solver")))
    seconds = time.perf_counter() - started
    with torch.no_grad():
        residual = measured(operator, operator(x_hat) - problem.y)
    mse01 = float(((x_hat.clamp(-1, 1) - x) / 2).square().mean())
    noise_std = 2.0 * sigma
    rms = float(residual.square().mean().sqrt())
    return dict(solver=solver, task=task, sigma=sigma, noise_std=noise_std, residual=rms, ratio=rms / noise_std,
                psnr=-10 * math.log10(max(mse01, 1e-12)), finite=bool(torch.isfinite(x_hat).all()),
                seconds=seconds, estimate=found.sigma)


def solver_rows(photos: tuple[str, ...], sigmas: tuple[float, ...], solvers: tuple[str, ...],
                tasks: tuple[str, ...], seed: int = 0, size: int = 64) -> list[dict]:
    from diffrestore.priors.builtin import default_prior

    prior = default_prior()
    rows = []
    for name in photos:
        top, left = SOLVER_CROPS.get(name, (None, None))
        x = to_tensor(crop(photo(name), size, top, left))
        for task in tasks:
            for solver in solvers:
                for sigma in sigmas:
                    rows.append(dict(run_case(prior, solver, task, x, sigma, seed=seed), photo=name))
    return rows


def print_solver_rows(rows: list[dict]) -> None:
    print(f"{'photo':10s} {'task':15s} {'solver':6s} {'sigma':>7s} {'std':>7s} {'resid':>7s} {'ratio':>6s}"
          f" {'PSNR':>6s} {'finite':>6s} {'s':>5s} {'auto':>7s}")
    for row in rows:
        print(f"{row['photo']:10s} {row['task']:15s} {row['solver']:6s} {row['sigma']:7.4f} {row['noise_std']:7.4f}"
              f" {row['residual']:7.4f} {row['ratio']:6.2f} {row['psnr']:6.2f} {row['finite']!s:>6s}"
              f" {row['seconds']:5.1f} {row['estimate']:7.4f}")
    print("std, resid: tensor units ([-1, 1]); ratio = resid / std; auto: the noise estimate of the 8-bit y on [0, 1]")


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(Fraction(part)) for part in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="the noise estimator on skimage photos")
    est.add_argument("--photos", default=",".join(PLAIN_PHOTOS + DETAILED_PHOTOS))
    est.add_argument("--sigmas", default=",".join(str(s) for s in ESTIMATE_SIGMAS))
    est.add_argument("--seed", type=int, default=0)
    sol = sub.add_parser("solvers", help="the solvers at small noise")
    sol.add_argument("--photos", default="astronaut,coffee")
    sol.add_argument("--sigmas", default="1/255,0.025", help="noise std on [0, 1]; fractions accepted")
    sol.add_argument("--solvers", default=",".join(SOLVERS))
    sol.add_argument("--tasks", default=",".join(TASKS))
    sol.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "estimate":
        print_estimates(estimate_rows(tuple(args.photos.split(",")), _numbers(args.sigmas), args.seed))
    else:
        print_solver_rows(solver_rows(tuple(args.photos.split(",")), _numbers(args.sigmas),
                                      tuple(args.solvers.split(",")), tuple(args.tasks.split(",")), args.seed))


if __name__ == "__main__":
    main()
