"""The other candidate considered for the default prior: a patch Gaussian mixture with an exact (per-patch) denoiser.

    python benchmarks/patch_gmm_probe.py --components 20 --patch 8 --patches 100000

Fits a full-covariance GMM (scikit-learn, EM) to random RGB patches of the default prior's training images
(the same 15 skimage photos, grey ones replicated to RGB, colour channels randomly permuted as in the UNet's
training), then denoises the four held-out 256 x 256 crops in one shot: every overlapping patch gets its exact
posterior mean under the GMM,

    E[x | y] = sum_k r_k(y) (mu_k + S_k (S_k + sigma^2 I)^-1 (y - mu_k)),  r_k ∝ pi_k N(y; mu_k, S_k + sigma^2 I),

and the overlapping estimates are averaged (the one-pass version of Zoran & Weiss's EPLL, ICCV 2011). Prints the
same table as ``default_prior.py denoise`` (noise in tensor units, seeded by image index), to compare the two
families as denoisers. With ``--daps-images``, it then runs DAPS (fast preset) with this denoiser as the prior
(float32, patches every ``--stride`` pixels, for speed) and with the shipped UNet on ``--crop``-sized centre crops:
what matters in the end is the sampler's result, not the one-call denoiser. Results: the model card's
"Architecture choice".

    python benchmarks/patch_gmm_probe.py --save /tmp/gmm20.npz --daps-images astronaut,coffee --stride 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from default_prior import DENOISE_SIGMAS, HELD_OUT, TRAIN_IMAGES, _scores, held_out_crop, skimage_image


def training_patches(count: int, patch: int, seed: int):
    """(count, 3 * patch * patch) float64 patches in [-1, 1], drawn evenly over the training images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_image = -(-count // len(TRAIN_IMAGES))
    out = []
    for name in TRAIN_IMAGES:
        img = skimage_image(name).astype(np.float64) / 127.5 - 1.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        tops = rng.integers(0, h - patch + 1, per_image)
        lefts = rng.integers(0, w - patch + 1, per_image)
        for top, left in zip(tops, lefts, strict=True):
            p = img[top : top + patch, left : left + patch][..., rng.permutation(3)]
            out.append(p.transpose(2, 0, 1).reshape(-1))
    patches = np.stack(out)
    return patches[rng.permutation(len(patches))[:count]]


def gmm_prior(means, covs, weights, patch: int, stride: int = 1, dtype: str = "float64"):
    """The patch GMM as a diffrestore Prior: every patch taken every ``stride`` pixels gets its exact posterior mean
    under the GMM, computed in ``dtype`` through each covariance's eigenbasis S = V diag(lam) V^T,

        (S + s^2 I)^-1 = V diag(1 / (lam + s^2)) V^T,   S (S + s^2 I)^-1 (y - mu) = V (lam / (lam + s^2) * z),

    with z = V^T (y - mu) (two matrix products per component), and the overlapping estimates are averaged. The
    one-call table uses stride 1 in float64; DAPS uses stride 2 in float32 for speed. Built inside a function so
    importing this script needs no torch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from diffrestore.priors.base import Prior, sigma_per_item

    work = getattr(torch, dtype)

    class PatchGMMPrior(Prior):
        sigma_min, sigma_max, channels = 0.002, 80.0, 3

        def __init__(self) -> None:
            lam, vecs = np.linalg.eigh(covs)  # once, not per call
            self.mu = torch.from_numpy(means).to(work)
            self.vecs = torch.from_numpy(vecs).to(work)
            self.lam = torch.from_numpy(np.clip(lam, 1e-6, None)).to(work)
            self.log_w = torch.from_numpy(np.log(weights)).to(work)

        def denoise(self, x, sigma):
            s = sigma_per_item(sigma, x.shape[0])
            return torch.cat([self._one(x[i : i + 1].to(work), float(s[i])) for i in range(x.shape[0])]).float()

        def _one(self, y, sigma: float):
            h, w = y.shape[-2:]
            cols = F.unfold(y, patch, stride=stride)[0].T  # (P, 3 * patch * patch), the layout of training_patches
            log_r, est = [], []
            for k in range(self.mu.shape[0]):
                z = (cols - self.mu[k]) @ self.vecs[k]
                den = self.lam[k] + sigma**2
                log_r.append(self.log_w[k] - 0.5 * (z.square() / den).sum(1) - 0.5 * torch.log(den).sum())
                est.append(self.mu[k] + (z * (self.lam[k] / den)) @ self.vecs[k].T)
            r = torch.softmax(torch.stack(log_r), 0)  # (K, P) responsibilities
            mean = sum(r[k][:, None] * est[k] for k in range(len(est)))
            summed = F.fold(mean.T[None], (h, w), patch, stride=stride)
            counts = F.fold(F.unfold(torch.ones_like(y), patch, stride=stride), (h, w), patch, stride=stride)
            return summed / counts

    return PatchGMMPrior()


def daps_comparison(prior_gmm, images: list[str], tasks: list[str], crop: int) -> None:
    """DAPS fast, one sample, seed 0, with the GMM and with the shipped UNet, against the classical baseline."""
    import json

    from default_prior import TASKS, classical

    from diffrestore.operators import GaussianNoise, build_operator, simulate
    from diffrestore.priors.builtin import default_prior
    from diffrestore.run.runtime import make_generator
    from diffrestore.solvers import get_solver

    unet = default_prior()
    for name in images:
        full = held_out_crop(name)
        top = (full.shape[-1] - crop) // 2
        x = full[..., top : top + crop, top : top + crop]
        for task in tasks:
            op_name, params, noise_sigma = TASKS[task]
            gen = make_generator(0)
            op = build_operator(op_name, tuple(x.shape[1:]), generator=gen, **params)
            problem = simulate(op, GaussianNoise(noise_sigma), x, gen)
            row = {"image": name, "task": task, "crop": crop,
                   "classical": round(_scores(classical(task, problem, x)[1], x)[0], 2)}
            for label, prior in (("daps_unet", unet), ("daps_gmm", prior_gmm)):
                t0 = time.time()
                sample = get_solver("daps", "fast").run(prior, problem, generator=make_generator(0)).clamp(-1, 1)
                row[label] = round(_scores(sample, x)[0], 2)
                row[label + "_s"] = round(time.time() - t0, 1)
            print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    import torch
    from sklearn.mixture import GaussianMixture

    from diffrestore.run.runtime import make_generator

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=20)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigmas", default=",".join(f"{s:g}" for s in DENOISE_SIGMAS),
                        help="one-call denoising levels (tensor units); 'none' skips the table")
    parser.add_argument("--save", type=Path, help="write the fitted GMM here (.npz), or load it if it exists")
    parser.add_argument("--daps-images", default="", help="comma list of held-out images for the DAPS comparison")
    parser.add_argument("--daps-tasks", default="denoise,sr4,inpaint_random")
    parser.add_argument("--stride", type=int, default=2, help="patch stride of the GMM prior inside DAPS")
    parser.add_argument("--crop", type=int, default=128, help="centre-crop size for the DAPS comparison")
    args = parser.parse_args(argv)

    import numpy as np

    if args.save is not None and args.save.is_file():
        z = np.load(args.save)
        means, covs, weights = z["means"], z["covs"], z["weights"]
        print(f"# patch GMM loaded from {args.save}", flush=True)
    else:
        t0 = time.time()
        data = training_patches(args.patches, args.patch, args.seed)
        gmm = GaussianMixture(args.components, covariance_type="full", max_iter=100, random_state=args.seed,
                              reg_covar=1e-6).fit(data)
        print(f"# patch GMM: {args.components} components, {args.patch}x{args.patch} RGB patches, "
              f"{len(data)} training patches, EM {gmm.n_iter_} iterations, converged {gmm.converged_}, "
              f"fit {time.time() - t0:.0f} s", flush=True)
        means, covs, weights = gmm.means_, gmm.covariances_, gmm.weights_
        if args.save is not None:
            np.savez(args.save, means=means, covs=covs, weights=weights)
    if args.daps_images:
        prior = gmm_prior(means, covs, weights, args.patch, args.stride, "float32")
        daps_comparison(prior, args.daps_images.split(","), args.daps_tasks.split(","), args.crop)
    if args.sigmas == "none":
        return 0
    sigmas = [float(s) for s in args.sigmas.split(",")]
    exact = gmm_prior(means, covs, weights, args.patch)  # every patch, float64
    row = []
    for sigma in sigmas:
        t1 = time.time()
        scores = []
        for i, name in enumerate(HELD_OUT):
            x = held_out_crop(name)
            y = x + sigma * torch.randn(x.shape, generator=make_generator(i))
            scores.append(_scores(exact.denoise(y, sigma), x)[0])
        row.append(sum(scores) / len(scores))
        print(f"# sigma {sigma:g}: {row[-1]:.2f} dB, {(time.time() - t1) / len(HELD_OUT):.1f} s / image", flush=True)
    print("| sigma (tensor units) | " + " | ".join(f"{s:g}" for s in sigmas) + " |")
    print("|---" * (len(sigmas) + 1) + "|")
    print(f"| patch GMM ({len(weights)} x {args.patch}x{args.patch}), one pass | "
          + " | ".join(f"{v:.2f}" for v in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
