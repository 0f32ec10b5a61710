"""LatentDAPS (Stable Diffusion 1.5 architecture) against pixel DAPS and DPS (ADM 256 FFHQ architecture): time per
image and peak memory at equal network calls (100), every network at random initialisation (nothing downloaded).

    python benchmarks/latent_speed.py [--sizes 256,512] [--tasks inpaint,sr4] [--device cpu|cuda]
        [--dtype fp32|fp16] [--repeats 3] [--unit-budget 30] [--threads N] [--no-memory | --memory-only]

Timing and memory do not depend on the weights, so the real architectures are built from their config dicts with
a fixed seed: SD 1.5's UNet2DConditionModel + AutoencoderKL + DDIM scaled-linear schedule (no text encoder: the
prompt embeddings are fixed random (1, 77, 768) tensors), and ADM from the ``[models.ffhq-256.arch]`` flags of
diffrestore/models.toml (run fully convolutionally at 512 px).

A full run at 100 network calls takes hours on a CPU, so the script measures unit costs and checks the unit model:

1. units, batch 1, median of up to --repeats after one warm-up (fewer when one unit's repeats pass --unit-budget
   seconds): the latent UNet call at s/8 with classifier-free guidance (the 2N batch) and without; LatentDAPS's
   data-term VJP (decoder forward + backward through the task's operator, what one HMC step costs); one decode;
   the ADM denoiser call; DPS's guided step (ADM forward + backward); pixel DAPS's inner loop of one annealing
   step (50 Langevin steps, no network call);
2. per image at 100 calls: LatentDAPS paper = 100 guided UNet calls + 50 M VJPs + 1 decode (M from the official
   table, ``mcmc_setting``); DAPS fast = 100 (ADM call + Langevin loop); DPS fast = 100 guided steps;
3. short real solver runs (latent-daps 1 annealing step x 2 calls and 2 HMC steps; daps and dps 2 steps), warm, in
   this process, predicted from the units against measured (every task at the first size, the first task after);
4. peak memory, first of all: each short run in a fresh subprocess, RSS after building the models and peak RSS
   (VmHWM; ru_maxrss as well, which on Linux also holds the parent's peak) on the CPU; on CUDA
   ``torch.cuda.memory_allocated`` after the build and ``max_memory_allocated`` at the end.

The default CPU run (2 cores, sizes 256 and 512) takes about 18 minutes on a quiet machine; a neighbour on one
core inflates every unit (small ops most: the 2-thread kernels wait for the descheduled thread), so time it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.adm import ADMConfig, ADMNet, ADMUNet, adm_scheduler
from diffrestore.priors.base import Conditioning
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior
from diffrestore.priors.latent import DiffusersLatentPrior
from diffrestore.registry import load_registry
from diffrestore.solvers import get_solver
from diffrestore.solvers.base import likelihood_std

#: the public SD 1.5 configs (unet/config.json, vae/config.json of stable-diffusion-v1-5)
SD15_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu",
    "center_input_sample": False, "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0,
    "mid_block_scale_factor": 1,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2, "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "act_fn": "silu", "norm_num_groups": 32, "sample_size": 512,
}
SD15_LATENT_SCALE = 0.18215
CALLS = 100
TASKS = ("inpaint", "sr4")
# the short real runs of the validation and memory steps
SHORT = {
    "latent-daps": ("paper", {"steps": 1, "langevin_steps": 2}),
    "daps": ("fast", {"steps": 2}),
    "dps": ("fast", {"steps": 2}),
}


class PromptFreeSD(DiffusersLatentPrior):
    """SD 1.5 without a text encoder: fixed random prompt embeddings (seed 0) and negative embeddings (seed 1)."""

    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        embeddings = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(0)).to(self.device)
        negative = None
        if guidance != 1.0:
            negative = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(1)).to(self.device)
        return Conditioning(embeddings=embeddings, negative=negative, guidance=float(guidance))


def build_latent(device: torch.device, dtype: torch.dtype) -> PromptFreeSD:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).to(device)
    vae = AutoencoderKL(**SD15_VAE).to(device)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    prior = PromptFreeSD(unet, vae, scheduler, latent_scale=SD15_LATENT_SCALE, name="sd15-random", dtype=dtype)
    assert prior.conditional  # guidance applies
    return prior


def build_pixel(device: torch.device, dtype: torch.dtype) -> DiffusersPixelPrior:
    entry = load_registry().get("ffhq-256")
    torch.manual_seed(0)
    unet = ADMUNet(ADMNet(ADMConfig.from_flags(dict(entry.arch)))).to(device)
    # native_size None: the 256 px network run fully convolutionally, so 512 px is what the same model costs there
    return DiffusersPixelPrior(unet, adm_scheduler(dict(entry.diffusion)), dtype=dtype, native_size=None)


def build_problem(task: str, size: int, device: torch.device) -> Problem:
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
    x = torch.nn.functional.interpolate(photo, size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    if task == "inpaint":
        op = build_operator("inpaint", (3, size, size), box=(size // 4, size // 4, size // 2, size // 2))
    elif task == "sr4":
        op = build_operator("sr", (3, size, size), factor=4)
    else:
        raise SystemExit(f"unknown task {task!r} (inpaint, sr4)")
    noise = GaussianNoise(0.005)
    y = noise.sample(op(x), torch.Generator().manual_seed(2))
    problem = Problem(operator=op, noise=noise, y=y)
    problem.operator.to(device)
    return problem


def generators(batch: int = 1) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(i) for i in range(batch)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, budget: float) -> float:
    """Median seconds of ``fn`` over up to ``repeats`` runs after one warm-up; stops early past ``budget`` s."""
    fn()
    sync(device)
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------ unit costs


def latent_units(prior: PromptFreeSD, size: int, tasks: list[str], device: torch.device, repeats: int,
                 budget: float) -> dict[str, float]:
    solver = get_solver("latent-daps", "paper")
    guided = solver.conditioning(prior)
    plain = prior.condition(guidance=1.0)
    z = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(3)).to(device)
    units: dict[str, float] = {}
    with torch.no_grad():
        units["unet_guided"] = timed(lambda: prior.denoise(z, 1.0, guided), device, repeats, budget)
        units["unet_plain"] = timed(lambda: prior.denoise(z, 1.0, plain), device, repeats, budget)
        units["decode"] = timed(lambda: prior.decode(z), device, repeats, budget)
        for task in tasks:
            problem = build_problem(task, size, device)
            y = problem.y.to(device)
            term = solver._data_term(prior, problem, y, (size, size), likelihood_std(problem, solver.config.tau))
            units[f"vjp_{task}"] = timed(lambda term=term: term(z), device, repeats, budget)
            units[f"M_{task}"] = solver.mcmc_setting(prior, problem.operator).steps
    return units


def pixel_units(prior: DiffusersPixelPrior, size: int, tasks: list[str], device: torch.device, repeats: int,
                budget: float) -> dict[str, float]:
    """The ADM call and DPS step once (the task only changes the operator's small share), the Langevin loop per
    task."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3)).to(device)
    # pixel DAPS as the table below measured it: 50 Langevin steps drawing the inner target (the fast preset's
    # step until 2026-12-03; its inner mean now costs about 11 % on top of the calls, docs/benchmarks.md)
    daps = get_solver("daps", "fast", inner="langevin", inner_spread=1.0)
    dps = get_solver("dps", "fast")
    problems = {task: build_problem(task, size, device) for task in tasks}

    def dps_step(problem: Problem) -> Callable[[], Any]:
        y = problem.y.to(device)
        return lambda: dps._guided_x0(prior, problem, y, x, 1.0)

    def langevin(problem: Problem) -> Callable[[], Any]:
        y, sampler, tau = problem.y.to(device), daps.inner_sampler(problem), likelihood_std(problem, daps.config.tau)
        return lambda: daps._inner(sampler, problem, y, x, 1.0, tau, 1e-5, generators())

    units: dict[str, float] = {}
    with torch.no_grad():
        units["adm_call"] = timed(lambda: prior.denoise(x, 1.0), device, repeats, budget)
        units["adm_grad"] = timed(dps_step(problems[tasks[0]]), device, repeats, budget)
        for task, problem in problems.items():
            units[f"langevin_{task}"] = timed(langevin(problem), device, repeats, budget)
    return units


def per_image(u: dict[str, float], task: str) -> dict[str, float]:
    """Seconds per image at 100 network calls, from the units."""
    m = int(u[f"M_{task}"])
    steps = CALLS // 2  # paper preset: 50 annealing steps x 2 Euler calls
    unet, vjp = CALLS * u["unet_guided"], steps * m * u[f"vjp_{task}"]
    return {
        "M": m, "ld_unet": unet, "ld_vjp": vjp, "ld": unet + vjp + u["decode"],
        "daps": CALLS * (u["adm_call"] + u[f"langevin_{task}"]), "dps": CALLS * u["adm_grad"],
    }


def short_prediction(u: dict[str, float], solver: str, task: str) -> float:
    _, over = SHORT[solver]
    if solver == "latent-daps":
        return over["steps"] * (2 * u["unet_guided"] + over["langevin_steps"] * u[f"vjp_{task}"]) + u["decode"]
    if solver == "daps":
        return over["steps"] * (u["adm_call"] + u[f"langevin_{task}"])
    return over["steps"] * u["adm_grad"]


def short_run(solver_name: str, prior: Any, problem: Problem) -> float:
    preset, over = SHORT[solver_name]
    solver = get_solver(solver_name, preset, **over)
    solver.prepare(prior)
    device = torch.device(prior.device)
    sync(device)
    t0 = time.perf_counter()
    solver.run(prior, problem, generator=generators())
    sync(device)
    return time.perf_counter() - t0


# -------------------------------------------------------------------------------------------- memory (child)


def status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_after_build(device: torch.device) -> float:
    """MiB in use once the models are built: allocated on CUDA (whose peak counter restarts here), RSS on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return status_mib("VmRSS")


def child(args: argparse.Namespace) -> None:
    """One short real run in this fresh process; prints one JSON line with its memory and time."""
    solver_name, size_text, task = args.child.split(",")
    size = int(size_text)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    prior = build_latent(device, dtype) if solver_name == "latent-daps" else build_pixel(device, dtype)
    problem = build_problem(task, size, device)
    out: dict[str, Any] = {"built_mib": memory_after_build(device)}
    if device.type != "cuda":
        out["build_peak_mib"] = maxrss_mib()
    out["seconds"] = short_run(solver_name, prior, problem)
    report_child(out, device)


def report_child(out: dict[str, Any], device: torch.device) -> None:
    """Add this process's peak memory to ``out`` and print the RESULT line ``spawn_child`` reads."""
    if device.type == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        # VmHWM is this process image's own peak; ru_maxrss also carries the parent's peak at fork time (Linux
        # keeps it across exec), which is why the children start before this script builds its own models
        out["peak_mib"] = status_mib("VmHWM")
        out["maxrss_mib"] = maxrss_mib()
    print("RESULT " + json.dumps(out), flush=True)


def run_child(args: argparse.Namespace, solver: str, size: int, task: str) -> dict[str, Any]:
    return spawn_child(os.path.abspath(__file__), f"{solver},{size},{task}", args)


def spawn_child(script: str, spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``script --child spec`` (same device, dtype, threads) in a fresh process; its RESULT line as a dict."""
    cmd = [sys.executable, script, "--child", spec, "--device", args.device, "--dtype", args.dtype]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0]}"}


# ------------------------------------------------------------------------------------------------------ main

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """The flags the speed benchmarks share (latent_speed, dwgf_speed, g2d2_speed); each adds its own."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per unit after one warm-up")
    parser.add_argument("--unit-budget", type=float, default=30.0,
                        help="stop repeating a unit once its timed repeats pass this many seconds (at least one)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory runs")
    parser.add_argument("--memory-only", action="store_true", help="only the subprocess memory runs")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    return parser


def parse_benchmark_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, apply --threads, refuse fp16 off CUDA."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "fp16" and not args.device.startswith("cuda"):
        raise SystemExit("--dtype fp16 needs --device cuda (no fp16 kernels on the CPU)")
    return args


def fmt(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s" + (f" ({seconds / 3600:.1f} h)" if seconds >= 3600 else "")


def memory_table(args: argparse.Namespace, sizes: list[int], task: str, device: torch.device) -> None:
    cuda = device.type == "cuda"
    unit = "allocated" if cuda else "RSS"
    print(f"\nMemory of the short runs, each in a fresh process ({unit}, MiB; task {task}):\n")
    extra = "" if cuda else " ru_maxrss |"
    head = f"| size | run | {unit} after build | peak | peak - after build |{extra} cold run |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for size in sizes:
        for name in SHORT:
            r = run_child(args, name, size, task)
            if "error" in r:
                print(f"| {size} | {name} | {r['error']} |" + " |" * (head.count("|") - 4))
                continue
            maxrss = "" if cuda else f" {r['maxrss_mib']:.0f} |"
            print(f"| {size} | {name} {describe(name)} | {r['built_mib']:.0f} | {r['peak_mib']:.0f} | "
                  f"{r['peak_mib'] - r['built_mib']:.0f} |{maxrss} {fmt(r['seconds'])} |", flush=True)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--tasks", default=",".join(TASKS))
    args = parse_benchmark_args(parser)
    if args.child:
        child(args)
        return
    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",")]
    tasks = [t for t in args.tasks.split(",") if t]
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"# {where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {args.dtype}, "
          f"python {platform.python_version()}; networks at random init, batch 1")
    if not args.no_memory:  # first, while this process is small (see ``child``)
        memory_table(args, sizes, tasks[0], device)
    if args.memory_only:
        return
    latent, pixel = build_latent(device, dtype), build_pixel(device, dtype)
    params = {name: sum(p.numel() for p in net.parameters()) / 1e6
              for name, net in (("SD 1.5 UNet", latent.unet), ("SD 1.5 VAE", latent.autoencoder),
                                ("ADM ffhq-256", pixel.unet))}
    print("# parameters: " + ", ".join(f"{k} {v:.0f} M" for k, v in params.items()))

    units: dict[int, dict[str, float]] = {}
    for size in sizes:
        t0 = time.perf_counter()
        u = latent_units(latent, size, tasks, device, args.repeats, args.unit_budget)
        u.update(pixel_units(pixel, size, tasks, device, args.repeats, args.unit_budget))
        units[size] = u
        print(f"# units at {size} px measured in {time.perf_counter() - t0:.0f} s", flush=True)

    print("\nUnit costs (batch 1, median after a warm-up):\n")
    head = ["size", "SD UNet guided (2N)", "SD UNet unguided", "decoder VJP " + "/".join(tasks), "decode",
            "ADM call", "ADM fwd+bwd (DPS step)", "DAPS 50 Langevin " + "/".join(tasks)]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for size, u in units.items():
        row = [f"{size}", fmt(u["unet_guided"]), fmt(u["unet_plain"]),
               " / ".join(fmt(u[f"vjp_{t}"]) for t in tasks), fmt(u["decode"]), fmt(u["adm_call"]),
               fmt(u["adm_grad"]), " / ".join(fmt(u[f"langevin_{t}"]) for t in tasks)]
        print("| " + " | ".join(row) + " |")

    print(f"\nPer image at {CALLS} network calls (extrapolated from the units):\n")
    head = ["size", "task", "M", "LatentDAPS paper", "of which UNet / VJPs", "pixel DAPS fast", "DPS fast",
            "LatentDAPS / DAPS", "LatentDAPS / DPS"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for size, u in units.items():
        for task in tasks:
            p = per_image(u, task)
            row = [f"{size}", task, f"{p['M']}", fmt(p["ld"]),
                   f"{100 * p['ld_unet'] / p['ld']:.0f} % / {100 * p['ld_vjp'] / p['ld']:.0f} %",
                   fmt(p["daps"]), fmt(p["dps"]), f"{p['ld'] / p['daps']:.1f}x", f"{p['ld'] / p['dps']:.1f}x"]
            print("| " + " | ".join(row) + " |")

    print("\nUnit model against short real runs (solver.run, this process, warm):\n")
    print("| size | task | run | predicted | measured | measured / predicted |\n|---|---|---|---|---|---|")
    for size in sizes:
        for task in tasks:
            problem = build_problem(task, size, device)
            for name in SHORT:
                if task != tasks[0] and (name != "latent-daps" or size != sizes[0]):
                    continue  # other tasks change only the operator's (small) share: checked at the first size
                prior = latent if name == "latent-daps" else pixel
                predicted = short_prediction(units[size], name, task)
                measured = short_run(name, prior, problem)
                print(f"| {size} | {task} | {name} {describe(name)} | {fmt(predicted)} | {fmt(measured)} | "
                      f"{measured / predicted:.2f} |", flush=True)

    print(f"\n# total {time.perf_counter() - started:.0f} s")


def describe(name: str) -> str:
    preset, over = SHORT[name]
    return f"{preset} " + " ".join(f"{k}={v}" for k, v in over.items())


if __name__ == "__main__":
    main()
