"""The one thing every solver asks of a prior: a denoiser in the variance-exploding (EDM) convention.

    x_sigma = x0 + sigma * eps,  eps ~ N(0, I),  images in [-1, 1] ("tensor units")
    denoise(x_sigma, sigma) = E[x0 | x_sigma]                  (Tweedie: score = (denoise - x) / sigma^2)

Variance-preserving networks (DDPM, ADM) are wrapped once in ``DiffusersPixelPrior``; analytic priors
(``analytic.py``) answer exactly. Solvers never see a network, a scheduler or a timestep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..errors import UsageError


class Prior(ABC):
    """A diffusion prior seen as a denoiser.

    Attributes:
        sigma_min, sigma_max: the noise levels (tensor units) the denoiser was trained on; solvers keep their
            schedules inside this range.
        channels: image channels the prior models.
        native_size: (H, W) the prior is restricted to, or None when any size works (fully convolutional).
        size_multiple: H and W must be multiples of this (down-sampling stages of a UNet).
        clip_range: the support of the data, (-1, 1) for image models. Solvers that clamp their x0 estimates
            (where the paper does) clamp to this range; None means unbounded (analytic priors): no clamping.
        device: where ``denoise`` runs; dtype: the dtype the network runs in (solver state stays float32).
    """

    sigma_min: float
    sigma_max: float
    channels: int
    native_size: tuple[int, int] | None = None
    size_multiple: int = 1
    clip_range: tuple[float, float] | None = (-1.0, 1.0)
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """E[x0 | x] for x = x0 + sigma * eps; x (N, C, H, W) float32, sigma a scalar or shape (N,).

        Returns float32 of x's shape. Differentiable in x (solvers backpropagate through it).
        """

    def check_image_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise UsageError unless images of ``shape`` ((C, H, W) or (N, C, H, W)) can go through this prior."""
        c, h, w = (int(v) for v in tuple(shape)[-3:])
        if c != self.channels:
            raise UsageError(
                f"the prior models {self.channels}-channel images but the image has {c} channel(s)",
                hint="pick a prior trained on this colour mode (e.g. a grayscale prior for grayscale input)",
            )
        if self.native_size is not None and (h, w) != tuple(self.native_size):
            nh, nw = self.native_size
            raise UsageError(
                f"the prior only works at its native size {nw}x{nh} but the image is {w}x{h}; "
                "tiling for other sizes is not implemented yet",
                hint=f"crop or resize the image to {nw}x{nh} yourself, or use a fully convolutional prior",
            )
        m = self.size_multiple
        if m > 1 and (h % m or w % m):
            raise UsageError(
                f"the prior needs height and width divisible by {m} but the image is {w}x{h}",
                hint=f"pad or crop the image to a multiple of {m} pixels",
            )


def sigma_per_item(sigma: torch.Tensor | float, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Broadcast a scalar or (N,) sigma to a float32 tensor of shape (N,) on ``device``."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=device)
    if s.ndim == 0:
        return s.expand(batch)
    s = s.reshape(-1)
    if s.numel() != batch:
        raise ValueError(f"sigma has {s.numel()} entries for a batch of {batch}")
    return s
