"""G2D2 on the VQ-Diffusion ITHQ architecture against DPS (ADM 256 FFHQ) and LatentDAPS (Stable Diffusion 1.5), at
random initialisation (nothing downloaded): peak memory and time per image at 256 px, ITHQ's native size.

    python benchmarks/g2d2_speed.py [--tasks sr4,inpaint] [--device cpu|cuda] [--dtype fp32|fp16] [--repeats 3]
        [--unit-budget 30] [--threads N] [--no-memory | --memory-only] [--no-others]

G2D2's claim (arXiv 2410.14710) is memory: 4.7 GiB against 20.9 GiB for PSLD, because nothing backpropagates
through the transformer; only the VQ decoder's backward is paid, once per inner iteration. The architectures:

- ITHQ (the configs diffusers' scripts/convert_vq_diffusion_to_diffusers.py builds from VQ-Diffusion's
  configs/ithq.yaml and taming_dvae/config.yaml): Transformer2DModel in discrete mode, 36 layers, 16 heads x 88,
  cross-attention 512, 4097 vector embeddings, 32 x 32 tokens, 100 ada-norm steps; VQModel 64-128-256-512 with
  attention at 32 px, 2 layers per block, 256 latent channels, 4096 codes of 128 dims; VQDiffusionScheduler(4097);
  learned classifier-free embeddings (77 x 512). No text encoder: the prompt embeddings are a fixed random
  (1, 77, 512) tensor, normalised per token as VQ-Diffusion's.
- DPS and LatentDAPS: latent_speed.py's (ADM from [models.ffhq-256.arch], SD 1.5 UNet + VAE).

1. memory, first of all: short real runs (G2D2 2 steps x 2 inner iterations with guidance 5; latent_speed.py's
   short DPS and LatentDAPS runs; and the counterfactual G2D2 avoids: one transformer call backpropagated to its
   input, what gradient guidance through this prior would pay) each in a fresh process: RSS after building and
   peak RSS (VmHWM) on the CPU, ``memory_allocated`` after the build and ``max_memory_allocated`` on CUDA;
2. units, batch 1, median of up to --repeats after one warm-up: the transformer call with guidance (two passes) and
   without, one inner iteration per task (Gumbel-softmax draw, soft decode, operator, residual and KL, backward
   through the decoder, RAdam step), the final decode; with --no-others skipped: latent_speed.py's units for DPS
   (ADM forward + backward) and LatentDAPS;
3. per image: G2D2 paper (100 guided calls + 3000 inner iterations + 1 decode) and fast (25 unguided calls + 500
   inner iterations), DPS paper (1000 guided steps), LatentDAPS paper (100 guided UNet calls + 50 M VJPs);
4. a short real G2D2 run against its prediction from the units (run after step 2, printed last).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import torch
from latent_speed import (
    DTYPES,
    benchmark_parser,
    build_latent,
    build_pixel,
    build_problem,
    fmt,
    generators,
    latent_units,
    memory_after_build,
    parse_benchmark_args,
    per_image,
    pixel_units,
    report_child,
    spawn_child,
    sync,
    timed,
)

from diffrestore.priors.base import Conditioning
from diffrestore.priors.discrete import VQDiffusionPrior
from diffrestore.solvers import get_solver

SIZE = 256
TASKS = ("sr4", "inpaint")
#: configs of microsoft/vq-diffusion-ithq as diffusers' conversion script builds them
ITHQ_TRANSFORMER: dict[str, Any] = {
    "attention_bias": True, "cross_attention_dim": 512, "attention_head_dim": 88, "num_layers": 36, "dropout": 0.0,
    "num_attention_heads": 16, "num_vector_embeds": 4097, "num_embeds_ada_norm": 100, "norm_num_groups": 32,
    "sample_size": 32, "activation_fn": "geglu-approximate", "norm_type": "ada_norm",
}
ITHQ_VQVAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
    "up_block_types": ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (64, 128, 256, 512), "layers_per_block": 2, "latent_channels": 256,
    "num_vq_embeddings": 4096, "norm_num_groups": 32, "vq_embed_dim": 128,
}
SHORT_G2D2 = {"steps": 2, "inner_steps": 2}
PAPER = {"calls": 100, "inner": 3000}
FAST = {"calls": 25, "inner": 500}
DPS_PAPER_STEPS = 1000


class PromptFreeITHQ(VQDiffusionPrior):
    """ITHQ without a text encoder: fixed random prompt embeddings (seed 0), normalised per token; the learned
    classifier-free embeddings as the negative."""

    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        e = torch.randn(1, 77, 512, generator=torch.Generator().manual_seed(0)).to(self.device)
        e = e / e.norm(dim=-1, keepdim=True)
        negative = self.cfg_embeddings[None] if guidance != 1.0 else None
        return Conditioning(embeddings=e, negative=negative, guidance=float(guidance))


def build_ithq(device: torch.device, dtype: torch.dtype) -> PromptFreeITHQ:
    from diffusers import Transformer2DModel, VQDiffusionScheduler, VQModel

    torch.manual_seed(0)
    transformer = Transformer2DModel(**ITHQ_TRANSFORMER).to(device)
    vqvae = VQModel(**ITHQ_VQVAE).to(device)
    scheduler = VQDiffusionScheduler(num_vec_classes=4097)
    cfg = torch.randn(77, 512, generator=torch.Generator().manual_seed(1))
    return PromptFreeITHQ(vqvae, transformer, scheduler, cfg_embeddings=cfg, name="ithq-random", dtype=dtype)


def g2d2_units(prior: PromptFreeITHQ, tasks: list[str], device: torch.device, repeats: int,
               budget: float) -> dict[str, float]:
    solver = get_solver("g2d2", "paper", inner_steps=1)
    guided, plain = solver.conditioning(prior), prior.condition()
    tokens = torch.full((1, 1024), prior.mask_id, device=device)
    tokens[:, ::3] = torch.randint(0, 4096, (1, 342), generator=torch.Generator().manual_seed(2)).to(device)
    units: dict[str, float] = {}
    with torch.no_grad():
        units["transformer_guided"] = timed(lambda: prior.log_p0(tokens, 50, guided), device, repeats, budget)
        units["transformer_plain"] = timed(lambda: prior.log_p0(tokens, 50, plain), device, repeats, budget)
        logp = prior.log_p0(tokens, 50, plain).log_softmax(dim=1)
        ids = logp.argmax(dim=1)
        units["decode"] = timed(lambda: prior.decode_tokens(ids), device, repeats, budget)
        for task in tasks:
            problem = build_problem(task, SIZE, device)
            y = problem.y.to(device)
            units[f"inner_{task}"] = timed(
                lambda problem=problem, y=y: solver.optimise(prior, problem, y, logp, logp, 10.0, 3e-4,
                                                             generators()[0], (SIZE, SIZE)),
                device, repeats, budget)
    return units


def g2d2_per_image(u: dict[str, float], task: str, preset: dict[str, int], guided: bool) -> float:
    call = u["transformer_guided"] if guided else u["transformer_plain"]
    return preset["calls"] * call + preset["inner"] * u[f"inner_{task}"] + u["decode"]


def short_g2d2(prior: PromptFreeITHQ, task: str, device: torch.device) -> float:
    solver = get_solver("g2d2", "paper", **SHORT_G2D2)
    solver.prepare(prior)
    problem = build_problem(task, SIZE, device)
    sync(device)
    t0 = time.perf_counter()
    solver.run(prior, problem, generator=generators())
    sync(device)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- memory (child)


def transformer_backprop(prior: PromptFreeITHQ, device: torch.device) -> float:
    """What a gradient through the transformer would cost (a DPS-style guidance on this prior): one unguided call
    with the gradient of a scalar of its output taken back to the token embeddings (only that table gets a .grad,
    so the extra memory is the activations kept for the backward, not parameter gradients)."""
    embedding = prior.transformer.latent_image_embedding.emb.weight
    embedding.requires_grad_(True)
    tokens = torch.full((1, 1024), prior.mask_id, device=device)
    sync(device)
    t0 = time.perf_counter()
    with torch.enable_grad():
        prior.log_p0(tokens, 50, prior.condition()).logsumexp(dim=1).sum().backward()
    sync(device)
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    """One short G2D2 run (or the backprop counterfactual) in this fresh process; prints one RESULT line (the
    format latent_speed.py reads)."""

    what, task = args.child.split(",")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    prior = build_ithq(device, dtype)
    out: dict[str, Any] = {"built_mib": memory_after_build(device)}
    out["seconds"] = short_g2d2(prior, task, device) if what == "g2d2" else transformer_backprop(prior, device)
    report_child(out, device)


def memory_table(args: argparse.Namespace, task: str, device: torch.device) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    cuda = device.type == "cuda"
    unit = "allocated" if cuda else "RSS"
    print(f"\nMemory of short real runs at {SIZE} px, each in a fresh process ({unit}, MiB; task {task}):\n")
    print(f"| method (prior) | run | {unit} after build | peak | peak - after build | run time |\n"
          "|---|---|---|---|---|---|")
    script = os.path.join(here, "g2d2_speed.py")
    runs = [("g2d2 (ITHQ)", script, f"g2d2,{task}", "paper, 2 steps x 2 inner, g 5"),
            ("backprop through ITHQ's transformer", script, f"backprop,{task}", "1 call, gradient to the input")]
    if not args.no_others:
        runs += [("dps (ADM 256)", os.path.join(here, "latent_speed.py"), f"dps,{SIZE},{task}", "fast, 2 steps"),
                 ("latent-daps (SD 1.5)", os.path.join(here, "latent_speed.py"), f"latent-daps,{SIZE},{task}",
                  "paper, 1 step x 2 calls, 2 HMC steps")]
    for name, script, spec, what in runs:
        r = spawn_child(script, spec, args)
        if "error" in r:
            print(f"| {name} | {what} | {r['error']} | | | |", flush=True)
            continue
        print(f"| {name} | {what} | {r['built_mib']:.0f} | {r['peak_mib']:.0f} | "
              f"{r['peak_mib'] - r['built_mib']:.0f} | {fmt(r['seconds'])} |", flush=True)


# ------------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--no-others", action="store_true", help="G2D2 only (no DPS / LatentDAPS figures)")
    args = parse_benchmark_args(parser)
    if args.child:
        child(args)
        return
    started = time.perf_counter()
    tasks = [t for t in args.tasks.split(",") if t]
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"# {where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {args.dtype}, "
          f"python {platform.python_version()}; networks at random init, batch 1, {SIZE} px")
    if not args.no_memory:
        memory_table(args, tasks[0], device)
    if args.memory_only:
        return
    ithq = build_ithq(device, dtype)
    print("# parameters: " + ", ".join(f"{k} {sum(p.numel() for p in m.parameters()) / 1e6:.0f} M"
                                         for k, m in (("ITHQ transformer", ithq.transformer),
                                                      ("ITHQ VQ-VAE", ithq.vqvae))), flush=True)
    u = g2d2_units(ithq, tasks, device, args.repeats, args.unit_budget)
    # the short real run while the model is built (it is freed before the other priors are built)
    predicted = SHORT_G2D2["steps"] * (u["transformer_guided"] + SHORT_G2D2["inner_steps"] * u[f"inner_{tasks[0]}"])
    predicted += u["decode"]
    measured = short_g2d2(ithq, tasks[0], device)
    del ithq
    print("\nG2D2 unit costs (batch 1, median after a warm-up):\n")
    head = ["transformer guided (2 passes)", "transformer unguided", "inner iteration " + "/".join(tasks), "decode"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    print(f"| {fmt(u['transformer_guided'])} | {fmt(u['transformer_plain'])} | "
          f"{' / '.join(fmt(u[f'inner_{t}']) for t in tasks)} | {fmt(u['decode'])} |", flush=True)
    others: dict[str, float] = {}
    if not args.no_others:
        latent, pixel = build_latent(device, dtype), build_pixel(device, dtype)
        others = latent_units(latent, SIZE, tasks, device, args.repeats, args.unit_budget)
        others.update(pixel_units(pixel, SIZE, tasks, device, args.repeats, args.unit_budget))
        del latent, pixel
    print(f"\nPer image at {SIZE} px (extrapolated from the units):\n")
    head = ["task", "G2D2 paper (100 x guided + 3000 inner)", "G2D2 fast (25 + 500)"]
    if others:
        head += [f"DPS paper ({DPS_PAPER_STEPS} steps)", "LatentDAPS paper", "G2D2 paper / DPS", "G2D2 / LatentDAPS"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for task in tasks:
        paper, fast = g2d2_per_image(u, task, PAPER, True), g2d2_per_image(u, task, FAST, False)
        row = [task, fmt(paper), fmt(fast)]
        if others:
            dps = DPS_PAPER_STEPS * others["adm_grad"]
            ld = per_image(others, task)["ld"]
            row += [fmt(dps), fmt(ld), f"{paper / dps:.2f}", f"{paper / ld:.2f}"]
        print("| " + " | ".join(row) + " |")
    print(f"\nUnit model: G2D2 2 steps x 2 inner ({tasks[0]}) predicted {fmt(predicted)}, measured {fmt(measured)} "
          f"({measured / predicted:.2f})")
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
