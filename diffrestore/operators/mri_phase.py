"""Complex MRI images for priors: smooth random phase maps, and the one mapping between complex images and the
prior's real tensor that training and the ``mri`` task share.

Phase. Magnitude images (phantoms, DICOM, PNG) carry no phase, while reconstructed MR images do: a slowly
varying one from B0 inhomogeneity, coil phase and the receive chain. ``smooth_phase`` draws such a map (a sum of
a few low-frequency 2-D cosines with random frequencies, orientations and offsets), ``with_smooth_phase`` applies
it to a magnitude image. Both are deterministic for a seeded ``torch.Generator``.

Scale (InverseBench's convention for its complex knee prior). A complex image ``z`` is divided by the 99th
percentile of ``|z|`` and carried as two real channels (real, imaginary)::

    tensor = complex_to_channels(z / p99(|z|)),     z = p99 * channels_to_complex(tensor)

so the magnitude of the prior's images lies in about ``[0, 1]`` (1 % of pixels above 1), and the real and
imaginary channels in about ``[-1, 1]``, the range the builtin prior is trained on. Training applies it to every
crop (``to_prior``); at inference the scale is unknown and is estimated from the measurement: the 99th percentile
of the magnitude of the zero-filled image (``scale_from_image`` of the coil-combined adjoint, as the ``mri`` task
does; the exact pseudo-inverse amplifies noise with several coils and would overestimate it about twofold); the
reconstruction is mapped back with ``from_prior``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: The percentile of ``|z|`` that maps to magnitude 1 in the prior's tensor (InverseBench: 99).
SCALE_PERCENTILE = 99.0

#: Cosine components of a phase map, and the largest spatial frequency in cycles per image side.
PHASE_COMPONENTS = 4
PHASE_MAX_CYCLES = 1.5


def smooth_phase(height: int, width: int, *, generator: torch.Generator, max_radians: float = math.pi) -> torch.Tensor:
    """A smooth random phase map ``(height, width)`` float32 with ``max |phase| = max_radians``.

    A sum of ``PHASE_COMPONENTS`` plane cosines ``a_k cos(2 pi (f_k . r) + o_k)`` with frequencies of at most
    ``PHASE_MAX_CYCLES`` cycles per image side (r in [0, 1)^2), then scaled so the largest absolute value is
    ``max_radians`` (0 gives a zero map). Same generator state, same map.
    """
    if height < 1 or width < 1:
        raise ValueError(f"a phase map needs a positive size, got {height}x{width}")
    if max_radians < 0:
        raise ValueError(f"max_radians must be >= 0, got {max_radians}")
    draws = torch.rand((PHASE_COMPONENTS, 5), generator=generator, dtype=torch.float64)
    ys = torch.arange(height, dtype=torch.float64).view(-1, 1) / height
    xs = torch.arange(width, dtype=torch.float64).view(1, -1) / width
    field = torch.zeros(height, width, dtype=torch.float64)
    for amplitude, cycles, angle, offset, _ in draws:
        frequency = PHASE_MAX_CYCLES * (0.25 + 0.75 * cycles)
        theta = 2 * math.pi * angle
        along = math.cos(theta) * xs + math.sin(theta) * ys
        field = field + (0.3 + 0.7 * amplitude) * torch.cos(2 * math.pi * frequency * along + 2 * math.pi * offset)
    # a random constant phase too (the global phase of a reconstruction is arbitrary)
    field = field - field.mean() + (2 * draws[0, 4] - 1) * field.abs().max()
    peak = field.abs().max()
    if peak == 0 or max_radians == 0:
        return torch.zeros(height, width, dtype=torch.float32)
    return (field * (max_radians / peak)).to(torch.float32)


def with_smooth_phase(
    magnitude: torch.Tensor, generator: torch.Generator, *, max_radians: float = math.pi
) -> torch.Tensor:
    """``magnitude * exp(i phi)`` with one ``smooth_phase`` map ``phi`` over the last two axes ``(..., H, W)``.

    The result is complex64 (complex128 for float64 input); every leading index shares the same map.
    """
    if magnitude.is_complex():
        raise ValueError("with_smooth_phase takes a real magnitude image")
    height, width = magnitude.shape[-2:]
    phase = smooth_phase(height, width, generator=generator, max_radians=max_radians).to(magnitude.device)
    phase = phase.to(torch.float64 if magnitude.dtype == torch.float64 else torch.float32)
    return torch.polar(magnitude.to(phase.dtype), phase.expand_as(magnitude))


def scale_from_image(z: torch.Tensor) -> float:
    """The ``SCALE_PERCENTILE`` th percentile of ``|z|`` (complex, or real channels already combined to a magnitude).

    Falls back to the maximum when the percentile is zero (sparse images) and to 1.0 for an all-zero image.
    """
    values = z.detach().abs().reshape(-1).to(torch.float64).cpu()
    if values.numel() == 0:
        raise ValueError("scale_from_image needs a non-empty image")
    scale = float(np.percentile(values.numpy(), SCALE_PERCENTILE))
    if scale <= 0:
        scale = float(values.max())
    return scale if scale > 0 else 1.0


def to_prior(z: torch.Tensor, scale: float | None = None) -> tuple[torch.Tensor, float]:
    """Complex ``(H, W)`` or ``(N, H, W)`` -> the prior's real tensor ``(N, 2, H, W)`` float32, and the scale used.

    ``scale`` None: ``scale_from_image(z)`` over the whole input (one scale for a batch; call per image to scale
    each on its own, as training does).
    """
    if not z.is_complex():
        raise ValueError("to_prior takes a complex image")
    if z.ndim == 2:
        z = z.unsqueeze(0)
    if z.ndim != 3:
        raise ValueError(f"to_prior takes (H, W) or (N, H, W), got {tuple(z.shape)}")
    scale = scale_from_image(z) if scale is None else float(scale)
    if not scale > 0:
        raise ValueError(f"the scale must be positive, got {scale}")
    scaled = (z / scale).to(torch.complex64)
    return torch.view_as_real(scaled).movedim(-1, 1).contiguous(), scale


def from_prior(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The prior's tensor ``(N, 2, H, W)`` -> complex ``(N, H, W)`` on the original scale (``to_prior``'s inverse)."""
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"from_prior takes (N, 2, H, W), got {tuple(x.shape)}")
    pairs = x.to(torch.float32).movedim(1, -1).contiguous()
    return torch.view_as_complex(pairs) * scale
