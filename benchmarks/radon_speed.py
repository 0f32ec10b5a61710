"""What sparse-view CT's operator costs beside the network: forward + adjoint of ``ParallelBeamCT`` at 256 px with
30 and 180 views, FBP and one SART sweep, each as a ratio to one call of the default prior at 256 px.

    .venv/bin/python benchmarks/radon_speed.py                  # CPU, one torch thread: about a minute here
    .venv/bin/python benchmarks/radon_speed.py --device cuda    # wall time, synchronised

On the CPU times are the process's CPU time with one torch thread (benchmarks/network_cost.py: on a shared machine
wall time mostly measures the neighbours); on CUDA they are wall times after ``torch.cuda.synchronize``. Each is
the minimum over ``--repeats`` runs after a warm-up. The network call is the default prior's (``--model builtin``)
``denoise`` on a (1, C, 256, 256) image, C its channels: a forward pass (DAPS) and forward + backward to the input
(DPS, MCG), measured the same way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from network_cost import call_cost

from diffrestore.operators import ParallelBeamCT


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds of one ``run()``: the minimum over ``repeats`` after one warm-up (CPU time on the CPU, synchronised
    wall time on CUDA)."""
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    times = []
    for _ in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize(device)
        start = clock()
        with torch.no_grad():
            run()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return min(times[1:])


def network_costs(model: str, size: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) seconds of one ``denoise`` call of ``model`` on a size x size image."""
    from diffrestore.priors.load import load_prior

    prior = load_prior(model, device=str(device))
    x = torch.rand(1, prior.channels, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    if device.type == "cpu":
        return (call_cost(prior.denoise, x, backward=False, repeats=repeats),
                call_cost(prior.denoise, x, backward=True, repeats=repeats))

    def backward() -> None:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(prior.denoise(xg, 1.0).square().sum(), xg)

    return timed(lambda: prior.denoise(x, 1.0), device, repeats), timed(backward, device, repeats)


def operator_costs(size: int, views: int, device: torch.device, repeats: int) -> dict[str, float]:
    op = ParallelBeamCT((1, size, size), views=views).to(device)
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    y = op(x)
    return {
        "forward": timed(lambda: op(x), device, repeats),
        "adjoint": timed(lambda: op.adjoint(y), device, repeats),
        "forward+adjoint": timed(lambda: op.adjoint(op(x)), device, repeats),
        "fbp": timed(lambda: op.fbp(y), device, repeats),
        "sart sweep": timed(lambda: op.sart(y, iterations=1), device, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", default="30,180", help="comma-separated view counts")
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    forward, backward = network_costs(args.model, args.size, device, args.repeats)
    print(f"{args.model} network call at {args.size} px on {device}: forward {forward * 1e3:.1f} ms, "
          f"forward + backward {backward * 1e3:.1f} ms")
    print(f"{'views':>5}  {'operation':<16}{'ms':>9}{'/ forward':>11}{'/ fwd+bwd':>11}")
    for views in (int(v) for v in args.views.split(",")):
        for name, seconds in operator_costs(args.size, views, device, args.repeats).items():
            print(f"{views:>5}  {name:<16}{seconds * 1e3:>9.1f}{seconds / forward:>11.3f}{seconds / backward:>11.3f}")


if __name__ == "__main__":
    main()
