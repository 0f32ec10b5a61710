"""The default prior: export its training data, and benchmark it against classical restoration.

    # 1. the training images (natural photos shipped with scikit-image, minus the four held out)
    python benchmarks/default_prior.py export-train /tmp/skimage_train
    #    or those plus the photos of benchmarks/training_photos.toml (Debian wallpaper packages)
    python benchmarks/default_prior.py export-train-photos --print-apt   # the apt-get command for them
    python benchmarks/default_prior.py export-train-photos /tmp/photo_train
    # 2. train it (see diffrestore/weights/default/MODEL_CARD.md for the exact command)
    # 3. the benchmark (results in docs/default_prior.md)
    python benchmarks/default_prior.py bench --presets fast --solvers daps,dps --tasks all --images all

The benchmark: 256 x 256 centre crops of the four held-out images, five tasks (docs/default_prior.md), DAPS and
DPS with the default prior against classical baselines, PSNR / SSIM (skimage.metrics, [0, 1] scale) and wall
time per image. Classical baselines with a free parameter (TV weight, Gaussian width, Wiener balance) get the
best value of a small grid chosen against the ground truth ("oracle-tuned"), which favours them; BM3D (denoising,
where the optional ``bm3d`` package is installed) is given the true noise sigma instead. Everything is
seeded: measurement noise and masks from seed ``--seed`` + the image's index in astronaut, coffee, chelsea, rocket
(0-3, whichever --images are run), solvers from ``--seed``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

#: Held out of training, used for evaluation only.
HELD_OUT = ("astronaut", "coffee", "chelsea", "rocket")
#: Natural (photographic or microscope/telescope) images of skimage.data used for training. Synthetic or
#: degraded ones are left out: chessboard, color, logo, phantom, horse (a silhouette), clock_motion (motion blur).
TRAIN_IMAGES = (
    "brick", "camera", "cell", "coins", "grass", "gravel", "hubble_deep_field", "ihc", "microaneurysms", "moon",
    "motorcycle_left", "motorcycle_right", "page", "retina", "text",
)


def skimage_image(name: str):
    """A uint8 (H, W) or (H, W, 3) array of skimage.data (shipped with the package, no download)."""
    import numpy as np
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        img = getattr(skimage.data, {"ihc": "immunohistochemistry"}.get(name, name))()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def skimage_training_images():
    """(name, PIL image) of every scikit-image training image, never a held-out one."""
    from PIL import Image

    for name in TRAIN_IMAGES:
        assert name not in HELD_OUT
        yield name, Image.fromarray(skimage_image(name))


def export_train(dest: Path) -> list[Path]:
    """Write the training images as PNGs into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, img in skimage_training_images():
        written.append(dest / f"{name}.png")
        img.save(written[-1])
    return written


#: Real photographs from Debian wallpaper packages (extra training data): where, sha256, licence and credit.
PHOTOS_TOML = Path(__file__).with_name("training_photos.toml")
PHOTO_KEYS = ("name", "package", "version", "path", "width", "height", "sha256", "licence", "credit")
#: Photos are stored downscaled: the prior trains on small crops, and 1024 px keeps the folder small.
MAX_SIDE = 1024


class PhotoError(Exception):
    """A training photo is missing or not the recorded file; main() prints it as one line and exits 2."""


def load_photos(toml_path: Path = PHOTOS_TOML) -> list[dict]:
    """The [[photo]] tables of ``toml_path``, each checked to have all of PHOTO_KEYS."""
    try:  # Python >= 3.11
        import tomllib
    except ImportError:  # Python 3.10: the tomli backport (a dependency there)
        import tomli as tomllib

    photos = tomllib.loads(Path(toml_path).read_text(encoding="utf-8")).get("photo", [])
    for i, photo in enumerate(photos):
        missing = [k for k in PHOTO_KEYS if k not in photo]
        if missing:
            raise PhotoError(f"{toml_path}: photo {i + 1} lacks {', '.join(missing)}")
    names = [p["name"] for p in photos]
    if len(set(names)) != len(names):  # two photos would be written to one file
        raise PhotoError(f"{toml_path}: a photo name is used twice")
    return photos


