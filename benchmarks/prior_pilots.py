"""Short pilot trainings for a stronger default prior: which architecture, crop and data to train.

Every pilot is today's recipe (diffrestore/weights/default/MODEL_CARD.md: Adam lr 1e-3, batch 16, seed 0,
--max-downscale 2.5, --permute-channels, --pixel-unshuffle 2, ln sigma ~ N(-1, 1.4^2)) with the changes of its
entry in CANDIDATES, trained for the same number of steps. Scores: the one-call denoising PSNR of the prior's
posterior mean D(y; sigma) on the 256 x 256 centre crops of the held-out astronaut, coffee, chelsea and rocket
(held_out_crop and _scores of benchmarks/default_prior.py, noise seeded with the image's index as its denoise
table does) at sigma 0.05 / 0.1 / 0.2 on the [0, 1] scale (0.1 / 0.2 / 0.4 in the prior's [-1, 1] units).

What was run (2026-12-02; 2 cores, one thread each, another engineer's job on the second core), in this order:

    python benchmarks/default_prior.py export-train /tmp/pilots/skimage
    python benchmarks/default_prior.py export-train-photos /tmp/pilots/photos
    export OMP_NUM_THREADS=1
    python benchmarks/prior_pilots.py eval                     # the shipped default: the model card's numbers
    python benchmarks/prior_pilots.py time --names A,C,D,E,G,H   # which networks fit the 1.4x bound at 512 px
    for p in A B C H; do python benchmarks/prior_pilots.py train $p --steps 1000,2000; done
    for p in A B C H; do python benchmarks/prior_pilots.py train $p --steps 3000; done   # resumes at 2000
    python benchmarks/prior_pilots.py train F --steps 1000,2000,3000
    python benchmarks/prior_pilots.py time --names A,F,C,D,E,G,H   # the timing table, one process
    python benchmarks/prior_pilots.py time --names A,C,D,H --repeats 15 --train-steps 3   # the same, less noisy
    python benchmarks/prior_pilots.py summary
    # the whole command at 512 x 512 (astronaut[:512, :512]), twice each, default prior vs the C and H pilots:
    diffrestore inpaint astro512.png --box 192,192,128,128 --seed 0 [--model /tmp/pilots/{C,H}/step3000] -o OUT

``train NAME --steps 1000,2000`` trains /tmp/pilots/NAME up to each step count in turn (resuming, which is
exact), copies the model files to /tmp/pilots/NAME/stepN and writes its scores to NAME/stepN/eval.json;
``summary`` tabulates those eval.json files; ``eval DIR...`` prints the table for model folders (none: the
shipped default); ``time`` builds every candidate at random initialisation and times, in one process and
interleaved, one no-grad 512 x 512 call (median of --repeats after a warm-up) and a few training steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path("/tmp/pilots")
#: Today's recipe (MODEL_CARD.md), the same for every pilot unless its entry overrides it.
RECIPE = dict(size=48, batch_size=16, seed=0, device="cpu", lr=1e-3, checkpoint_every=250, max_downscale=2.5,
              permute_channels=True, pixel_unshuffle=2, base_channels=32, channel_mults=(1, 2, 2, 4))
#: name -> (training folder under ROOT, train() keyword arguments that differ from RECIPE)
CANDIDATES = {
    "A": ("skimage", {}),                                       # today's recipe (the baseline at this step count)
    "B": ("photos", {}),                                        # today's network, more data
    "C": ("photos", {"channel_mults": (1, 2, 4, 8)}),           # wider low-resolution levels
    "D": ("photos", {"channel_mults": (1, 2, 4, 4)}),           # a little wider at 1/8 and 1/16
    "E": ("photos", {"base_channels": 40}),                     # wider everywhere
    "F": ("photos", {"size": 64}),                              # B on larger crops
    "G": ("photos", {"num_res_blocks": 2}),                     # deeper (timing only)
    "H": ("photos", {"channel_mults": (1, 2, 4, 6)}),           # between D and C (timing only)
}
SIGMAS01 = (0.05, 0.1, 0.2)  # noise std on the [0, 1] scale; the prior's units are twice these


def _default_prior_module():
    spec = importlib.util.spec_from_file_location("default_prior", Path(__file__).with_name("default_prior.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe(name: str) -> dict:
    return {**RECIPE, **CANDIDATES[name][1]}


def build(name: str):
    from diffrestore.priors.builtin import DenoiserUNet, UNetConfig

    r = recipe(name)
    return DenoiserUNet(UNetConfig(channels=3, base_channels=r["base_channels"], channel_mults=r["channel_mults"],
                                   num_res_blocks=r.get("num_res_blocks", 1), pixel_unshuffle=r["pixel_unshuffle"]))


def evaluate(model: str | None) -> dict:
    """PSNR (dB) per held-out image and their mean, per sigma on the [0, 1] scale."""
    import torch

    from diffrestore.priors.builtin import default_prior, load_model_dir
    from diffrestore.run.runtime import make_generator

    dp = _default_prior_module()
    prior = load_model_dir(model) if model else default_prior()
    table = {}
    for s in SIGMAS01:
        row = {}
        for i, name in enumerate(dp.HELD_OUT):
            x = dp.held_out_crop(name)
            y = x + 2 * s * torch.randn(x.shape, generator=make_generator(i))
            with torch.no_grad():
                row[name] = dp._scores(prior.denoise(y, 2 * s), x)[0]
        row["mean"] = sum(row.values()) / len(row)
        table[str(s)] = row
    return table


def print_table(label: str, table: dict) -> None:
    names = list(next(iter(table.values())))
    print(f"{label}\n| sigma [0,1] | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for s, row in table.items():
        print(f"| {s} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")


def run_pilot(name: str, stages: list[int], root: Path) -> None:
    from diffrestore.train import train

    folder, _ = CANDIDATES[name]
    out = root / name
    t_last = [time.time()]

    def progress(done: int, total: int, what: str) -> None:
        if done % 250 == 0:
            now = time.time()
            print(f"{name} step {done}/{total} {what} {(now - t_last[0]) / 250:.3f} s/step", flush=True)
            t_last[0] = now

    for steps in stages:
        train(root / folder, out, steps=steps, progress=progress, **recipe(name))
        snap = out / f"step{steps}"
        snap.mkdir(exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy2(out / f, snap / f)
        meta = json.loads((out / "config.json").read_text())["training"]
        result = {"name": name, "steps": steps, "parameters": meta["parameters"], "loss": meta["final_loss_ema"],
                  "s_per_step": meta["train_seconds"] / steps, "psnr": evaluate(str(snap))}
        (snap / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "psnr"}))
        print_table(f"{name} at {steps} steps", result["psnr"])


def summary(root: Path) -> None:
    """One line per pilot and step count from the eval.json files under ``root``."""
    rows = [json.loads(f.read_text()) for f in root.glob("*/step*/eval.json")]
    print("| pilot | steps | params | s / step | loss | " + " | ".join(f"PSNR sigma {s}" for s in SIGMAS01) + " |")
    print("|---" * (5 + len(SIGMAS01)) + "|")
    for r in sorted(rows, key=lambda r: (r["name"], r["steps"])):
        print(f"| {r['name']} | {r['steps']} | {r['parameters']:,} | {r['s_per_step']:.3f} | {r['loss']:.4f} | "
              + " | ".join(f"{r['psnr'][str(s)]['mean']:.2f}" for s in SIGMAS01) + " |")


def time_all(names: list[str], repeats: int, train_steps: int) -> None:
    """Params, fp16 MB, median no-grad 512 x 512 call (interleaved) and s per training step per candidate."""
    import torch

    from diffrestore.priors.builtin import apply_denoiser, count_parameters
    from diffrestore.train import _sample_batch

    nets = {n: build(n).eval() for n in names}
    x, sigma = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)), torch.tensor([0.2])
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            apply_denoiser(nets[n], x, sigma)  # warm-up
        for _ in range(repeats):
            for n in names:
                t0 = time.perf_counter()
                apply_denoiser(nets[n], x, sigma)
                times[n].append(time.perf_counter() - t0)
    step_s = {}
    for n in names:  # forward + backward + Adam at the candidate's crop size and batch 16
        r, net = recipe(n), nets[n].train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        images = [torch.rand(3, 256, 256, generator=gen) * 2 - 1]
        spent = []
        for _ in range(train_steps + 1):
            t0 = time.perf_counter()
            x0 = _sample_batch(images, r["size"], r["batch_size"], r["max_downscale"], gen, True)
            s = (-1.0 + 1.4 * torch.randn(r["batch_size"], generator=gen)).exp()
            loss = (apply_denoiser(net, x0 + s[:, None, None, None] * torch.randn(x0.shape), s) - x0).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            spent.append(time.perf_counter() - t0)
        step_s[n] = statistics.median(spent[1:])
    base, base_min = statistics.median(times[names[0]]), min(times[names[0]])
    print(f"| pilot | changes | params | fp16 MB | ms / 512 px call (median, min) | ratio to {names[0]} (median, min) "
          "| s / train step |\n" + "|---" * 7 + "|")
    for n in names:
        params, med, low = count_parameters(nets[n]), statistics.median(times[n]), min(times[n])
        print(f"| {n} | {CANDIDATES[n][0]} {CANDIDATES[n][1] or 'today'} | {params:,} | {2 * params / 1e6:.1f} | "
              f"{1000 * med:.0f}, {1000 * low:.0f} | {med / base:.2f}, {low / base_min:.2f} | {step_s[n]:.3f} |")


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train one pilot, scoring it at each step count")
    p_train.add_argument("name", choices=sorted(CANDIDATES))
    p_train.add_argument("--steps", default="1000,2000", help="comma list of step counts (default: %(default)s)")
    p_train.add_argument("--root", type=Path, default=ROOT, help="data and output folder (default: %(default)s)")
    p_eval = sub.add_parser("eval", help="the PSNR table of model folders (none: the shipped default)")
    p_eval.add_argument("models", nargs="*")
    p_time = sub.add_parser("time", help="params, 512 px inference time and s/step of every candidate")
    p_time.add_argument("--names", default=",".join(CANDIDATES), help="comma list, the first is the reference")
    p_time.add_argument("--repeats", type=int, default=5)
    p_time.add_argument("--train-steps", type=int, default=5)
    p_summary = sub.add_parser("summary", help="the mean PSNR of every pilot scored under --root")
    p_summary.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    if args.command == "train":
        run_pilot(args.name, sorted(int(s) for s in args.steps.split(",")), args.root)
    elif args.command == "eval":
        for model in args.models or [None]:
            print_table(model or "shipped default", evaluate(model))
    elif args.command == "summary":
        summary(args.root)
    else:
        time_all(args.names.split(","), args.repeats, args.train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
