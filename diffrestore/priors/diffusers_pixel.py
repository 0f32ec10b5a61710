"""Any pixel-space diffusers ``UNet2DModel`` + DDPM-style scheduler, seen as a variance-exploding denoiser.

The VP -> VE conversion and the sigma -> timestep map are ``vp.VPDenoiser`` (shared with the latent priors).
Learned-variance models (out_channels == 2 * in_channels, e.g. ADM / DDPM++ "learned_range") predict
[eps, variance]: only the first half is used. The network may run in fp16/bf16: inputs are cast to its dtype and
the output back to float32, so solver state stays float32. fp16 on the CPU is refused (no CPU kernels).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import UsageError
from .base import Prior, freeze_network
from .vp import VPDenoiser


class DiffusersPixelPrior(Prior):
    """Wrap ``unet`` (a ``diffusers.UNet2DModel`` or anything with its call signature and ``config``) and the
    ``scheduler`` that trained it (anything with ``alphas_cumprod`` and ``config.prediction_type``).

    Args:
        dtype: the dtype the network runs in; None keeps the network's own. The module is cast in place.
        native_size: (H, W) the prior is restricted to; "config" (default) reads ``unet.config.sample_size``;
            None = fully convolutional, any size (multiples of the UNet's down-sampling factor).
        timestep: "interpolate" (fractional t, default) or "nearest" (see the module docstring).

    The network is put in eval mode and its parameters stop requiring gradients (solvers differentiate with
    respect to the image only).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: object,
        *,
        dtype: torch.dtype | None = None,
        native_size: tuple[int, int] | int | Literal["config"] | None = "config",
        timestep: Literal["interpolate", "nearest"] = "interpolate",
    ) -> None:
        config = unet.config
        self.vp = VPDenoiser.from_scheduler(scheduler, timestep=timestep)
        self.device, self.dtype = freeze_network(unet, dtype)
        self.unet = unet
        self.vp.to(self.device)
        self.prediction_type = self.vp.prediction_type

        self.channels = int(config.in_channels)
        out_channels = int(getattr(config, "out_channels", self.channels))
        if out_channels not in (self.channels, 2 * self.channels):
            raise UsageError(
                f"the network outputs {out_channels} channels for {self.channels} input channels",
                hint="expected out_channels == in_channels, or 2 * in_channels for learned variance",
            )
        self.learned_variance = out_channels == 2 * self.channels
        self.size_multiple = 2 ** max(len(getattr(config, "block_out_channels", (0,))) - 1, 0)
        if native_size == "config":
            native_size = getattr(config, "sample_size", None)
        if isinstance(native_size, int):
            native_size = (native_size, native_size)
        self.native_size = None if native_size is None else (int(native_size[0]), int(native_size[1]))

        self.sigma_min = self.vp.sigma_min
        self.sigma_max = self.vp.sigma_max

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The timestep, shape (N,) float32, whose table sigma matches ``sigma`` (see vp.VPDenoiser)."""
        return self.vp.timestep(sigma)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        def network(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.unet(x_t, t.to(self.device), return_dict=False)[0]

        return self.vp.denoise(network, x, sigma, self.dtype)
