"""The issue's other candidate for the default prior: a patch Gaussian mixture with an exact (per-patch) denoiser.

    python benchmarks/patch_gmm_probe.py --components 20 --patch 8 --patches 100000

Fits a full-covariance GMM (scikit-learn, EM) to random RGB patches of the default prior's training images
(the same 15 skimage photos, grey ones replicated to RGB, colour channels randomly permuted as in the UNet's
training), then denoises the four held-out 256 x 256 crops in one shot: every overlapping patch gets its exact
posterior mean under the GMM,

    E[x | y] = sum_k r_k(y) (mu_k + S_k (S_k + sigma^2 I)^-1 (y - mu_k)),  r_k ∝ pi_k N(y; mu_k, S_k + sigma^2 I),

and the overlapping estimates are averaged (the one-pass version of Zoran & Weiss's EPLL, ICCV 2011). Prints the
same table as ``default_prior.py denoise`` (noise in tensor units, seeded by image index), to compare the two
families on the quality that matters to the samplers: the denoiser.
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


def gmm_denoise(gmm, y, sigma: float, patch: int):
    """One-pass patch-GMM denoising of y (1, 3, H, W) in tensor units: exact patch posterior means, averaged."""
    import torch
    import torch.nn.functional as F

    h, w = y.shape[-2:]
    cols = F.unfold(y.double(), patch)[0].T  # (P, c * patch * patch), same layout as training_patches
    d = cols.shape[1]
    eye = torch.eye(d, dtype=torch.float64)
    log_r, means = [], []
    for k in range(gmm.n_components):
        mu = torch.from_numpy(gmm.means_[k])
        cov = torch.from_numpy(gmm.covariances_[k])
        chol = torch.linalg.cholesky(cov + sigma**2 * eye)
        diff = cols - mu
        z = torch.linalg.solve_triangular(chol, diff.T, upper=False)  # L^-1 (y - mu)
        log_r.append(float(torch.log(torch.tensor(gmm.weights_[k]))) - 0.5 * z.square().sum(0)
                     - torch.log(chol.diagonal()).sum())
        # S (S + s^2 I)^-1 (y - mu) = (y - mu) - s^2 (S + s^2 I)^-1 (y - mu)
        inv_diff = torch.cholesky_solve(diff.T, chol)
        means.append(cols - sigma**2 * inv_diff.T)
    r = torch.softmax(torch.stack(log_r), dim=0)  # (K, P)
    est = sum(r[k][:, None] * means[k] for k in range(len(means)))
    ones = torch.ones_like(y, dtype=torch.float64)
    summed = F.fold(est.T[None], (h, w), patch)
    counts = F.fold(F.unfold(ones, patch), (h, w), patch)
    return (summed / counts).float()


def main(argv: list[str] | None = None) -> int:
    import torch
    from sklearn.mixture import GaussianMixture

    from diffrestore.engine import make_generator

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=20)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--patches", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigmas", default=",".join(f"{s:g}" for s in DENOISE_SIGMAS))
    args = parser.parse_args(argv)

    t0 = time.time()
    data = training_patches(args.patches, args.patch, args.seed)
    gmm = GaussianMixture(args.components, covariance_type="full", max_iter=100, random_state=args.seed,
                          reg_covar=1e-6).fit(data)
    fit_s = time.time() - t0
    print(f"# patch GMM: {args.components} components, {args.patch}x{args.patch} RGB patches, "
          f"{len(data)} training patches, EM {gmm.n_iter_} iterations, converged {gmm.converged_}, "
          f"fit {fit_s:.0f} s", flush=True)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    row = []
    for sigma in sigmas:
        t1 = time.time()
        scores = []
        for i, name in enumerate(HELD_OUT):
            x = held_out_crop(name)
            y = x + sigma * torch.randn(x.shape, generator=make_generator(i))
            scores.append(_scores(gmm_denoise(gmm, y, sigma, args.patch), x)[0])
        row.append(sum(scores) / len(scores))
        print(f"# sigma {sigma:g}: {row[-1]:.2f} dB, {(time.time() - t1) / len(HELD_OUT):.1f} s / image", flush=True)
    print("| sigma (tensor units) | " + " | ".join(f"{s:g}" for s in sigmas) + " |")
    print("|---" * (len(sigmas) + 1) + "|")
    print(f"| patch GMM ({args.components} x {args.patch}x{args.patch}), one pass | "
          + " | ".join(f"{v:.2f}" for v in row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
