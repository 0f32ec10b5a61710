"""Noise models ``y ~ p(y | A x)`` and the restoration problem they form with an operator and a measurement.

Users give noise on the [0, 1] intensity scale; tensors live on [-1, 1], so a std doubles on the way in.
Noise is drawn only from the passed ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UsageError
from .base import Operator

NOISE_NAMES: tuple[str, ...] = ("none", "gaussian", "poisson")


def paper_sigma_to_unit(sigma_on_minus1_1: float) -> float:
    """Convert a noise sigma quoted on the papers' [-1, 1] scale to our [0, 1] user scale (0.05 -> 0.025)."""
    return float(sigma_on_minus1_1) / 2


def _flat_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1)


class NoiseModel:
    """``y ~ p(y | A x)``. ``kind`` names it; ``std`` is a typical noise std in tensor units (for solvers that need
    one scale); ``sample`` draws only from the passed generator; ``log_likelihood`` returns shape ``(N,)``."""

    kind: str = "none"
    std: float = 0.0

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoNoise(NoiseModel):
    """Noise-free measurements. ``log_likelihood`` is the surrogate ``-||y - A x||^2 / 2`` (unit variance), since
    the exact one is degenerate; solvers for noiseless problems use their own step sizes."""

    kind = "none"
    std = 0.0

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return ax.clone()

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        return -0.5 * _flat_sum((y - ax).square())


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise. ``sigma`` is on the USER [0, 1] intensity scale; ``std = 2 * sigma`` is the
    std in [-1, 1] tensor units (the papers' 0.05 on [-1, 1] is ``GaussianNoise(0.025)``)."""

    kind = "gaussian"

    def __init__(self, sigma: float) -> None:
        sigma = float(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise UsageError(f"gaussian noise sigma must be > 0 on the [0, 1] intensity scale, got {sigma}")
        self.sigma = sigma
        self.std = 2.0 * sigma

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(ax.shape, generator=generator, device=generator.device, dtype=torch.float32)
        return ax + self.std * noise.to(device=ax.device, dtype=ax.dtype)

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """``-||y - A x||^2 / (2 std^2)``, dropping the constant."""
        return -_flat_sum((y - ax).square()) / (2 * self.std**2)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"


class PoissonNoise(NoiseModel):
    """Photon noise on [0, 1] intensity: ``counts ~ Poisson(rate * max(x01, 0))``, ``y01 = counts / rate``,
    returned in tensor units ``2 y01 - 1``. Larger ``rate`` = less noise. ``std`` is the std at mid-grey,
    ``2 * sqrt(0.5 / rate)`` in tensor units."""

    kind = "poisson"
    #: floor on the Poisson mean in ``log_likelihood`` (log 0 would be -inf where the model predicts black)
    min_mean: float = 1e-3

    def __init__(self, rate: float) -> None:
        rate = float(rate)
        if not math.isfinite(rate) or rate <= 0:
            raise UsageError(f"poisson rate must be > 0 (photons per unit intensity), got {rate}")
        self.rate = rate
        self.std = 2.0 * math.sqrt(0.5 / rate)

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = (self.rate * ((ax.detach() + 1) / 2).clamp_min(0)).to(device=generator.device, dtype=torch.float32)
        counts = torch.poisson(mean, generator=generator)
        return (2 * counts / self.rate - 1).to(device=ax.device, dtype=ax.dtype)

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """Exact Poisson log-pmf of the counts ``k = rate * y01`` given mean ``rate * x01`` (floored)."""
        counts = (self.rate * (y + 1) / 2).clamp_min(0)
        mean = (self.rate * (ax + 1) / 2).clamp_min(self.min_mean)
        return _flat_sum(counts * mean.log() - mean - torch.lgamma(counts + 1))

    def __repr__(self) -> str:
        return f"PoissonNoise(rate={self.rate})"


class TransmissionNoise(NoiseModel):
    """CT photon counting (Beer-Lambert): a ray of line integral ``p`` (a sinogram value) keeps
    ``counts ~ Poisson(photons * exp(-attenuation * p))`` of ``photons`` incident photons, and the measurement is
    the log-transformed sinogram ``y = -log(max(counts, 1) / photons) / attenuation`` (a ray with no photon left
    is read as one photon, as scanners floor counts before the log). ``attenuation`` converts sinogram units to
    optical depth (e.g. the attenuation coefficient per pixel length of a unit image value), so ``y`` has the
    sinogram's units and mean about ``p``; ``p`` should be the projection of a non-negative image. The noise on
    ``y`` has std about ``exp(attenuation p / 2) / (attenuation sqrt(photons))``: rays through more material are
    noisier. ``std`` is that value at ``p = 0``, the least noise any ray gets. Not one of ``NOISE_NAMES``: it
    belongs to CT sinograms, not to images."""

    kind = "transmission"

    def __init__(self, photons: float, attenuation: float = 1.0) -> None:
        photons, attenuation = float(photons), float(attenuation)
        if not math.isfinite(photons) or photons <= 0 or not math.isfinite(attenuation) or attenuation <= 0:
            raise UsageError(f"transmission noise needs photons > 0 and attenuation > 0, got {photons}, {attenuation}")
        self.photons = photons
        self.attenuation = attenuation
        self.std = 1.0 / (attenuation * math.sqrt(photons))

    def expected_counts(self, ax: torch.Tensor) -> torch.Tensor:
        """The Poisson mean of every detector reading, ``photons * exp(-attenuation * A x)``."""
        return self.photons * torch.exp(-self.attenuation * ax)

    def sample(self, ax: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = self.expected_counts(ax.detach()).to(device=generator.device, dtype=torch.float32)
        counts = torch.poisson(mean, generator=generator).clamp_min(1.0)
        y = -torch.log(counts / self.photons) / self.attenuation
        return y.to(device=ax.device, dtype=ax.dtype)

    def counts(self, y: torch.Tensor) -> torch.Tensor:
        """The photon counts a log-transformed sinogram ``y`` came from."""
        return self.photons * torch.exp(-self.attenuation * y)

    def log_likelihood(self, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """Exact Poisson log-pmf of the counts behind ``y`` given their mean ``expected_counts(A x)``, summed per
        item: ``k log(lambda) - lambda - log(k!)`` with ``log(lambda) = log(photons) - attenuation A x`` taken in
        closed form, so rays with a tiny mean do not underflow to ``log 0``."""
        counts = self.counts(y).round()
        log_mean = math.log(self.photons) - self.attenuation * ax
        return _flat_sum(counts * log_mean - log_mean.exp() - torch.lgamma(counts + 1))

    def __repr__(self) -> str:
        return f"TransmissionNoise(photons={self.photons}, attenuation={self.attenuation})"


def build_noise(kind: str, *, sigma: float | None = None, rate: float | None = None) -> NoiseModel:
    """``"none"``, ``"gaussian"`` (``sigma`` on [0, 1]) or ``"poisson"`` (``rate``)."""
    if kind == "none":
        return NoNoise()
    if kind == "gaussian":
        if sigma is None:
            raise UsageError("gaussian noise needs sigma (on the [0, 1] intensity scale, e.g. 0.025)")
        return GaussianNoise(sigma)
    if kind == "poisson":
        if rate is None:
            raise UsageError("poisson noise needs rate (photons per unit intensity, e.g. 100)")
        return PoissonNoise(rate)
    raise UsageError(f"unknown noise '{kind}' (choose one of: {', '.join(NOISE_NAMES)})")


@dataclass
class Problem:
    """A restoration problem: ``y = noise(operator(x))``; ``y``'s batch size = number of samples to produce."""

    operator: Operator
    noise: NoiseModel
    y: torch.Tensor


def simulate(operator: Operator, noise: NoiseModel, x: torch.Tensor, generator: torch.Generator) -> Problem:
    """Synthesise a measurement from a clean ``x`` (for ``--simulate`` and benchmarks)."""
    with torch.no_grad():
        y = noise.sample(operator(x), generator)
    return Problem(operator=operator, noise=noise, y=y)
