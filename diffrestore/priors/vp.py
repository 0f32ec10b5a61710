"""The one conversion from a variance-preserving (DDPM) network to the denoiser view every solver uses.

Pixel (UNet2DModel, ADM) and latent (Stable Diffusion's UNet2DConditionModel, LDM's UNet2DModel) networks, with or
without conditioning, all go through ``VPDenoiser``. A DDPM state is x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar)
eps; dividing by sqrt(alpha_bar) gives the variance-exploding state x = x0 + sigma eps with

    sigma = sqrt((1 - alpha_bar) / alpha_bar)   <=>   alpha_bar = 1 / (1 + sigma^2).

So ``denoise`` feeds x_t = x * sqrt(alpha_bar) = x / sqrt(1 + sigma^2) to the network at the timestep t whose
table sigma_t equals sigma, and turns the output into x0:

    epsilon:       x0 = x - sigma * eps_hat
    v_prediction:  x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v_hat
                      = x / (1 + sigma^2) - sigma v_hat / sqrt(1 + sigma^2)
    sample:        x0 = network output

The timestep comes from the model's own ``alphas_cumprod`` table (never a generic linear one: the official
LatentDAPS code maps sigma through DDPM's linear betas and feeds an LDM trained with scaled-linear betas t = 27
where the table says 6). ``timestep="interpolate"`` (default) gives a fractional t, linear in log sigma between the
two neighbouring table entries (sinusoidal time embeddings accept any real t, and the input scaling always uses the
exact alpha_bar of the requested sigma, so the two never disagree by more than one table step); ``"nearest"``
rounds to the nearest entry in log sigma. sigma_min and sigma_max are the table's ends; sigma outside them is
clamped for the timestep only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..errors import UsageError
from .base import sigma_per_item

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_MODES = ("interpolate", "nearest")

#: network(x_t, t) -> output, x_t in the network's dtype, t float32 of shape (N,)
NetworkCall = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class VPDenoiser:
    """sigma <-> timestep through a model's ``alphas_cumprod`` table, and the VP network output -> x0."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon", *,
                 timestep: Literal["interpolate", "nearest"] = "interpolate",
                 device: torch.device | str = "cpu") -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise UsageError(
                f"unsupported prediction_type '{prediction_type}'", hint=f"supported: {', '.join(PREDICTION_TYPES)}"
            )
        if timestep not in TIMESTEP_MODES:
            raise UsageError(f"unknown timestep mode '{timestep}'", hint="use 'interpolate' or 'nearest'")
        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu()
        sigmas = ((1.0 - ab) / ab).sqrt()
        if not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise UsageError("the scheduler's alphas_cumprod must decrease strictly with the timestep")
        self.prediction_type = prediction_type
        self.timestep_mode = timestep
        self.alphas_cumprod = ab.to(torch.float32)
        self.log_sigmas = sigmas.log().to(dtype=torch.float32, device=device)
        self.sigma_min = float(sigmas[0])
        self.sigma_max = float(sigmas[-1])

    @classmethod
    def from_scheduler(cls, scheduler: object, **kwargs: object) -> VPDenoiser:
        """From a diffusers DDPM-style scheduler (anything with ``alphas_cumprod`` and ``config.prediction_type``)."""
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if alphas_cumprod is None:
            raise UsageError(
                f"scheduler {type(scheduler).__name__} has no alphas_cumprod table",
                hint="use a DDPM-style scheduler (DDPMScheduler, DDIMScheduler, ...)",
            )
        prediction_type = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
        return cls(alphas_cumprod, prediction_type, **kwargs)  # type: ignore[arg-type]

    def to(self, device: torch.device | str) -> VPDenoiser:
        self.log_sigmas = self.log_sigmas.to(device)
        return self

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The (fractional or nearest) timestep, shape (N,) float32, whose table sigma matches ``sigma``."""
        table = self.log_sigmas
        log_s = sigma.to(device=table.device, dtype=torch.float32).clamp(self.sigma_min, self.sigma_max).log()
        if self.timestep_mode == "nearest":
            return (log_s[:, None] - table[None]).abs().argmin(dim=1).to(torch.float32)
        hi = torch.searchsorted(table, log_s.contiguous()).clamp(1, table.numel() - 1)
        lo = hi - 1
        frac = ((log_s - table[lo]) / (table[hi] - table[lo])).clamp(0.0, 1.0)
        return lo.to(torch.float32) + frac

    def denoise(self, network: NetworkCall, x: torch.Tensor, sigma: torch.Tensor | float,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """E[x0 | x] for the VE state ``x`` (float32) at ``sigma`` (scalar or (N,)), calling ``network`` once on
        the VP state in ``dtype``; returns float32 of x's shape (the first x.shape[1] output channels: learned-
        variance networks append their variance channels)."""
        x = x.to(torch.float32)
        s = sigma_per_item(sigma, x.shape[0], x.device)
        scale = (1.0 + s.square()).rsqrt()[:, None, None, None]  # sqrt(alpha_bar)
        out = network((x * scale).to(dtype), self.timestep(s)).to(torch.float32)[:, : x.shape[1]]
        sb = s[:, None, None, None]
        if self.prediction_type == "epsilon":
            return x - sb * out
        if self.prediction_type == "v_prediction":
            # x0 = sqrt(ab) * x_t - sqrt(1 - ab) * v with x_t = sqrt(ab) x, ab = 1/(1+s^2), sqrt(1-ab) = s sqrt(ab)
            return scale.square() * x - sb * scale * out
        return out
