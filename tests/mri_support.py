"""Multi-coil k-space without an inverse crime, for the MRI tests and benchmarks: phantominator evaluates the
continuous Fourier transform of the Shepp-Logan ellipses times smooth coil sensitivities (Guerquin-Kern et al.,
IEEE TMI 2012) at the Cartesian grid's frequencies, so the data are not made by the operator that restores them
(no band limit, Gibbs ringing, the object's edges between pixels).

The grid samples frequencies ``0.75`` apart, so the field of view is ``4/3`` of the phantom (it sits inside, as a
scan's object does). Coil 5 of phantominator's table has coefficients about 1e9 times the others' (its data
would be that one coil), so it is left out: 7 coils. ``analytic_maps`` evaluates the same sensitivity model on
the pixel grid (the maps a perfect calibration would give); with them the coil images fit ``S_c x`` to about 2 %
(the model mismatch of a discrete image)."""

from __future__ import annotations

import contextlib
import functools
import io

import numpy as np

COILS = (0, 1, 2, 3, 4, 6, 7)
SPACING = 0.75


@functools.lru_cache(maxsize=4)
def analytic_kspace(size: int) -> np.ndarray:
    """Complex64 k-space ``(7, size, size)`` of the modified Shepp-Logan phantom, DC at ``size // 2``."""
    from phantominator import kspace_shepp_logan

    grid = (np.arange(size) - size // 2) * SPACING
    ky, kx = np.meshgrid(grid, grid, indexing="ij")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its timing
        values = kspace_shepp_logan(kx.ravel(), ky.ravel(), ncoil=8)
    return np.ascontiguousarray(values.T.reshape(8, size, size)[list(COILS)], dtype=np.complex64)


@functools.lru_cache(maxsize=4)
def analytic_maps(size: int) -> np.ndarray:
    """The phantom's coil sensitivities on the pixel grid, complex64 ``(7, size, size)``."""
    from phantominator.sens_coeffs import _sens_coeffs

    taps = 6
    line = np.linspace(-np.floor(taps / 2), np.floor((taps - 1) / 2), taps)
    index = np.arange(taps * taps)
    kx, ky = line[index // taps] / 2, line[index % taps] / 2
    pixels = (np.arange(size) - size // 2) / (size * SPACING)
    x, y = pixels[None, :], pixels[:, None]
    waves = np.exp(-2j * np.pi * (kx[:, None, None] * x[None] + ky[:, None, None] * y[None]))
    coefficients = np.stack([_sens_coeffs(c) for c in COILS])
    return np.tensordot(coefficients, waves, axes=(1, 0)).astype(np.complex64)


def mvue(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The coil-combined image ``sum_c conj(S_c) F^H k_c / sum_c |S_c|^2`` of k-space ``(C, H, W)``."""
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    energy = (np.abs(maps) ** 2).sum(axis=0)
    return ((maps.conj() * images).sum(axis=0) / np.where(energy > 0, energy, 1)).astype(np.complex64)


def magnitude_psnr(restored: np.ndarray, reference: np.ndarray) -> float:
    """InverseBench's PSNR of magnitudes: data range the reference's maximum, the restored clipped to [0, max]."""
    target = np.abs(reference)
    peak = target.max()
    error = np.mean((np.clip(np.abs(restored), 0, peak) - target) ** 2)
    return float(10 * np.log10(peak**2 / error))
