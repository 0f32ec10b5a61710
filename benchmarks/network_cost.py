"""The cost of one network call as the overhead benchmarks count it (solver_overhead.py, task_overhead.py).

A call is timed the way a solver uses the network: a forward pass (DAPS: no gradient through the network) or a
forward + backward pass to the input (DPS, MCG differentiate through it). Times are the process's CPU time
(``time.process_time``), meant for a process running torch on one thread: on a shared machine wall time mostly
measures the neighbours, CPU time of a single-threaded process measures our work. Only torch is imported here, so
any version of the package can be timed with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def call_cost(denoise: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor, *, backward: bool,
              repeats: int, sigma: float = 1.0) -> float:
    """Seconds of CPU time of one ``denoise(x, sigma)`` call (with ``backward``: and its gradient to ``x``), the
    minimum over ``repeats`` calls after one that warms caches."""
    times = []
    for _ in range(repeats + 1):
        start = time.process_time()
        if backward:
            with torch.enable_grad():
                xg = x.clone().requires_grad_(True)
                torch.autograd.grad(denoise(xg, sigma).square().sum(), xg)
        else:
            with torch.no_grad():
                denoise(x, sigma)
        times.append(time.process_time() - start)
    return min(times[1:])
