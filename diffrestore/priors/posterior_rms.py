"""A prior's posterior spread by noise level: the root-mean-square error of its denoiser, measured once.

DAPS approximates p(x0 | x_t) by an isotropic Gaussian N(x0_hat, r_t^2 I) and the paper takes r_t = sigma_t.
The average variance of the true p(x0 | x_t) is E||x0 - E[x0 | x_t]||^2 / dim, the denoiser's mean squared error
at sigma_t (Tweedie: Cov[x0 | x_t] = sigma^2 dD/dx, whose trace averaged over the data is that error). Matching
the isotropic Gaussian to it is moment matching, and it costs nothing at sampling time: the error is a property
of the network, measured here on clean images (never the evaluation images) and stored with the model
(config.json "posterior_rms"). For photos it is far below sigma at small sigma (the default prior at sigma 0.4:
about 0.1), which is why r_t = sigma_t over-disperses DAPS's samples.

``PosteriorRMS(sigmas, rms)`` interpolates rms / sigma linearly in log sigma and keeps the end ratios outside
the measured range; the value never exceeds sigma (a denoiser's Jacobian has eigenvalues <= 1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class PosteriorRMS:
    """rms(sigma): the measured per-pixel rms error of a prior's denoiser at noise level sigma (tensor units)."""

    def __init__(self, sigmas: Sequence[float], rms: Sequence[float]) -> None:
        problem = table_problem({"sigma": list(sigmas), "rms": list(rms)})
        if problem:
            raise ValueError(problem)
        self.sigmas = [float(s) for s in sigmas]
        self.rms = [float(r) for r in rms]
        self._log_s = [math.log(s) for s in self.sigmas]
        self._log_ratio = [math.log(min(r / s, 1.0)) for s, r in zip(self.sigmas, self.rms, strict=True)]

    def __call__(self, sigma: float) -> float:
        sigma = float(sigma)
        ls = math.log(sigma)
        xs, ys = self._log_s, self._log_ratio
        if ls <= xs[0]:
            ratio = ys[0]
        elif ls >= xs[-1]:
            ratio = ys[-1]
        else:
            k = next(i for i in range(1, len(xs)) if xs[i] >= ls)
            w = (ls - xs[k - 1]) / (xs[k] - xs[k - 1])
            ratio = ys[k - 1] + w * (ys[k] - ys[k - 1])
        return sigma * math.exp(ratio)

    def to_json_dict(self) -> dict[str, list[float]]:
        return {"sigma": [round(s, 6) for s in self.sigmas], "rms": [round(r, 6) for r in self.rms]}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> PosteriorRMS:
        return cls(data["sigma"], data["rms"])


def table_problem(data: Any) -> str | None:
    """Why ``data`` is not a valid "posterior_rms" table, or None."""
    if not isinstance(data, dict) or set(data) != {"sigma", "rms"}:
        return "'posterior_rms' must be a table with the lists 'sigma' and 'rms'"
    sigmas, rms = data["sigma"], data["rms"]
    if not (isinstance(sigmas, list) and isinstance(rms, list)) or len(sigmas) != len(rms) or len(sigmas) < 2:
        return "'posterior_rms.sigma' and 'posterior_rms.rms' must be lists of the same length (at least 2)"
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                  for v in (*sigmas, *rms))
    if not numbers:
        return "'posterior_rms' values must be positive numbers"
    if any(b <= a for a, b in itertools.pairwise(sigmas)):
        return "'posterior_rms.sigma' must be increasing"
    return None


def log_grid(lo: float, hi: float, count: int) -> list[float]:
    """``count`` noise levels evenly spaced in log sigma from lo to hi."""
    return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (count - 1)) for i in range(count)]


def measure(prior: Any, images: Iterable[torch.Tensor], sigmas: Sequence[float], *, seed: int = 0,
            batch_size: int = 8) -> PosteriorRMS:
    """The rms error of ``prior.denoise`` at each sigma over ``images`` (tensors (C, H, W) in [-1, 1], all one
    shape), with noise from a generator seeded with ``seed``: sqrt(mean over images and pixels of (D - x0)^2)."""
    import torch

    stack = torch.stack(list(images)).to(prior.device, torch.float32)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    rms = []
    with torch.no_grad():
        for sigma in sigmas:
            total = 0.0
            for start in range(0, stack.shape[0], batch_size):
                x0 = stack[start:start + batch_size]
                noise = torch.randn(x0.shape, generator=gen).to(x0.device)
                d = prior.denoise(x0 + float(sigma) * noise, float(sigma)).float()
                total += float(((d - x0) ** 2).sum())
            rms.append(math.sqrt(total / stack.numel()))
    return PosteriorRMS(list(sigmas), rms)


#: How ``training_table`` measures: 25 levels over the prior's sigma range, 2 crops of up to 128 px per image.
TABLE_POINTS, CROP, PER_IMAGE = 25, 128, 2


def crops_of(images: Sequence[torch.Tensor], per_image: int, *, seed: int = 0,
             size: int | None = None) -> list[torch.Tensor]:
    """``per_image`` seeded square crops of each (C, H, W) image, all of one size (default: CROP, or the smallest
    image side if that is less): the clean images ``measure`` needs."""
    import torch

    size = int(size or min(CROP, *(min(img.shape[1:]) for img in images)))
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    crops = []
    for img in images:
        h, w = img.shape[1:]
        if h < size or w < size:
            continue
        for _ in range(per_image):
            top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
            crops.append(img[:, top:top + size, left:left + size])
    return crops


def training_table(prior: Any, images: Sequence[torch.Tensor], *, seed: int = 0) -> PosteriorRMS:
    """The table ``diffrestore train`` stores with a model: measured on crops of its own training images."""
    return measure(prior, crops_of(images, PER_IMAGE, seed=seed),
                   log_grid(prior.sigma_min, prior.sigma_max, TABLE_POINTS), seed=seed)
