"""What tiling costs: one denoiser call on a 1024 x 768 image, untiled against tiled into 256 x 256 windows, side by
side in one run, and each one's peak memory (a fresh process each).

    python benchmarks/tiling.py [--size 1024x768] [--window 256] [--overlaps 0,32,64,128] [--repeats 3]

The default prior is fully convolutional, so it can run both ways on the same pixels: the untiled call is the
reference cost per pixel, the tiled calls pay for the overlap (each pixel is denoised by more than one window)
and for one network call per window. Peak memory: ru_maxrss of a process that loads the prior and makes one call.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def one_call(width: int, height: int, window: int, overlap: int | None, repeats: int) -> dict:
    import torch

    from diffrestore.priors.builtin import default_prior
    from diffrestore.priors.tiled import TiledPrior

    prior = default_prior()
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if overlap is not None:
        prior = TiledPrior(prior, overlap=overlap, window=(window, window))
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            prior.denoise(x, 1.0)
            times.append(time.perf_counter() - t0)
    windows = prior.tiles((height, width)) if overlap is not None else 1
    return {"seconds": statistics.median(times), "windows": windows, "rss_loaded_mb": rss_loaded / 1024,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlaps", default="0,32,64,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.child is not None:
        overlap = None if args.child == "none" else int(args.child)
        print(json.dumps(one_call(width, height, args.window, overlap, args.repeats)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one denoiser call on {width}x{height}, "
          f"windows {args.window}x{args.window}, median of {args.repeats}")
    print("| run | windows | seconds | per megapixel | vs untiled | peak RSS (MB) | of which the model (MB) |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for label in ["none", *args.overlaps.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--size", args.size, "--window", str(args.window),
                              "--repeats", str(args.repeats), "--child", label],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or row["seconds"]
        name = "untiled" if label == "none" else f"tiled, overlap {label}"
        mp = width * height / 1e6
        print(f"| {name} | {row['windows']} | {row['seconds']:.2f} | {row['seconds'] / mp:.2f} | "
              f"{row['seconds'] / base:.2f} | {row['rss_peak_mb']:.0f} | {row['rss_loaded_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
