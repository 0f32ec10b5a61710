"""Any pixel-space diffusers ``UNet2DModel`` + DDPM-style scheduler, seen as a variance-exploding denoiser.

The one conversion from a variance-preserving (DDPM) network to the denoiser view used by every solver.
A DDPM state is x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps; dividing by sqrt(alpha_bar) gives the VE state
x = x0 + sigma eps with

    sigma = sqrt((1 - alpha_bar) / alpha_bar)   <=>   alpha_bar = 1 / (1 + sigma^2).

So ``denoise(x, sigma)`` feeds x_t = x * sqrt(alpha_bar) = x / sqrt(1 + sigma^2) to the network at the timestep t
whose table sigma_t equals sigma, and turns the output into x0:

    epsilon:       x0 = x - sigma * eps_hat
    v_prediction:  x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v_hat
                      = x / (1 + sigma^2) - sigma v_hat / sqrt(1 + sigma^2)
    sample:        x0 = network output

Timestep matching: ``timestep="interpolate"`` (default) gives the network a fractional t, linear in log sigma
between the two neighbouring entries of the ``alphas_cumprod`` table (sinusoidal time embeddings accept any real
t, and the input scaling always uses the exact alpha_bar of the requested sigma, so the two never disagree by more
than one table step); ``timestep="nearest"`` rounds to the nearest table entry in log sigma. sigma_min and sigma_max
are the table's ends; sigma outside them is clamped for the timestep only.

Learned-variance models (out_channels == 2 * in_channels, e.g. ADM / DDPM++ "learned_range") predict
[eps, variance]: only the first half is used. The network may run in fp16/bf16: inputs are cast to its dtype and
the output back to float32, so solver state stays float32. fp16 on the CPU is refused (no CPU kernels).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import DeviceError, UsageError
from .base import Prior, sigma_per_item

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


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
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if alphas_cumprod is None:
            raise UsageError(
                f"scheduler {type(scheduler).__name__} has no alphas_cumprod table",
                hint="use a DDPM-style scheduler (DDPMScheduler, DDIMScheduler, ...)",
            )
        prediction_type = getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise UsageError(
                f"unsupported prediction_type '{prediction_type}'", hint=f"supported: {', '.join(PREDICTION_TYPES)}"
            )
        if timestep not in ("interpolate", "nearest"):
            raise UsageError(f"unknown timestep mode '{timestep}'", hint="use 'interpolate' or 'nearest'")
        param = next(unet.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        net_dtype = param.dtype if param is not None else torch.float32
        dtype = dtype or net_dtype
        if dtype == torch.float16 and self.device.type == "cpu":
            raise DeviceError(
                "fp16 is not supported on the CPU", hint="use float32 (or bf16) on the CPU, or run on cuda/mps"
            )
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise DeviceError(f"unsupported network dtype {dtype}", hint="use float32, float16 or bfloat16")
        if dtype != net_dtype:
            unet.to(dtype=dtype)
        unet.eval()
        unet.requires_grad_(False)
        self.unet = unet
        self.dtype = dtype
        self.prediction_type = prediction_type
        self.timestep_mode = timestep

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

        ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu()
        sigmas = ((1.0 - ab) / ab).sqrt()
        if not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise UsageError("the scheduler's alphas_cumprod must decrease strictly with the timestep")
        self.log_sigmas = sigmas.log().to(dtype=torch.float32, device=self.device)
        self.sigma_min = float(sigmas[0])
        self.sigma_max = float(sigmas[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The (fractional or nearest) timestep, shape (N,) float32, whose table sigma matches ``sigma``."""
        table = self.log_sigmas
        log_s = sigma.to(torch.float32).clamp(self.sigma_min, self.sigma_max).log()
        if self.timestep_mode == "nearest":
            return (log_s[:, None] - table[None]).abs().argmin(dim=1).to(torch.float32)
        hi = torch.searchsorted(table, log_s.contiguous()).clamp(1, table.numel() - 1)
        lo = hi - 1
        frac = ((log_s - table[lo]) / (table[hi] - table[lo])).clamp(0.0, 1.0)
        return lo.to(torch.float32) + frac

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        n = x.shape[0]
        x = x.to(torch.float32)
        s = sigma_per_item(sigma, n, x.device)
        t = self.timestep(s)
        scale = (1.0 + s.square()).rsqrt()[:, None, None, None]  # sqrt(alpha_bar)
        out = self.unet((x * scale).to(self.dtype), t.to(self.device), return_dict=False)[0].to(torch.float32)
        if self.learned_variance:
            out = out[:, : self.channels]
        sb = s[:, None, None, None]
        if self.prediction_type == "epsilon":
            return x - sb * out
        if self.prediction_type == "v_prediction":
            # x0 = sqrt(ab) * x_t - sqrt(1 - ab) * v with x_t = sqrt(ab) x, ab = 1/(1+s^2), sqrt(1-ab) = s sqrt(ab)
            return scale.square() * x - sb * scale * out
        return out
