"""What one random stream per image and one-image network calls cost and buy on the CPU.

Restores the same 4 crops (default prior, DAPS fast preset with fewer steps, inpainting) three ways in one run:
  alone      each image in its own solver call (the reference);
  per-item   the 4 images in one solver call, the network seeing one image at a time (what the engine does on
             the CPU: bitwise equal to "alone");
  batched    the 4 images in one solver call and one network call per step (what a GPU does: the same random
             streams, but CPU kernels round differently for batch 4 than for batch 1).
Prints wall time per way, the ratios measured side by side, and max |difference| to "alone".

    python benchmarks/batch_invariance.py [--size 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from diffrestore import tasks
from diffrestore.priors import base as prior_base
from diffrestore.priors.builtin import default_prior
from diffrestore.run import engine
from diffrestore.solvers import get_solver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    prior = default_prior()
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]
    s = args.size
    images = [photo[..., y : y + s, x : x + s].contiguous() for y, x in ((0, 0), (100, 200), (300, 50), (250, 300))]
    mask = torch.zeros(1, 1, s, s, dtype=torch.bool)
    mask[..., s // 4 : s // 2, s // 3 : 2 * s // 3] = True
    solver = get_solver("daps", "fast", steps=args.steps)
    task = tasks.resolve_task("inpaint", {}, simulate=True)

    def restore(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        out = engine.restore_batch(prior, solver, task, batch, mask=mask, num_samples=1, seed=0)
        return [r.image for r in out]

    timings: dict[str, float] = {}
    results: dict[str, list[torch.Tensor]] = {}
    restore(images[:1])  # warm-up: the first network calls pay one-off set-up costs
    t0 = time.perf_counter()
    results["alone"] = [restore([image])[0] for image in images]
    timings["alone"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["per-item"] = restore(images)
    timings["per-item"] = time.perf_counter() - t0
    # "batched": the engine without its one-image wrapper, for this call only
    original = prior_base.PerItemCalls
    try:
        prior_base.PerItemCalls = lambda p: p  # type: ignore[assignment,misc]
        t0 = time.perf_counter()
        results["batched"] = restore(images)
        timings["batched"] = time.perf_counter() - t0
    finally:
        prior_base.PerItemCalls = original  # type: ignore[misc]

    print(f"{len(images)} crops of {s}x{s}, DAPS fast with {args.steps} steps, {torch.get_num_threads()} threads")
    for way in ("alone", "per-item", "batched"):
        diff = max(float((a - b).abs().max()) for a, b in zip(results[way], results["alone"], strict=True))
        print(f"{way:>9}: {timings[way]:7.2f} s  ({timings[way] / timings['per-item']:.2f} x per-item)  "
              f"max |diff to alone| {diff:.2e}")


if __name__ == "__main__":
    main()
