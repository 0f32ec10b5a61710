"""Every task as fast as its network calls allow: total / network time of one image's restoration, per task.

    .venv/bin/python benchmarks/task_overhead.py                     # every row: about 40 min here
    .venv/bin/python benchmarks/task_overhead.py --tasks deblur,inpaint-box --sizes 256 --noise 0.01 --methods dps
    git worktree add /tmp/old 0efefbc                                 # before / after in one table (twice as long)
    .venv/bin/python benchmarks/task_overhead.py --compare /tmp/old

Each row restores one image with the default prior (``--model builtin``) on the CPU through the package's public
path, ``diffrestore.restore(..., simulate=True)``: the clean image is degraded (seeded), restored, and its PSNR
printed. total = the process CPU time of that call (checks, the simulated measurement, the solver, the metrics;
the process start-up, the model load and a first restoration of the task on a small image, which pays its lazy
imports, are left out). network = the calls the prior actually received (counted at its ``denoise``) times the
cost of one such call on that image size, measured in the same process (benchmarks/network_cost.py: a forward
pass, or forward + backward to the input for a call that needs the gradient, as DPS's do). The target is
total / network <= 1.2 for every row.

Rows: the tasks of ``TASK_ROWS`` (inpaint box and random 70 %, superres x2 / x4 bicubic and x2 box, deblur
gaussian / motion with the papers' 61 px kernels and a 15 px kernel file, all with the operator's default reflect
border, colorize, denoise, hdr, phase-retrieval), x ``--sizes`` (the restored image's side: a centre crop of a
held-out scikit-image photo resized with PIL; for superres the low-resolution input is made from it, so the
output is that size), x ``--noise`` (sigma on [0, 1]), x ``--methods`` (preset fast, ``--steps`` steps).

Every row runs in a worker subprocess that imports the package from one root (PYTHONPATH) and keeps its prior
loaded: the current checkout, and with ``--compare DIR`` also DIR (an older checkout: ``diffrestore.restore`` has
the same options there); the two workers take each row in turn. Times are the workers' CPU time with one torch
thread (on a shared machine wall time mostly measures the neighbours). A row that fails shows its error in its
cell; a worker that dies is restarted for the next row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_PHOTOS = ("astronaut", "coffee", "chelsea")
TARGET = 1.2
#: the warm-up restoration's image side: another shape than the rows', so no shape-keyed cache is warmed for them
WARM_SIZE = 96


def inpaint_box(size: int) -> dict[str, Any]:
    return {"box": (size // 4, size // 4, size // 2, size // 2)}  # the centre half, as the DPS paper's 128 of 256


#: row key -> (task, its options for a restored image of side ``size``); "kernel" is filled in with a file
TASK_ROWS: dict[str, tuple[str, Callable[[int], dict[str, Any]]]] = {
    "inpaint-box": ("inpaint", inpaint_box),
    "inpaint-random": ("inpaint", lambda size: {"random_fraction": 0.7}),
    "superres-x2-bicubic": ("superres", lambda size: {"scale": 2, "downsample": "bicubic"}),
    "superres-x4-bicubic": ("superres", lambda size: {"scale": 4, "downsample": "bicubic"}),
    "superres-x2-box": ("superres", lambda size: {"scale": 2, "downsample": "box"}),
    "deblur-gaussian-61": ("deblur", lambda size: {"blur": "gaussian", "kernel_size": 61}),
    "deblur-motion-61": ("deblur", lambda size: {"blur": "motion", "kernel_size": 61}),
    "deblur-kernel-15": ("deblur", lambda size: {"kernel": None}),
    "colorize": ("colorize", lambda size: {}),
    "denoise": ("denoise", lambda size: {}),
    "hdr": ("hdr", lambda size: {}),
    "phase-retrieval": ("phase-retrieval", lambda size: {}),
}


# ------------------------------------------------------------------------------------------------ the worker


class CallCounter:
    """Counts the calls a prior's ``denoise`` receives, by input shape and by whether the caller differentiates
    through it (the input requires grad), by replacing the method on this one prior object."""

    def __init__(self, prior: Any) -> None:
        self.denoise = prior.denoise  # the network itself, for timing one call
        self.counts: dict[tuple[tuple[int, ...], bool], int] = {}
        prior.denoise = self.counting

    def counting(self, x: Any, sigma: Any, *args: Any) -> Any:
        key = (tuple(x.shape), bool(x.requires_grad))
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.denoise(x, sigma, *args)


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


class RowRunner:
    """The worker's side: the package of its PYTHONPATH, the prior loaded once and counted, one row at a time."""

    def __init__(self, model: str, repeats: int, runs: int) -> None:
        import torch

        torch.set_num_threads(1)
        import diffrestore
        from diffrestore.priors.load import load_prior

        self.package, self.model, self.repeats, self.runs = diffrestore, model, repeats, runs
        self.prior = load_prior(model, device="cpu")
        self.counter = CallCounter(self.prior)
        self.costs: dict[tuple[tuple[int, ...], bool], float] = {}  # (shape, backward) -> seconds of one call
        self.warmed: set[tuple[str, str]] = set()

    def restore(self, row: dict[str, Any], image_file: str, options: dict[str, Any], steps: int) -> Any:
        import numpy as np
        import torch

        return self.package.restore(torch.from_numpy(np.load(image_file)), task=row["task"], method=row["method"],
                                    model=self.model, prior=self.prior, steps=steps, seed=0, simulate=True,
                                    device="cpu", noise_sigma=row["noise"], **options)

    def call_cost(self, shape: tuple[int, ...], backward: bool) -> float:
        import torch
        from network_cost import call_cost

        if (shape, backward) not in self.costs:
            x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
            self.costs[shape, backward] = call_cost(self.counter.denoise, x, backward=backward, repeats=self.repeats)
        return self.costs[shape, backward]

    def measure(self, row: dict[str, Any]) -> dict[str, Any]:
        if (row["key"], row["method"]) not in self.warmed:
            self.restore(row, row["warm_image"], row["warm_options"], 1)
            self.warmed.add((row["key"], row["method"]))
        totals = []
        for _ in range(self.runs):
            self.counter.counts.clear()
            start = time.process_time()
            result = self.restore(row, row["image"], row["options"], row["steps"])
            totals.append(time.process_time() - start)
        counts = self.counter.counts
        return {"total": min(totals), "network": sum(n * self.call_cost(*key) for key, n in counts.items()),
                "forward": sum(n for (_, backward), n in counts.items() if not backward),
                "backward": sum(n for (_, backward), n in counts.items() if backward),
                "psnr": result.metrics.get("psnr")}


