"""DWGF against LatentDAPS on the Stable Diffusion 1.5 architecture at random initialisation (nothing downloaded):
time per image at equal network calls (100) and peak memory against the step count.

    python benchmarks/dwgf_speed.py [--sizes 256,512] [--tasks inpaint,sr4] [--device cpu|cuda] [--dtype fp32|fp16]
        [--repeats 3] [--unit-budget 30] [--memory-steps 1,8,32] [--memory-size 128] [--threads N]
        [--no-memory | --memory-only]

The models, problems and timing helpers are latent_speed.py's (same SD 1.5 configs, same photo and operators).

1. units, batch 1, median of up to --repeats after one warm-up: one DWGF step for one particle (``flow_gradient``:
   the UNet call without guidance, one decoder forward and backward, one encode and one decode for the
   autoencoder-consistency term), the kernel-density score of 4 particles, LatentDAPS's guided UNet call and its
   HMC step (a decoder VJP), one decode;
2. per image at 100 network calls: LatentDAPS paper = 100 guided calls + 50 M VJPs + 1 decode; DWGF 100 steps with
   one particle and with the paper's 4 (4 particles are 4 samples: 4x the calls, one cloud);
3. a short real DWGF run (2 steps) against its prediction from the units;
4. memory, first of all: DWGF runs of --memory-steps steps at --memory-size px in fresh subprocesses, peak RSS
   (VmHWM) on the CPU or max_memory_allocated on CUDA, and the bytes of all live tensors after the first and the
   last step (exact; the official code keeps a decoded image per particle and step, which this would show).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from typing import Any

import torch
from latent_speed import (
    DTYPES,
    benchmark_parser,
    build_latent,
    build_problem,
    fmt,
    generators,
    memory_after_build,
    parse_benchmark_args,
    spawn_child,
    status_mib,
    sync,
    timed,
)

from diffrestore.operators import Problem
from diffrestore.priors.base import Conditioning
from diffrestore.solvers import get_solver
from diffrestore.solvers.base import likelihood_std
from diffrestore.solvers.dwgf import kde_score, measured_entries

CALLS = 100
PARTICLES = 4


def units(prior: Any, size: int, tasks: list[str], device: torch.device, repeats: int,
          budget: float) -> dict[str, float]:
    dwgf, ld = get_solver("dwgf", "paper"), get_solver("latent-daps", "paper")
    plain, guided = Conditioning(embeddings=prior.condition().embeddings), ld.conditioning(prior)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 4, size // 8, size // 8, generator=g).to(device)
    eps = torch.randn(z.shape, generator=g).to(device)
    noise = 0.01 * torch.randn(1, 3, size, size, generator=g).to(device)
    cloud = torch.randn(PARTICLES, *z.shape[1:], generator=g).to(device)
    out: dict[str, float] = {}
    with torch.no_grad():
        out["unet_plain"] = timed(lambda: prior.denoise(z, 1.0, plain), device, repeats, budget)
        out["unet_guided"] = timed(lambda: prior.denoise(z, 1.0, guided), device, repeats, budget)
        out["decode"] = timed(lambda: prior.decode(z), device, repeats, budget)
        out["encode"] = timed(lambda: prior.encode(prior.decode(z)), device, repeats, budget) - out["decode"]
        out["kde4"] = timed(lambda: kde_score(cloud, cloud, 0.5, 0.75), device, repeats, budget)
        for task in tasks:
            problem = build_problem(task, size, device)
            y = problem.y.to(device)
            measured = measured_entries(problem, (1, 3, size, size), device)
            out[f"step_{task}"] = timed(lambda problem=problem, y=y, measured=measured: dwgf.flow_gradient(
                prior, problem, y, z, 500, eps, noise, cond=plain, group=1, measured=measured, size=(size, size)),
                device, repeats, budget)
            term = ld._data_term(prior, problem, y, (size, size), likelihood_std(problem, ld.config.tau))
            out[f"vjp_{task}"] = timed(lambda term=term: term(z), device, repeats, budget)
            out[f"M_{task}"] = ld.mcmc_setting(prior, problem.operator).steps
    return out


def per_image(u: dict[str, float], task: str) -> dict[str, float]:
    m = int(u[f"M_{task}"])
    dwgf1 = CALLS * u[f"step_{task}"] + u["decode"]
    return {"M": m, "ld": CALLS * u["unet_guided"] + CALLS // 2 * m * u[f"vjp_{task}"] + u["decode"],
            "dwgf1": dwgf1, "dwgf4": PARTICLES * dwgf1 + CALLS * u["kde4"]}


def short_run(prior: Any, problem: Any, steps: int, particles: int = 1,
              progress: Any = None) -> float:
    solver = get_solver("dwgf", "paper", steps=steps)
    solver.prepare(prior)
    batch = Problem(operator=problem.operator, noise=problem.noise, y=problem.y.expand(particles, -1, -1, -1))
    device = torch.device(prior.device)
    sync(device)
    t0 = time.perf_counter()
    solver.run(prior, batch, generator=generators(particles), samples_per_image=particles, progress=progress)
    sync(device)
    return time.perf_counter() - t0


def live_tensor_mib() -> float:
    """MiB of the storages of all tensors alive in this process (each storage once): exact, unlike RSS, which the
    allocator moves by tens of MiB between steps."""
    seen: dict[int, int] = {}
    for obj in gc.get_objects():
        if torch.is_tensor(obj):
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values()) / 2**20


def child(args: argparse.Namespace) -> None:
    size_text, task, steps_text = args.child.split(",")
    size, steps = int(size_text), int(steps_text)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    prior = build_latent(device, dtype)
    problem = build_problem(task, size, device)
    out: dict[str, Any] = {"built_mib": memory_after_build(device)}
    live: list[float] = []  # bytes of every live tensor after each step: what a run keeps, allocator aside

    def after_step(done: int, total: int, what: str) -> None:
        sync(device)
        live.append(live_tensor_mib())

    out["seconds"] = short_run(prior, problem, steps, progress=after_step)
    out["live_first_step_mib"], out["live_last_step_mib"] = live[0], live[-1]
    out["peak_mib"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                       else status_mib("VmHWM"))
    out["grads_on_autoencoder"] = sum(p.grad is not None for p in prior.autoencoder.parameters())
    print("RESULT " + json.dumps(out), flush=True)


def run_child(args: argparse.Namespace, size: int, task: str, steps: int) -> dict[str, Any]:
    return spawn_child(os.path.abspath(__file__), f"{size},{task},{steps}", args)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--tasks", default="inpaint,sr4")
    parser.add_argument("--memory-steps", default="1,8,32")
    parser.add_argument("--memory-size", type=int, default=128)
    args = parse_benchmark_args(parser)
    if args.child:
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    tasks = args.tasks.split(",")
    device = torch.device(args.device)
    print(f"# dwgf_speed: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}, {args.dtype}")
    if not args.no_memory:  # children first: this process has built nothing yet
        print(f"\n## peak memory against DWGF steps ({args.memory_size} px, {tasks[0]}, one particle)")
        print("| steps | seconds | after build MiB | peak MiB | live tensors after step 1 / last step MiB |"
              " autoencoder grads |\n|---|---|---|---|---|---|")
        for steps in (int(s) for s in args.memory_steps.split(",")):
            r = run_child(args, args.memory_size, tasks[0], steps)
            if "error" in r:
                print(f"| {steps} | {r['error']} |")
                continue
            print(f"| {steps} | {r['seconds']:.1f} | {r['built_mib']:.0f} | {r['peak_mib']:.0f} | "
                  f"{r['live_first_step_mib']:.3f} / {r['live_last_step_mib']:.3f} | {r['grads_on_autoencoder']} |",
                  flush=True)
        kept = 3 * args.memory_size**2 * 4 / 2**20
        print(f"(the official code keeps one decoded image per particle and step: {kept:.2f} MiB at this size)")
    if args.memory_only:
        return
    prior = build_latent(device, DTYPES[args.dtype])
    for size in sizes:
        u = units(prior, size, tasks, device, args.repeats, args.unit_budget)
        print(f"\n## {size} px units: " + ", ".join(f"{k} {fmt(v) if not k.startswith('M_') else int(v)}"
                                                     for k, v in u.items()))
        print("| task | LatentDAPS paper (M) | DWGF 1 particle | DWGF 4 particles | DWGF-1 / LD | DWGF-4 / LD |"
              "\n|---|---|---|---|---|---|")
        for task in tasks:
            p = per_image(u, task)
            print(f"| {task} | {fmt(p['ld'])} ({p['M']}) | {fmt(p['dwgf1'])} | {fmt(p['dwgf4'])} | "
                  f"{p['dwgf1'] / p['ld']:.2f} | {p['dwgf4'] / p['ld']:.2f} |", flush=True)
        if size == sizes[0]:
            problem = build_problem(tasks[0], size, device)
            predicted = 2 * u[f"step_{tasks[0]}"] + u["decode"]
            measured = short_run(prior, problem, 2)
            print(f"short run (2 steps, {tasks[0]}): predicted {fmt(predicted)}, measured {fmt(measured)}")


if __name__ == "__main__":
    main()
