"""Priors whose denoiser is known exactly: a Gaussian N(mu, Sigma) and a Gaussian mixture.

They serve as test fixtures and as the check that the solvers are right: for a Gaussian prior, a linear operator
A and Gaussian noise of std s_y, the posterior is Gaussian with

    Sigma_post = Sigma - Sigma A^T (A Sigma A^T + s_y^2 I)^-1 A Sigma
    mu_post    = mu + Sigma A^T (A Sigma A^T + s_y^2 I)^-1 (y - A mu)

(``gaussian_posterior``), so a solver's sample mean and spread can be scored against the truth.

Exact denoisers. With Sigma = U diag(l) U^T (eigendecomposition, done once in float64, stored float32):

    Gaussian:  E[x0 | x] = mu + U diag(l / (l + sigma^2)) U^T (x - mu)
    Mixture:   E[x0 | x] = sum_k w_k(x) (mu_k + U_k diag(l_k / (l_k + sigma^2)) U_k^T (x - mu_k)),
               w_k(x) proportional to pi_k N(x; mu_k, Sigma_k + sigma^2 I)

Dense covariances cost D^2 memory (D = C*H*W): meant for small images (1 x 16 x 16 = 256 dims).
The posterior helpers use float64: they are test/benchmark helpers, never a runtime path.
"""

from __future__ import annotations

import math

import torch

from .base import Prior, sigma_per_item