def serve(model: str, repeats: int, runs: int) -> None:
    """The worker: reads rows (JSON lines) on stdin, answers each with one JSON line on the original stdout."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the package prints goes to stderr and cannot break the protocol
    runner = RowRunner(model, repeats, runs)
    protocol.write(json.dumps({"package": str(Path(runner.package.__file__).resolve().parents[1])}) + "\n")
    for line in sys.stdin:
        try:
            answer = runner.measure(json.loads(line))
        except Exception as error:  # one failing row must not end the table
            answer = {"error": one_line(error)}
        protocol.write(json.dumps(answer) + "\n")


# ------------------------------------------------------------------------------------------------ the parent


class Worker:
    """A worker subprocess importing the package from ``root``, started at its first row; after it dies (a crash
    on one row) the next row starts a fresh one. One that cannot start answers every row with that error."""

    def __init__(self, name: str, root: Path, args: argparse.Namespace, log_dir: Path) -> None:
        self.name, self.root, self.args = name, root, args
        self.log_path = log_dir / f"worker-{name or 'current'}.log"  # its stderr: the package's own output
        self.process: subprocess.Popen | None = None
        self.failed_start: str | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", self.args.model,
                   "--repeats", str(self.args.repeats), "--runs", str(self.args.runs)]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            env=env, text=True)
        package = self.receive().get("package")
        if package is None or Path(package) != self.root.resolve():  # e.g. an installed copy shadowing PYTHONPATH
            raise RuntimeError(f"the worker imported the package from {package}, not from {self.root}")

    def receive(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            raise RuntimeError(f"worker exited ({self.process.returncode}): {lines[-1] if lines else 'no output'}")
        return json.loads(line)

    def run(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.failed_start:
            return {"error": self.failed_start}
        if self.process is None:
            try:
                self.start()
            except (RuntimeError, OSError, ValueError) as error:
                self.close()
                self.failed_start = f"worker did not start: {one_line(error)}"
                return {"error": self.failed_start}
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(row) + "\n")
            self.process.stdin.flush()
            return self.receive()
        except (RuntimeError, OSError, ValueError) as error:  # it died on this row
            self.close()
            return {"error": one_line(error)}

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None


def select_tasks(text: str) -> list[str]:
    """Row keys named by ``text``: each name selects the key itself or every key it begins (``deblur``)."""
    keys: list[str] = []
    for name in text.split(","):
        matches = [key for key in TASK_ROWS if key == name or key.startswith(name + "-")]
        if not matches:
            raise SystemExit(f"unknown task row '{name}': use one of {', '.join(TASK_ROWS)} (or a prefix)")
        keys += [key for key in matches if key not in keys]
    return keys


def write_kernel(path: Path) -> Path:
    """A 15 x 15 blur kernel file: an anisotropic Gaussian (std 4 and 1 px) at 30 degrees, summing to 1."""
    import numpy as np

    r = np.arange(15) - 7.0
    yy, xx = np.meshgrid(r, r, indexing="ij")
    angle = np.deg2rad(30.0)
    u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
    kernel = np.exp(-0.5 * ((u / 4.0) ** 2 + (v / 1.0) ** 2)).astype(np.float32)
    np.save(path, kernel / kernel.sum())
    return path


def write_crops(photo: str, sizes: list[int], folder: Path) -> dict[int, str]:
    """size -> a .npy file of the photo's centre crop at that side ((1, 3, S, S) float32 in [-1, 1])."""
    import numpy as np
    from dps_schedule import centre_crop  # the square centre crop, resized with PIL

    files = {}
    for size in sizes:
        files[size] = str(folder / f"{photo}-{size}.npy")
        np.save(files[size], centre_crop(photo, size).numpy())
    return files


