"""How close do the solvers come to the exact posterior? Gaussian prior + linear operator + Gaussian noise.

    .venv/bin/python benchmarks/posterior_exactness.py                 # all solvers, presets fast and paper
    .venv/bin/python benchmarks/posterior_exactness.py --solvers daps --presets fast --samples 512

Setup: prior N(0, Sigma) on 1 x 16 x 16 images (tensor units), Sigma a squared-exponential kernel over pixel
positions (length 2 px, std 0.5) plus a white component (std 0.05: texture the smooth part cannot explain);
x drawn from the prior; three problems, y = A x + n with n ~ N(0, 0.05^2) on the [-1, 1] tensor scale
(= GaussianNoise(0.025) on the [0, 1] user scale, the papers' setting):
    inpaint  50 % of the pixels missing at random
    sr       x2 super-resolution, box average
    blur     gaussian blur, 9 x 9 kernel, sigma 1.5 px, reflect boundary
Each solver draws --samples posterior samples in one batch (y repeated). Columns:
    mean err   ||mean(samples) - mu_post|| / ||mu_post||      (exact posterior mean mu_post, float64 closed form)
    std ratio  average over pixels of std(samples) / sqrt(diag Sigma_post)
    calls      denoiser (network) calls per sample
    MC floor   the mean error expected from sampling alone: sqrt(trace Sigma_post / samples) / ||mu_post||
The pinv row is A^+ y, the estimate a solver must beat.

For speed the operators are applied as their dense matrices (built from, and identical to, diffrestore's operators:
the build checks they agree on random inputs); DAPS's Langevin steps then cost a matmul instead of an FFT.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from diffrestore.operators import GaussianNoise, LinearOperator, Problem, build_operator
from diffrestore.operators.linalg import EnergyTolerance
from diffrestore.priors.analytic import GaussianPrior, gaussian_posterior, operator_matrix
from diffrestore.run.runtime import make_generator
from diffrestore.solvers import SOLVER_NAMES, get_solver

IMAGE_SHAPE = (1, 16, 16)
NOISE_SIGMA_USER = 0.025  # [0, 1] scale; 0.05 on the [-1, 1] tensor scale
PROBLEMS: dict[str, tuple[str, dict]] = {
    "inpaint": ("inpaint", {"fraction": 0.5}),
    "sr": ("sr", {"factor": 2, "kernel": "box"}),
    "blur": ("gaussian_blur", {"kernel_size": 9, "sigma": 1.5}),
}


class DenseLinearOperator(LinearOperator):
    """A linear operator given by its matrix; keeps the wrapped operator's name (per-task solver defaults)."""

    def __init__(self, operator: LinearOperator) -> None:
        super().__init__(operator.image_shape)
        self.name = operator.name
        self.kind = operator.kind
        self.wrapped = operator  # gram_solve runs the real operator's code path (closed form, FFT or CG)
        if isinstance(getattr(operator, "kernel", None), str):
            self.kernel = operator.kernel  # e.g. "box" super-resolution: MCG projects there
        self.output_shape = operator.output_shape
        matrix = operator_matrix(operator, operator.image_shape)
        self.register_buffer("matrix", matrix.to(torch.float32))
        self.register_buffer("matrix_pinv", torch.linalg.pinv(matrix, rtol=1e-3).to(torch.float32))
        probe = torch.randn(4, *operator.image_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            if not torch.allclose(self(probe), operator(probe), atol=1e-5):
                raise RuntimeError(f"dense copy of {operator.name} disagrees with the operator")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.matrix.T).reshape(x.shape[0], *self.output_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y.flatten(1) @ self.matrix).reshape(y.shape[0], *self.image_shape)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return (y.flatten(1) @ self.matrix_pinv.T).reshape(y.shape[0], *self.image_shape)

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                   tol: torch.Tensor | float | EnergyTolerance | None = None) -> torch.Tensor:
        return self.wrapped.gram_solve(v, scale, shift, tol=tol)

    def lipschitz(self) -> float:
        return self.wrapped.lipschitz()


def make_prior() -> GaussianPrior:
    return GaussianPrior.stationary(IMAGE_SHAPE, length_scale=2.0, std=0.5, jitter=0.01)


def make_problem(name: str, prior: GaussianPrior, seed: int = 0):
    """(operator, noise, y (1, ...), exact posterior mean (1, C, H, W) float64, exact posterior std (D,) float64)."""
    op_name, params = PROBLEMS[name]
    operator = build_operator(op_name, IMAGE_SHAPE, generator=make_generator(seed + 1), **params)
    noise = GaussianNoise(NOISE_SIGMA_USER)
    x = prior.sample(1, make_generator(seed))
    with torch.no_grad():
        y = noise.sample(operator(x), make_generator(seed + 2))
    mean, cov = gaussian_posterior(prior, operator, y, noise.std)
    return operator, noise, y, mean, cov.diagonal().sqrt()


def score(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[float, float]:
    s = samples.double().cpu()
    err = float((s.mean(0, keepdim=True) - mean).norm() / mean.norm())
    ratio = float((s.flatten(1).std(0) / std).mean())
    return err, ratio


def _overrides(pairs: list[str], solver_name: str, preset: str) -> dict:
    """--set KEY=VALUE pairs that the solver's config has (numbers parsed, the rest kept as text)."""
    import dataclasses

    from diffrestore.solvers import solver_class

    fields = {f.name for f in dataclasses.fields(solver_class(solver_name).config_class)}
    out: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in fields:
            try:
                out[key] = int(value) if value.isdigit() else float(value)
            except ValueError:
                out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solvers", default=",".join(SOLVER_NAMES))
    parser.add_argument("--presets", default="fast,paper")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyper-parameter for every solver that has it, e.g. --set inner=langevin")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = make_prior()
    print(f"# posterior exactness: Gaussian prior {IMAGE_SHAPE}, sigma_y 0.05 on [-1, 1], {args.samples} samples")
    print(f"{'problem':8s} {'solver':6s} {'preset':6s} {'mean err':>9s} {'std ratio':>9s} {'calls':>6s} {'time s':>7s}")
    for problem_name in args.problems.split(","):
        operator, noise, y, mean, std = make_problem(problem_name, prior, args.seed)
        dense = DenseLinearOperator(operator)
        mc_floor = math.sqrt(float(std.square().sum()) / args.samples) / float(mean.norm())
        with torch.no_grad():
            pinv_err = float((operator.pinv(y).double() - mean).norm() / mean.norm())
        print(f"{problem_name:8s} {'pinv':6s} {'-':6s} {pinv_err:9.4f} {'-':>9s} {0:6d} {'-':>7s}")
        print(f"{problem_name:8s} {'(MC floor of the mean error)':22s} {mc_floor:9.4f}")
        for solver_name in args.solvers.split(","):
            for preset in args.presets.split(","):
                solver = get_solver(solver_name, preset, **_overrides(args.set, solver_name, preset))
                problem = Problem(dense, noise, y.repeat(args.samples, 1, 1, 1))
                start = time.perf_counter()
                samples = solver.run(prior, problem, generator=make_generator(args.seed + 3))
                elapsed = time.perf_counter() - start
                err, ratio = score(samples, mean, std)
                print(
                    f"{problem_name:8s} {solver_name:6s} {preset:6s} {err:9.4f} {ratio:9.3f} "
                    f"{solver.network_calls():6d} {elapsed:7.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