def _eig_float64(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clipped at 0: round-off can make tiny ones negative) and vectors, in float64."""
    cov64 = cov.detach().to(dtype=torch.float64, device="cpu")
    cov64 = 0.5 * (cov64 + cov64.transpose(-1, -2))
    lam, vec = torch.linalg.eigh(cov64)
    return lam.clamp_min(0.0), vec


def _set_image_attributes(prior: Prior, image_shape: torch.Size, sigma_min: float, sigma_max: float) -> None:
    """What every analytic prior states: its one image shape (= native size), channels, sigma range, CPU float32."""
    prior.image_shape = tuple(int(v) for v in image_shape)  # type: ignore[attr-defined]
    prior.channels = prior.image_shape[0]  # type: ignore[attr-defined]
    prior.native_size = (prior.image_shape[1], prior.image_shape[2])  # type: ignore[attr-defined]
    prior.sigma_min = float(sigma_min)
    prior.sigma_max = float(sigma_max)
    prior.device = torch.device("cpu")
    prior.dtype = torch.float32


class GaussianPrior(Prior):
    """N(mean, cov) over images of shape (C, H, W), with the exact denoiser."""

    clip_range = None  # Gaussian support is unbounded: solvers must not clamp its x0 estimates

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, *, sigma_min: float = 1e-3,
                 sigma_max: float = 1e3) -> None:
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape (C, H, W), got {tuple(mean.shape)}")
        dim = mean.numel()
        if cov.shape != (dim, dim):
            raise ValueError(f"cov must have shape ({dim}, {dim}) for a mean of shape {tuple(mean.shape)}")
        _set_image_attributes(self, mean.shape, sigma_min, sigma_max)
        lam, vec = _eig_float64(cov)
        self.mean = mean.detach().reshape(-1).to(torch.float32)
        self.eigvals = lam.to(torch.float32)
        self.eigvecs = vec.to(torch.float32)
        cov64 = (vec * lam) @ vec.T
        self.covariance = cov64.to(torch.float32)
        # Sampling uses the Cholesky factor: unique, unlike eigenvectors (whose signs can change with the BLAS
        # thread count), so prior samples are the same for the same seed everywhere.
        jitter = 1e-10 * float(lam.max().clamp_min(1e-30))
        self.cholesky = torch.linalg.cholesky(cov64 + jitter * torch.eye(dim, dtype=torch.float64)).to(torch.float32)

    @classmethod
    def stationary(
        cls,
        image_shape: tuple[int, int, int] = (1, 16, 16),
        *,
        length_scale: float = 3.0,
        std: float = 0.5,
        mean: float = 0.0,
        jitter: float = 1e-3,
    ) -> GaussianPrior:
        """A smooth 'natural-image-like' prior: squared-exponential kernel over pixel positions.

        cov[p, q] = std^2 * exp(-|p - q|^2 / (2 length_scale^2)) + jitter * std^2 * [p == q], channels independent.
        ``length_scale`` is in pixels; ``std`` and ``mean`` in tensor units ([-1, 1] images). The jitter keeps
        the smallest eigenvalues away from 0 (a pure SE kernel is numerically singular).
        """
        c, h, w = image_shape
        rows, cols = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
        ys, xs = torch.meshgrid(rows, cols, indexing="ij")
        pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=1)
        d2 = torch.cdist(pos, pos).square()
        spatial = std**2 * (torch.exp(-d2 / (2.0 * length_scale**2)) + jitter * torch.eye(h * w, dtype=torch.float64))
        cov = torch.kron(torch.eye(c, dtype=torch.float64), spatial)
        return cls(torch.full(image_shape, float(mean)), cov)

    def to(self, device: torch.device | str) -> GaussianPrior:
        self.device = torch.device(device)
        for name in ("mean", "eigvals", "eigvecs", "covariance", "cholesky"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        n = x.shape[0]
        s2 = sigma_per_item(sigma, n, x.device).square()
        centred = x.reshape(n, -1).to(torch.float32) - self.mean
        z = centred @ self.eigvecs
        z = z * (self.eigvals / (self.eigvals + s2[:, None]))
        return (self.mean + z @ self.eigvecs.T).reshape(x.shape)

    def posterior_rms(self, sigma: float) -> float:
        """The exact denoiser's rms error at sigma, sqrt(mean_k lam_k sigma^2 / (lam_k + sigma^2)): the average
        posterior std of x0 given x_t (DAPS's r_t = "mmse"; priors/posterior_rms.py measures it for networks)."""
        s2 = float(sigma) ** 2
        return float((self.eigvals * s2 / (self.eigvals + s2)).mean().sqrt())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws from the prior, shape (n, C, H, W)."""
        eps = torch.randn((n, self.mean.numel()), generator=generator, device=generator.device).to(self.device)
        x = self.mean + eps @ self.cholesky.T
        return x.reshape(n, *self.image_shape)


class GaussianMixturePrior(Prior):
    """sum_k pi_k N(mean_k, cov_k) over images of shape (C, H, W), with the exact denoiser."""

    clip_range = None

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, *, sigma_min: float = 1e-3,
                 sigma_max: float = 1e3) -> None:
        if means.ndim != 4:
            raise ValueError(f"means must have shape (K, C, H, W), got {tuple(means.shape)}")
        k = means.shape[0]
        dim = means[0].numel()
        if weights.shape != (k,) or covs.shape != (k, dim, dim):
            raise ValueError(f"need weights ({k},) and covs ({k}, {dim}, {dim})")
        if bool((weights <= 0).any()):
            raise ValueError("mixture weights must be positive")
        _set_image_attributes(self, means.shape[1:], sigma_min, sigma_max)
        lam, vec = _eig_float64(covs)
        w64 = weights.detach().to(torch.float64)
        self.log_weights = (w64 / w64.sum()).log().to(torch.float32)
        self.means = means.detach().reshape(k, dim).to(torch.float32)
        self.eigvals = lam.to(torch.float32)  # (K, D)
        self.eigvecs = vec.to(torch.float32)  # (K, D, D)

    def to(self, device: torch.device | str) -> GaussianMixturePrior:
        self.device = torch.device(device)
        for name in ("log_weights", "means", "eigvals", "eigvecs"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def component_responsibilities(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """w_k(x) of shape (N, K): posterior probability of each component given x at noise level sigma."""
        return self._terms(x, sigma)[0]

    def _terms(self, x: torch.Tensor, sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        s2 = sigma_per_item(sigma, n, x.device).square()[:, None, None]  # (N, 1, 1)
        centred = x.reshape(n, 1, -1).to(torch.float32) - self.means[None]  # (N, K, D)
        z = torch.einsum("nkd,kde->nke", centred, self.eigvecs)  # coordinates in each component's eigenbasis
        var = self.eigvals[None] + s2  # (N, K, D)
        log_lik = -0.5 * (z.square() / var).sum(-1) - 0.5 * var.log().sum(-1)
        resp = torch.softmax(self.log_weights[None] + log_lik, dim=1)  # (N, K)
        x0_k = self.means[None] + torch.einsum("nke,kde->nkd", z * (self.eigvals[None] / var), self.eigvecs)
        return resp, x0_k

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        resp, x0_k = self._terms(x, sigma)
        return torch.einsum("nk,nkd->nd", resp, x0_k).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        probs = self.log_weights.exp().cpu()
        comp = torch.multinomial(probs, n, replacement=True, generator=generator).to(self.device)
        eps = torch.randn((n, self.means.shape[1]), generator=generator, device=generator.device).to(self.device)
        x = self.means[comp] + torch.einsum("nd,ned->ne", eps * self.eigvals[comp].sqrt(), self.eigvecs[comp])
        return x.reshape(n, *self.image_shape)


def operator_matrix(operator: torch.nn.Module, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The dense matrix (M, D) of a linear operator, float64, by applying it to the D basis images."""
    dim = math.prod(image_shape)
    device = next((b.device for b in operator.buffers()), torch.device("cpu"))
    basis = torch.eye(dim, dtype=torch.float32, device=device).reshape(dim, *image_shape)
    with torch.no_grad():
        cols = torch.cat([operator(chunk).reshape(chunk.shape[0], -1) for chunk in basis.split(256)])
    return cols.to(device="cpu", dtype=torch.float64).T.contiguous()


def gaussian_posterior(
    prior: GaussianPrior, operator: torch.nn.Module, y: torch.Tensor, noise_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior of x given y = A x + n, n ~ N(0, noise_std^2 I) (tensor units), x ~ prior.

    Returns (mean of shape (N, C, H, W), covariance (D, D)), both float64 on the CPU. The covariance does not
    depend on y, so it is shared by the batch.
    """
    a = operator_matrix(operator, prior.image_shape)
    cov = prior.covariance.to(device="cpu", dtype=torch.float64)
    mu = prior.mean.to(device="cpu", dtype=torch.float64)
    n = y.shape[0]
    y64 = y.detach().to(device="cpu", dtype=torch.float64).reshape(n, -1)
    s_at = cov @ a.T  # (D, M)
    gram = a @ s_at + noise_std**2 * torch.eye(a.shape[0], dtype=torch.float64)
    gain = torch.linalg.solve(gram, s_at.T).T  # Sigma A^T (A Sigma A^T + s^2 I)^-1, (D, M)
    mean = mu + (y64 - mu @ a.T) @ gain.T
    post_cov = cov - gain @ s_at.T
    post_cov = 0.5 * (post_cov + post_cov.T)
    return mean.reshape(n, *prior.image_shape), post_cov
