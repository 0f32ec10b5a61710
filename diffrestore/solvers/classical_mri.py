"""The classical MRI reconstructions, as methods an MRI user runs beside the samplers to compare: the zero-filled
image (``zero-filled``), SENSE (``sense``: conjugate gradients on the normal equations), and compressed sensing
with an L1 penalty on orthogonal wavelet coefficients (``cs-wavelet``, FISTA) or on the image's total variation
(``cs-tv``, primal-dual). No network and no randomness: one deterministic output per image, from
``operators.mri.MultiCoilMRI`` and the measured k-space ``y``.

All work on the complex image ``z`` in the task's units (the 99th-percentile magnitude is 1, tasks/mri.py), so a
penalty weight means the same on every scan. Each solves (``A`` the operator, ``k`` the measured k-space):

- ``sense``:      ``min ||A z - k||^2 + weight ||z||^2`` by conjugate gradients on ``(A^H A + weight) z = A^H k``
                  (Pruessmann et al. 2001; stops after ``steps`` or at the relative residual ``tolerance``);
- ``cs-wavelet``: ``min ||A z - k||^2 / 2 + weight ||W z||_1`` over the detail coefficients of a periodic
                  orthogonal wavelet ``W`` (``haar``, ``db2`` or ``db4``, ``levels`` deep), by FISTA (Beck and
                  Teboulle 2009) with step ``1 / ||A||^2``; Lustig et al. 2007's sparse MRI;
- ``cs-tv``:      ``min ||A z - k||^2 / 2 + weight TV(z)``, isotropic TV of the complex image with periodic
                  differences, by the primal-dual method of Chambolle and Pock 2011.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from ..operators.mri import channels_to_complex, complex_to_channels
from .base import Solver, SolverConfig
from .classical import NoPrior, Reconstruction
from .rules import Rule, integer, non_negative, one_of

if TYPE_CHECKING:
    from ..operators import Problem
    from .base import Generators, ProgressCallback

#: orthonormal scaling (low-pass) filters of the periodic wavelets (Daubechies 1988, table 6.1)
WAVELET_FILTERS: dict[str, tuple[float, ...]] = {
    "haar": (0.7071067811865476, 0.7071067811865476),
    "db2": (0.48296291314469025, 0.836516303737469, 0.22414386804185735, -0.12940952255092145),
    "db4": (0.23037781330885523, 0.7148465705525415, 0.6308807679295904, -0.02798376941698385,
            -0.18703481171888114, 0.030841381835986965, 0.032883011666982945, -0.010597401784997278),
}


class NoPriorMRI(NoPrior):
    """The stand-in prior of a classical MRI reconstruction: two channels (real, imaginary), no network."""

    channels = 2


@dataclasses.dataclass
class ZeroFilledConfig(SolverConfig):
    """steps: always 1 (the coil-combined inverse FFT of the zero-filled k-space)."""

    steps: int = 1


@dataclasses.dataclass
class SENSEConfig(SolverConfig):
    """steps: conjugate-gradient iterations; weight: Tikhonov weight (tuned as cs-wavelet's; 0 is plain SENSE, which
    amplifies noise where the coils cannot unfold the aliasing); tolerance: stop at this relative residual."""

    steps: int = 50
    weight: float = 1e-2
    tolerance: float = 1e-6

    rules: ClassVar[dict[str, Rule]] = {**SolverConfig.rules, "weight": non_negative(),
                                        "tolerance": non_negative()}


@dataclasses.dataclass
class CSWaveletConfig(SolverConfig):
    """steps: FISTA iterations; weight: of the L1 norm of the detail coefficients (tuned on training phantoms at
    4x and 8x: benchmarks/mri_baselines.py tune); wavelet, levels."""

    steps: int = 100
    weight: float = 1e-3
    wavelet: str = "db4"
    levels: int = 4

    rules: ClassVar[dict[str, Rule]] = {**SolverConfig.rules, "weight": non_negative(),
                                        "wavelet": one_of(*WAVELET_FILTERS), "levels": integer(1)}


@dataclasses.dataclass
class CSTVConfig(SolverConfig):
    """steps: primal-dual iterations; weight: of the isotropic total variation (tuned as cs-wavelet's)."""

    steps: int = 200
    weight: float = 1e-2

    rules: ClassVar[dict[str, Rule]] = {**SolverConfig.rules, "weight": non_negative()}


class ClassicalMRI(Reconstruction):
    """A deterministic MRI reconstruction (the subclasses say which)."""

    task: ClassVar[str] = "mri"
    measures: ClassVar[str] = "MRI k-space"
    stand_in: ClassVar[type[NoPrior]] = NoPriorMRI

    def _sample(self, prior: Any, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        op = problem.operator
        if getattr(op, "kind", None) != OperatorKind.MRI:
            raise UsageError(f"method {self.name} needs the MRI operator (the mri task)",
                             hint="use --method daps, dps or mcg")
        k = channels_to_complex(y) * op.mask[0]
        z = self.reconstruct(op, k, progress)
        return complex_to_channels(z[:, None]).to(torch.float32)

    def reconstruct(self, op: Any, k: torch.Tensor, progress: ProgressCallback) -> torch.Tensor:
        """The complex images ``(N, H, W)`` from the masked k-space ``k`` ``(N, C, H, W)``."""
        raise NotImplementedError


def zero_filled(op: Any, k: torch.Tensor) -> torch.Tensor:
    """``sum_c conj(S_c) F^H k_c / sum_c |S_c|^2``: ``(N, H, W)`` (``MultiCoilMRI.zero_filled`` on complex k)."""
    return channels_to_complex(op.zero_filled(complex_to_channels(k)))[:, 0]


def sense(op: Any, k: torch.Tensor, steps: int, weight: float = 0.0, tolerance: float = 1e-6,
          progress: Any = None) -> torch.Tensor:
    """Conjugate gradients on ``(A^H A + weight I) z = A^H k`` from 0, per image (each its own step sizes)."""
    b = op._adjoint_complex(k)
    z = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = _dot(r, r)
    stop = (tolerance**2) * rr
    for step in range(steps):
        if bool((rr <= stop).all()):
            break
        q = op._adjoint_complex(op._forward_complex(p)) + weight * p
        alpha = rr / _dot(p, q).clamp_min(torch.finfo(rr.dtype).tiny)
        z = z + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * q
        rr_new = _dot(r, r)
        p = r + (rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny))[:, None, None] * p
        rr = rr_new
        if progress is not None:
            progress(step + 1, steps, "sense")
    return z


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Re <a, b>`` per image (``(N,)``)."""
    return (a.conj() * b).real.flatten(1).sum(dim=1)


# --------------------------------------------------------------------------------------------------- wavelets


def wavelet_matrix(size: int, wavelet: str, levels: int) -> tuple[torch.Tensor, int]:
    """The ``size x size`` orthogonal matrix of a periodic ``levels``-deep 1-D wavelet transform (rows: the
    approximation coefficients first, then the details from coarse to fine), and the length of the
    approximation band. Levels stop where the band would be odd or shorter than the filter."""
    h = torch.tensor(WAVELET_FILTERS[wavelet], dtype=torch.float64)
    taps = h.numel()
    g = torch.tensor([(-1) ** i * float(h[taps - 1 - i]) for i in range(taps)], dtype=torch.float64)
    total = torch.eye(size, dtype=torch.float64)
    band = size
    for _ in range(levels):
        if band % 2 or band < max(taps, 2):
            break
        half = band // 2
        step = torch.zeros(band, band, dtype=torch.float64)
        for i in range(half):
            for j in range(taps):
                step[i, (2 * i + j) % band] += h[j]
                step[half + i, (2 * i + j) % band] += g[j]
        level = torch.eye(size, dtype=torch.float64)
        level[:band, :band] = step
        total = level @ total
        band = half
    return total, band


class _Wavelet2D:
    """A separable periodic orthogonal 2-D wavelet transform of complex images ``(N, H, W)``; ``detail`` is 1 on
    the detail coefficients (0 on the coarsest approximation band, which is not penalised)."""

    def __init__(self, height: int, width: int, wavelet: str, levels: int, device: Any) -> None:
        rows, band_h = wavelet_matrix(height, wavelet, levels)
        cols, band_w = wavelet_matrix(width, wavelet, levels)
        self.rows = rows.to(device=device, dtype=torch.complex64)
        self.cols = cols.to(device=device, dtype=torch.complex64)
        self.detail = torch.ones(height, width, device=device)
        self.detail[:band_h, :band_w] = 0.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.rows @ z @ self.cols.T

    def inverse(self, c: torch.Tensor) -> torch.Tensor:
        return self.rows.T @ c @ self.cols


def soft_threshold(c: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Complex soft thresholding: ``c max(0, 1 - t / |c|)``."""
    size = c.abs()
    return c * (1 - threshold / size.clamp_min(1e-30)).clamp_min(0.0)


def cs_wavelet(op: Any, k: torch.Tensor, steps: int, weight: float, wavelet: str = "db4", levels: int = 4,
               progress: Any = None) -> torch.Tensor:
    """FISTA on ``||A z - k||^2 / 2 + weight ||W z||_1`` (details only), from the zero-filled image."""
    height, width = k.shape[-2:]
    transform = _Wavelet2D(height, width, wavelet, levels, k.device)
    lipschitz = max(float(op.norm()) ** 2, 1e-12)
    step = 1.0 / lipschitz
    threshold = step * weight * transform.detail
    z = zero_filled(op, k)
    previous, momentum, t = z, z, 1.0
    for i in range(steps):
        gradient = op._adjoint_complex(op._forward_complex(momentum) - k)
        z = transform.inverse(soft_threshold(transform.forward(momentum - step * gradient), threshold))
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        momentum = z + ((t - 1) / t_next) * (z - previous)
        previous, t = z, t_next
        if progress is not None:
            progress(i + 1, steps, "cs-wavelet")
    return z


# ---------------------------------------------------------------------------------------------- total variation


def _gradient(z: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences ``(N, 2, H, W)`` (down, right)."""
    return torch.stack((torch.roll(z, -1, dims=-2) - z, torch.roll(z, -1, dims=-1) - z), dim=1)


def _gradient_adjoint(p: torch.Tensor) -> torch.Tensor:
    return (torch.roll(p[:, 0], 1, dims=-2) - p[:, 0]) + (torch.roll(p[:, 1], 1, dims=-1) - p[:, 1])


def total_variation(z: torch.Tensor) -> torch.Tensor:
    """Isotropic TV of complex images ``(N, H, W)``: ``sum sqrt(|d_y z|^2 + |d_x z|^2)`` per image."""
    return (_gradient(z).abs() ** 2).sum(dim=1).sqrt().flatten(1).sum(dim=1)


def cs_tv(op: Any, k: torch.Tensor, steps: int, weight: float, progress: Any = None) -> torch.Tensor:
    """Chambolle-Pock on ``||A z - k||^2 / 2 + weight TV(z)`` with ``K = (A, grad)``, from the zero-filled
    image; steps ``tau = sigma = 1 / ||K||`` (``||grad||^2 <= 8``)."""
    norm = math.sqrt(float(op.norm()) ** 2 + 8.0)
    tau = sigma = 0.99 / norm
    z = zero_filled(op, k)
    z_bar = z
    q = torch.zeros_like(k)  # the dual of the data term
    p = torch.zeros(z.shape[0], 2, *z.shape[1:], dtype=z.dtype, device=z.device)
    for i in range(steps):
        q = (q + sigma * (op._forward_complex(z_bar) - k)) / (1 + sigma)
        p = p + sigma * _gradient(z_bar)
        size = (p.abs() ** 2).sum(dim=1, keepdim=True).sqrt()
        p = p / (size / max(weight, 1e-30)).clamp_min(1.0)
        previous = z
        z = z - tau * (op._adjoint_complex(q) + _gradient_adjoint(p))
        z_bar = 2 * z - previous
        if progress is not None:
            progress(i + 1, steps, "cs-tv")
    return z


# -------------------------------------------------------------------------------------------------- the methods


class ZeroFilled(ClassicalMRI):
    name = "zero-filled"
    config_class: ClassVar[type[SolverConfig]] = ZeroFilledConfig

    @classmethod
    def from_preset(cls, preset: str = "fast", **overrides: Any) -> Solver:
        solver = super().from_preset(preset, **overrides)
        if int(solver.config.steps) != 1:
            raise UsageError(f"method zero-filled is one inverse FFT, got --steps {solver.config.steps}",
                             hint="drop --steps")
        return solver

    def reconstruct(self, op: Any, k: torch.Tensor, progress: ProgressCallback) -> torch.Tensor:
        progress(1, 1, self.name)
        return zero_filled(op, k)


class SENSE(ClassicalMRI):
    name = "sense"
    config_class: ClassVar[type[SolverConfig]] = SENSEConfig

    def reconstruct(self, op: Any, k: torch.Tensor, progress: ProgressCallback) -> torch.Tensor:
        c = self.config
        return sense(op, k, int(c.steps), float(c.weight), float(c.tolerance), progress)


class CSWavelet(ClassicalMRI):
    name = "cs-wavelet"
    config_class: ClassVar[type[SolverConfig]] = CSWaveletConfig

    def reconstruct(self, op: Any, k: torch.Tensor, progress: ProgressCallback) -> torch.Tensor:
        c = self.config
        return cs_wavelet(op, k, int(c.steps), float(c.weight), str(c.wavelet), int(c.levels), progress)


class CSTV(ClassicalMRI):
    name = "cs-tv"
    config_class: ClassVar[type[SolverConfig]] = CSTVConfig

    def reconstruct(self, op: Any, k: torch.Tensor, progress: ProgressCallback) -> torch.Tensor:
        return cs_tv(op, k, int(self.config.steps), float(self.config.weight), progress)