def apt_command(packages) -> str:
    """The one apt-get command that installs the packages the photos come from."""
    return "apt-get install -y --no-install-recommends " + " ".join(sorted(set(packages)))


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` unless the same bytes are there already. A different file already at ``path``
    is never overwritten: it may be someone's data, or a training set built otherwise (another Pillow version
    can resize or encode to other bytes)."""
    if path.exists():
        if path.read_bytes() == data:
            return
        raise PhotoError(f"{path} exists and differs from what would be written; not overwriting it")
    path.write_bytes(data)


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")  # the same encoder and defaults as Image.save(path) in export_train
    return buf.getvalue()


def export_train_photos(dest: Path, toml_path: Path = PHOTOS_TOML) -> list[Path]:
    """Write the whole photo training set into ``dest``: the skimage training images exactly as export_train
    writes them, and every photo of ``toml_path`` as ``<name>.png``, downscaled with Pillow's LANCZOS filter so
    that its long side is at most 1024 px (smaller photos are kept as they are; grey stays grey, anything else
    becomes RGB). The photos come from Debian packages; install them with

        apt-get install -y --no-install-recommends lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 \\
            mate-backgrounds plasma-workspace-wallpapers

    (``export-train-photos --print-apt`` prints the command made from the toml). Every source is checked before
    anything is written: a missing file raises PhotoError naming the apt-get command for the missing packages, a
    file whose sha256 is not the recorded one raises PhotoError naming it (another package version: the photo
    may differ, so the training set would). A file already in ``dest`` is skipped when identical and never
    overwritten when it differs (PhotoError; the files before it stay written). Returns the paths written or
    already there."""
    import hashlib

    from PIL import Image

    photos = load_photos(toml_path)
    missing = sorted({p["package"] for p in photos if not Path(p["path"]).is_file()})
    if missing:
        raise PhotoError(f"training photos missing; install their packages with: {apt_command(missing)}")
    for p in photos:
        if hashlib.sha256(Path(p["path"]).read_bytes()).hexdigest() != p["sha256"]:
            raise PhotoError(f"{p['path']}: sha256 differs from the one recorded for {p['package']} {p['version']}")
        if p["name"] in TRAIN_IMAGES or any(held in p["name"] for held in HELD_OUT):
            raise PhotoError(f"{toml_path}: photo name {p['name']!r} clashes with a skimage or held-out image")

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img in skimage_training_images():
        paths.append(dest / f"{name}.png")
        _write_new(paths[-1], _png_bytes(img))
    for p in photos:
        with Image.open(p["path"]) as img:
            img = img.convert("L" if img.mode == "L" else "RGB")
        scale = MAX_SIDE / max(img.size)
        if scale < 1:
            img = img.resize(tuple(max(1, round(s * scale)) for s in img.size), Image.LANCZOS)
        paths.append(dest / f"{p['name']}.png")
        _write_new(paths[-1], _png_bytes(img))
    return paths



#: task -> (operator name, operator params, noise sigma on the [0, 1] scale)
TASKS = {
    "denoise": ("identity", {}, 0.1),
    "sr4": ("sr", {"factor": 4}, 0.01),
    "inpaint_random": ("inpaint", {"fraction": 0.7}, 0.01),
    "gaussian_blur": ("gaussian_blur", {"kernel_size": 61, "sigma": 3.0}, 0.01),
    "inpaint_box": ("inpaint", {"box": (96, 96, 64, 64)}, 0.01),
}
CROP = 256
CLASSICAL_LABELS = {"denoise": "best of TV / Gaussian filter (oracle-tuned)",
                    "gaussian_blur": "Wiener (oracle-tuned balance)"}


@functools.cache
def _bm3d():
    """The ``bm3d`` module, or None (said once on stderr) where it is not installed: BM3D is the strongest
    classical denoiser, but an optional one (``pip install bm3d``; free for non-commercial use only, see its
    LICENSE), so the benchmark runs without it."""
    try:
        import bm3d
    except ImportError:
        print("note: bm3d is not installed (pip install bm3d): BM3D skipped in the denoising baseline",
              file=sys.stderr, flush=True)
        return None
    return bm3d


def classical_label(task: str, method: str) -> str:
    """The table label of the classical baseline: the candidates it picks from, not the one that won."""
    if task == "denoise" and _bm3d() is not None:
        return "best of BM3D / TV / Gaussian filter (oracle-tuned)"
    return CLASSICAL_LABELS.get(task, method.split(" (")[0])


def held_out_crop(name: str):
    """The 256 x 256 centre crop of a held-out image as a (1, 3, 256, 256) float32 tensor in [-1, 1]."""
    import numpy as np
    import torch

    img = skimage_image(name)
    h, w = img.shape[:2]
    top, left = (h - CROP) // 2, (w - CROP) // 2
    crop = img[top : top + CROP, left : left + CROP].astype(np.float32) / 255.0
    return torch.from_numpy(crop).permute(2, 0, 1)[None] * 2 - 1


def _to_numpy01(x):
    import numpy as np

    return np.clip((x[0].permute(1, 2, 0).double().numpy() + 1) / 2, 0, 1)


def _scores(x_hat, x) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _to_numpy01(x_hat), _to_numpy01(x)
    return (float(peak_signal_noise_ratio(b, a, data_range=1.0)),
            float(structural_similarity(b, a, data_range=1.0, channel_axis=2)))


def _best_of(candidates, x):
    """The candidate with the best PSNR against the ground truth (oracle tuning of classical baselines)."""
    best = None
    for label, img in candidates:
        score = _scores(img, x)
        if best is None or score[0] > best[1][0]:
            best = (label, score, img)
    return best


def classical(task: str, problem, x):
    """(method label, restored image) of the classical baseline for ``task``."""
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter
    from skimage.restoration import denoise_tv_chambolle, inpaint_biharmonic, wiener

    def back(arr):
        return torch.from_numpy(np.asarray(arr, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1

    y = _to_numpy01(problem.y) if task != "sr4" else None
    if task == "denoise":
        cands = [(f"TV (weight {w})", back(denoise_tv_chambolle(y, weight=w, channel_axis=2)))
                 for w in (0.03, 0.05, 0.08, 0.12, 0.18)]
        cands += [(f"Gaussian filter (sigma {s})", back(gaussian_filter(y, sigma=(s, s, 0)))) for s in (0.7, 1.0, 1.5)]
        bm3d = _bm3d()
        if bm3d is not None:
            # BM3D needs no tuning: it is given the true noise std on the [0, 1] scale of y (GaussianNoise.sigma);
            # bm3d_rgb does the block matching on luminance (opponent colour transform), as its docs advise.
            sigma = problem.noise.sigma
            cands.append((f"BM3D (sigma {sigma:g})", back(np.clip(bm3d.bm3d_rgb(y, sigma), 0, 1))))
        label, _, img = _best_of(cands, x)
        return label, img
    if task == "sr4":
        up = torch.nn.functional.interpolate(problem.y, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return "bicubic upsampling", up.clamp(-1, 1)
    if task.startswith("inpaint"):
        missing = problem.operator.missing.reshape(x.shape[-2:]).numpy()
        return "biharmonic inpainting", back(inpaint_biharmonic(y, missing, channel_axis=2))
    if task == "gaussian_blur":
        kernel = problem.operator.kernel.double().numpy()
        cands = []
        for balance in (0.01, 0.03, 0.1, 0.3, 1.0):
            out = np.stack([wiener(y[..., c], kernel, balance, clip=True) for c in range(3)], axis=-1)
            cands.append((f"Wiener (balance {balance})", back(out)))
        label, _, img = _best_of(cands, x)
        return label, img
    raise ValueError(task)


def bench(images: list[str], tasks: list[str], solvers: list[str], presets: list[str], seed: int,
          model: str | None, overrides: dict[str, dict], num_samples: int = 1,
          classical_rows: bool = True) -> list[dict]:
    import time

    import torch

    from diffrestore.operators import GaussianNoise, Problem, build_operator, simulate
    from diffrestore.priors.builtin import default_prior, load_model_dir
    from diffrestore.run.runtime import image_identity, make_generator, sample_generators
    from diffrestore.solvers import get_solver
    from diffrestore.solvers.methods import sample_settings

    prior = load_model_dir(model) if model else default_prior()
    rows = []
    for name in images:
        # The image's place in HELD_OUT, not in the --images list: a run split over several processes
        # measures exactly what one run over all images does.
        i = HELD_OUT.index(name)
        x = held_out_crop(name)
        for task in tasks:
            op_name, params, sigma = TASKS[task]
            gen = make_generator(seed + i)
            op = build_operator(op_name, tuple(x.shape[1:]), generator=gen, **params)
            problem = simulate(op, GaussianNoise(sigma), x, gen)
            if classical_rows:
                t0 = time.time()
                label, img = classical(task, problem, x)
                rows.append(dict(image=name, task=task, method=label, preset="-", seconds=time.time() - t0,
                                 **dict(zip(("psnr", "ssim"), _scores(img, x), strict=True))))
                print(json.dumps(rows[-1]), flush=True)
            if classical_rows and task == "denoise":
                # For pure Gaussian denoising the prior's own denoiser at the noise level is the exact posterior
                # mean (MMSE) under the prior: one network call, a reference point for the samplers below.
                t0 = time.time()
                with torch.no_grad():
                    x_mmse = prior.denoise(problem.y, 2 * sigma)
                psnr_value, ssim_value = _scores(x_mmse, x)
                rows.append(dict(image=name, task=task, method="prior denoiser (MMSE, 1 call)", preset="-",
                                 seconds=time.time() - t0, psnr=psnr_value, ssim=ssim_value))
                print(json.dumps(rows[-1]), flush=True)
            for solver in solvers:
                for preset in presets:
                    # the sample count's settings as the CLI's -n passes them (DAPS draws its inner step for N > 1)
                    extra = {**sample_settings(solver, num_samples), **overrides.get(solver, {})}
                    tag = preset + ("" if not extra else " " + ",".join(f"{k}={v}" for k, v in extra.items()))
                    # N posterior samples in one batch, as `diffrestore ... -n N` runs them: the first sample is
                    # scored on its own, and the mean of all N (what the CLI writes with -n N) as another row.
                    batch = Problem(operator=problem.operator, noise=problem.noise,
                                    y=problem.y.expand(num_samples, *problem.y.shape[1:]).contiguous())
                    t0 = time.time()
                    # one generator per sample, as the CLI draws them (runtime.sample_generators)
                    streams = sample_generators(seed, image_identity(x), num_samples)
                    samples = get_solver(solver, preset, **extra).run(prior, batch, generator=streams)
                    seconds = time.time() - t0
                    samples = samples.clamp(-1, 1)
                    outputs = [("1 sample", samples[:1], seconds / num_samples)]
                    if num_samples > 1:
                        outputs.append((f"mean of {num_samples}", samples.mean(0, keepdim=True), seconds))
                    for what, x_hat, secs in outputs:
                        psnr_value, ssim_value = _scores(x_hat, x)
                        # rms of A(x_hat) - y over the noise std (tensor units): about 1 for the truth, well
                        # below 1 when a sample fits the noise (over-fitting)
                        with torch.no_grad():
                            residual = float((problem.operator(x_hat) - problem.y).square().mean().sqrt())
                        rows.append(dict(image=name, task=task, method=solver.upper(), preset=tag, output=what,
                                         seconds=secs, psnr=psnr_value, ssim=ssim_value,
                                         residual_ratio=residual / (2 * sigma)))
                        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Per task and method: mean PSNR / SSIM / seconds over the images that were run."""
    from collections import defaultdict

    groups = defaultdict(list)
    for r in rows:
        if r["preset"] != "-":
            method = f"{r['method']} ({r['preset']}), {r.get('output', '1 sample')}"
        elif r["method"].startswith("prior denoiser"):
            method = r["method"]
        else:  # one row per task for the classical baseline, whichever tuned variant won on each image
            method = "classical: " + classical_label(r["task"], r["method"])
        groups[(r["task"], method)].append(r)
    lines = ["| task | method | images | PSNR (dB) | SSIM | s / image |", "|---|---|---|---|---|---|"]
    for (task, method), rs in groups.items():
        n = len(rs)
        lines.append(
            f"| {task} | {method} | {n} | {sum(r['psnr'] for r in rs) / n:.2f} | "
            f"{sum(r['ssim'] for r in rs) / n:.3f} | {sum(r['seconds'] for r in rs) / n:.1f} |"
        )
    return "\n".join(lines)


DENOISE_SIGMAS = (0.05, 0.1, 0.2, 0.4, 1.0)


def denoise_table(model: str | None) -> str:
    """The model card's one-call denoising table: mean PSNR of the noisy input and of D(y; sigma) over the four
    held-out crops, noise in tensor units from a generator seeded with the image's index."""
    import torch

    from diffrestore.priors.builtin import default_prior, load_model_dir
    from diffrestore.run.runtime import make_generator

    prior = load_model_dir(model) if model else default_prior()
    noisy_row, prior_row = [], []
    for sigma in DENOISE_SIGMAS:
        noisy, denoised = [], []
        for i, name in enumerate(HELD_OUT):
            x = held_out_crop(name)
            y = x + sigma * torch.randn(x.shape, generator=make_generator(i))
            with torch.no_grad():
                denoised.append(_scores(prior.denoise(y, sigma), x)[0])
            noisy.append(_scores(y.clamp(-1, 1), x)[0])
        noisy_row.append(sum(noisy) / len(noisy))
        prior_row.append(sum(denoised) / len(denoised))
    return "\n".join([
        "| sigma (tensor units) | " + " | ".join(f"{s:g}" for s in DENOISE_SIGMAS) + " |",
        "|---" * (len(DENOISE_SIGMAS) + 1) + "|",
        "| noisy input | " + " | ".join(f"{v:.2f}" for v in noisy_row) + " |",
        "| this prior, D(y; sigma) | " + " | ".join(f"{v:.2f}" for v in prior_row) + " |",
    ])


GOAL_TASKS = ("denoise", "sr4", "inpaint_random", "gaussian_blur")


def goal_lines(rows: list[dict]) -> str:
    """Per task: the best DAPS output (mean PSNR) against the classical baseline on the same images, the margin,
    and the estimated many-sample limit of DAPS's posterior mean."""
    from collections import defaultdict

    psnr: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["preset"] == "-":
            if not r["method"].startswith("prior denoiser"):
                psnr[(r["task"], "classical")][r["image"]] = r["psnr"]
        elif r["method"] == "DAPS":
            psnr[(r["task"], f"DAPS ({r['preset']}), {r.get('output', '1 sample')}")][r["image"]] = r["psnr"]

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values)

    lines = []
    for task in GOAL_TASKS:
        base = psnr.get((task, "classical"), {})
        candidates = {k[1]: v for k, v in psnr.items() if k[0] == task and k[1] != "classical"}
        scored = {label: (mean(v.values()), mean(base[i] for i in v), len(v))
                  for label, v in candidates.items() if v and all(i in base for i in v)}
        if not scored:
            continue
        best = max(scored, key=lambda label: scored[label][0] - scored[label][1])
        ours, theirs, n = scored[best]
        margin = ours - theirs
        lines.append(f"- {task} ({n} images): best DAPS = {best}, {ours:.2f} dB; classical {theirs:.2f} dB; "
                     f"margin {margin:+.2f} dB (goal +1.00: {'met' if margin >= 1.0 else 'not met'})")
        limit = mean_limit_psnr(rows, task)
        if limit is not None:
            value, images = limit
            lines.append(f"  - DAPS posterior mean, many-sample limit (estimate, {len(images)} images): "
                         f"{value:.2f} dB, margin {value - mean(base[i] for i in images):+.2f} dB")
    return "\n".join(lines)


def mean_limit_psnr(rows: list[dict], task: str, solver: str = "DAPS") -> tuple[float, list[str]] | None:
    """An estimate of the PSNR of the exact mean of infinitely many samples, from the first sample and the mean
    of N of one run: with i.i.d. samples, MSE(mean of n) = B + V / n, so two n give the bias B. (mean PSNR in
    dB over the images that have both rows, those images); None if there are none."""
    import math

    singles, means = {}, {}
    for r in rows:
        if r["task"] != task or r["method"] != solver or r["preset"] == "-":
            continue
        output = r.get("output", "1 sample")
        if output == "1 sample":
            singles[(r["image"], r["preset"])] = r["psnr"]
        elif output.startswith("mean of "):
            means[(r["image"], r["preset"])] = (r["psnr"], int(output.split()[-1]))
    values, images = [], []
    for key, psnr_one in singles.items():
        if key not in means:
            continue
        psnr_n, n = means[key]
        mse_one, mse_n = 10 ** (-psnr_one / 10), 10 ** (-psnr_n / 10)
        variance = (mse_one - mse_n) * n / (n - 1)
        bias = mse_one - variance
        if bias > 0:
            values.append(-10 * math.log10(bias))
            images.append(key[0])
    return (sum(values) / len(values), images) if values else None


def posterior_rms_table(model_dir: Path, data: Path, *, seed: int = 0, write: bool = False) -> dict:
    """Measure a model folder's denoiser rms error by sigma on crops of its training images ``data`` (never the
    held-out ones), as ``diffrestore train`` does at its end (priors/posterior_rms.py: training_table) and, with
    ``write``, store it in the folder's config.json as "posterior_rms" (DAPS r_t="mmse"). For models trained
    before train measured it."""
    from diffrestore.imageio.write import write_atomic
    from diffrestore.priors.builtin import load_model_dir
    from diffrestore.priors.posterior_rms import training_table
    from diffrestore.train import load_training_images

    assert not any(Path(p).stem in HELD_OUT for p in Path(data).rglob("*")), "a held-out image is in the data"
    config_path = Path(model_dir) / "config.json"
    config = json.loads(config_path.read_text())
    prior = load_model_dir(model_dir)
    # the images train saw: those at least its crop size
    images, _, _ = load_training_images(data, int(config.get("training", {}).get("size", 8)), prior.channels)
    table = training_table(prior, images, seed=seed).to_json_dict()
    if write:
        config["posterior_rms"] = table
        write_atomic(config_path, (json.dumps(config, indent=2) + "\n").encode(), overwrite=True)
    return table


def ship(model_dir: Path, data: Path, dest: Path, *, overwrite: bool = False,
         recommended: dict | None = None) -> Path:
    """The shipped form of a trained model folder: float16 weights (half the bytes; loaded as float32), the
    posterior-rms table measured on the rounded network and the solver settings measured for it
    (``recommended``, e.g. {"daps_r_t_blend": 0.5}), written to ``dest`` (the package's
    diffrestore/weights/default). MODEL_CARD.md is kept: it is written by hand."""
    import torch

    from diffrestore.priors.builtin import WEIGHTS_NAME, load_model_dir, load_network, save_model_dir

    if (dest / WEIGHTS_NAME).exists() and not overwrite:
        raise SystemExit(f"error: {dest} already holds a model; pass --overwrite to replace it")
    net = load_network(model_dir)
    if recommended:
        net.config.extra["recommended"] = dict(recommended)
    save_model_dir(net, dest, dtype=torch.float16)  # config.json keeps "training"
    posterior_rms_table(dest, data, write=True)
    load_model_dir(dest)  # as the CLI loads it: a bad recommendation fails here, not in a user's run
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_export = sub.add_parser("export-train", help="write the training images of the default prior as PNGs")
    p_export.add_argument("dest", type=Path)
    p_photos = sub.add_parser("export-train-photos",
                              help="write the skimage training images plus the photos of training_photos.toml")
    p_photos.add_argument("dest", type=Path, nargs="?")
    p_photos.add_argument("--photos", type=Path, default=PHOTOS_TOML, help="the photo list (default: %(default)s)")
    p_photos.add_argument("--print-apt", action="store_true",
                          help="print the apt-get command that installs the photos' packages, and exit")
    p_bench = sub.add_parser("bench", help="run the benchmark")
    p_bench.add_argument("--images", default="all", help=f"comma list of {', '.join(HELD_OUT)} or 'all'")
    p_bench.add_argument("--tasks", default="all", help=f"comma list of {', '.join(TASKS)} or 'all'")
    p_bench.add_argument("--solvers", default="daps,dps", help="comma list of solvers ('none' = classical only)")
    p_bench.add_argument("--presets", default="fast", help="comma list of presets: fast, paper")
    p_bench.add_argument("--daps-steps", type=int, default=None, help="override DAPS annealing steps")
    p_bench.add_argument("--daps-set", action="append", default=[], metavar="KEY=VALUE",
                         help="a DAPS hyper-parameter, e.g. --daps-set inner=langevin (repeatable)")
    p_bench.add_argument("--dps-steps", type=int, default=None, help="override DPS steps")
    p_bench.add_argument("--dps-set", action="append", default=[], metavar="KEY=VALUE",
                         help="a DPS hyper-parameter, e.g. --dps-set zeta=1.0 (repeatable)")
    p_bench.add_argument("--mcg-set", action="append", default=[], metavar="KEY=VALUE",
                         help="an MCG hyper-parameter, e.g. --mcg-set zeta=1.0 (repeatable)")
    p_bench.add_argument("--seed", type=int, default=0)
    p_bench.add_argument("--num-samples", type=int, default=4,
                         help="posterior samples per solver run; scores the first one and (N > 1) their mean")
    p_bench.add_argument("--model", default=None, help="a model directory instead of the default prior")
    p_bench.add_argument("--json", type=Path, default=None, help="also write all rows to this JSON file")
    p_bench.add_argument("--no-classical", action="store_true",
                         help="skip the classical baselines (for sweeps of the solvers' settings)")
    p_denoise = sub.add_parser("denoise", help="the model card's one-call denoising table")
    p_denoise.add_argument("--model", default=None, help="a model directory instead of the default prior")
    p_rms = sub.add_parser("posterior-rms", help="measure a model's denoiser rms error by sigma (DAPS r_t=mmse)")
    p_rms.add_argument("model", type=Path, help="a model folder (the shipped one: diffrestore/weights/default)")
    p_rms.add_argument("--data", type=Path, required=True, help="clean training images (never the held-out ones)")
    p_rms.add_argument("--seed", type=int, default=0)
    p_rms.add_argument("--write", action="store_true", help="store the table in MODEL/config.json")
    p_ship = sub.add_parser("ship", help="write a trained model as the package's default (fp16 + rms table)")
    p_ship.add_argument("model", type=Path)
    p_ship.add_argument("--data", type=Path, required=True, help="the model's training images")
    p_ship.add_argument("--dest", type=Path, default=Path(__file__).parents[1] / "diffrestore/weights/default")
    p_ship.add_argument("--overwrite", action="store_true")
    p_ship.add_argument("--recommend", action="append", default=[], metavar="KEY=VALUE",
                        help="a measured solver setting for config.json, e.g. daps_r_t_blend=0.5 (repeatable)")
    p_table = sub.add_parser("table", help="merge the --json files of several bench runs into one table")
    p_table.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "posterior-rms":
        table = posterior_rms_table(args.model, args.data, seed=args.seed, write=args.write)
        for sigma, rms in zip(table["sigma"], table["rms"], strict=True):
            print(f"sigma {sigma:10.4f}  rms {rms:.5f}  rms / sigma {rms / sigma:.3f}")
        return 0
    if args.command == "ship":
        recommended = {k: float(v) for k, _, v in (pair.partition("=") for pair in args.recommend)}
        print(ship(args.model, args.data, args.dest, overwrite=args.overwrite, recommended=recommended))
        return 0
    if args.command == "denoise":
        print(denoise_table(args.model))
        return 0
    if args.command == "table":
        # Runs over the same images repeat the classical rows: keep one row per (image, task, method, output).
        merged = {}
        for f in args.files:
            for row in json.loads(f.read_text()):
                merged.setdefault((row["image"], row["task"], row["method"], row["preset"], row.get("output")), row)
        rows = list(merged.values())
        print(markdown_table(rows))
        print(goal_lines(rows))
        return 0
    if args.command == "export-train":
        for path in export_train(args.dest):
            print(path)
        return 0
    if args.command == "export-train-photos":
        try:
            if args.print_apt:
                print(apt_command(p["package"] for p in load_photos(args.photos)))
                return 0
            if args.dest is None:
                parser.error("export-train-photos needs DEST (or --print-apt)")
            for path in export_train_photos(args.dest, args.photos):
                print(path)
        except PhotoError as exc:  # a setup problem, not a bug: one line, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    def pick(value: str, allowed) -> list[str]:
        chosen = list(allowed) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in chosen if v not in allowed]
        if bad:
            parser.error(f"unknown {bad}; choose from {', '.join(allowed)}")
        return chosen

    solvers = [] if args.solvers == "none" else pick(args.solvers, ("daps", "dps", "mcg"))
    overrides: dict[str, dict] = {"daps": {"steps": args.daps_steps} if args.daps_steps else {},
                                  "dps": {"steps": args.dps_steps} if args.dps_steps else {}, "mcg": {}}
    for solver, pairs in (("daps", args.daps_set), ("dps", args.dps_set), ("mcg", args.mcg_set)):
        for pair in pairs:
            key, _, value = pair.partition("=")
            try:
                overrides[solver][key] = float(value) if "." in value or "e" in value else int(value)
            except ValueError:
                overrides[solver][key] = value
    rows = bench(pick(args.images, HELD_OUT), pick(args.tasks, tuple(TASKS)), solvers,
                 pick(args.presets, ("fast", "paper")), args.seed, args.model, overrides, args.num_samples,
                 classical_rows=not args.no_classical)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown_table(rows))
    print(goal_lines(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