def build_rows(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    sizes = [int(v) for v in args.sizes.split(",")]
    crops = write_crops(args.image, [*sizes, WARM_SIZE], folder)
    kernel = str(write_kernel(folder / "kernel15.npy"))

    def options(key: str, size: int) -> dict[str, Any]:
        values = TASK_ROWS[key][1](size)
        return {**values, "kernel": kernel} if "kernel" in values else values

    rows = []
    for key in select_tasks(args.tasks):
        for size in sizes:
            for noise in args.noise.split(","):
                for method in args.methods.split(","):
                    rows.append({"key": key, "task": TASK_ROWS[key][0], "size": size, "noise_label": noise,
                                 "noise": float(Fraction(noise)), "method": method, "steps": args.steps,
                                 "image": crops[size], "options": options(key, size),
                                 "warm_image": crops[WARM_SIZE], "warm_options": options(key, WARM_SIZE)})
    return rows


def calls_text(answer: dict[str, Any]) -> str:
    parts = [f"{answer['forward']} fwd"] if answer["forward"] else []
    parts += [f"{answer['backward']} fwd+bwd"] if answer["backward"] else []
    return " + ".join(parts) or "0"


def side_cells(answer: dict[str, Any]) -> list[str]:
    """calls, total / network s, their ratio, PSNR; an error in the first cell."""
    if "error" in answer:
        return ["error: " + answer["error"].replace("|", "/")[:160], "-", "-", "-"]
    ratio = f"{answer['total'] / answer['network']:.2f}" if answer["network"] else "-"
    psnr = "-" if answer["psnr"] is None else f"{answer['psnr']:.2f}"
    seconds = "{:.3f}".format if answer["total"] < 1 else "{:.2f}".format
    return [calls_text(answer), f"{seconds(answer['total'])} / {seconds(answer['network'])}", ratio, psnr]


def summary(name: str, rows: list[dict[str, Any]], answers: list[dict[str, Any]]) -> str:
    ratios = [(row, a["total"] / a["network"]) for row, a in zip(rows, answers, strict=True)
              if "error" not in a and a["network"]]
    failed = sum("error" in a for a in answers)
    text = f"{name or 'this checkout'}: {sum(r <= TARGET for _, r in ratios)} of {len(rows)} rows at total / " \
           f"network <= {TARGET}"
    if ratios:
        row, worst = max(ratios, key=lambda item: item[1])
        text += f"; worst {worst:.2f} ({row['key']} {row['size']} px, sigma {row['noise_label']}, {row['method']})"
    if len(rows) - failed - len(ratios):
        text += f"; {len(rows) - failed - len(ratios)} without network calls"
    return text + (f"; {failed} failed" if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASK_ROWS), help="row keys or their prefixes, comma-separated")
    parser.add_argument("--sizes", default="256,512", help="sides of the restored image in pixels")
    parser.add_argument("--noise", default="1/255,0.01,0.05", help="noise sigmas on [0, 1]")
    parser.add_argument("--methods", default="daps,dps")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--image", default="astronaut", choices=HELD_OUT_PHOTOS, help="the held-out photo")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="also run every row on the package in DIR")
    parser.add_argument("--repeats", type=int, default=3, help="calls timed for the cost of one network call")
    parser.add_argument("--runs", type=int, default=1, help="restorations per row (the fastest counts)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        serve(args.model, args.repeats, args.runs)
        return 0
    if args.compare is not None and not (args.compare / "diffrestore" / "__init__.py").is_file():
        parser.error(f"--compare {args.compare}: no diffrestore package there")

    with tempfile.TemporaryDirectory(prefix="task-overhead-") as tmp:
        rows = build_rows(args, Path(tmp))
        roots = {"old": args.compare.resolve(), "new": ROOT} if args.compare else {"": ROOT}
        workers = [Worker(name, root, args, Path(tmp)) for name, root in roots.items()]
        print(f"# task overhead: model {args.model}, preset fast, {args.steps} steps, photo {args.image}, CPU, one "
              f"torch thread, process CPU time; cells: calls, total / network s, ratio (target <= {TARGET}), PSNR")
        head = ["task", "size", "sigma", "method"]
        for worker in workers:
            prefix = f"{worker.name} " if worker.name else ""
            head += [f"{prefix}calls", f"{prefix}total / network s", f"{prefix}ratio", f"{prefix}PSNR"]
        print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|", flush=True)
        answers: dict[str, list[dict[str, Any]]] = {worker.name: [] for worker in workers}
        try:
            for row in rows:
                cells = [row["key"], str(row["size"]), row["noise_label"], row["method"]]
                for worker in workers:  # in turn, so a slow spell of the machine falls on both
                    answer = worker.run(row)
                    answers[worker.name].append(answer)
                    cells += side_cells(answer)
                print("| " + " | ".join(cells) + " |", flush=True)
        finally:
            for worker in workers:
                worker.close()
        print()
        for worker in workers:
            print(summary(worker.name, rows, answers[worker.name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
