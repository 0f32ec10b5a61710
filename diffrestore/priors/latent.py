"""Latent priors: Stable Diffusion (AutoencoderKL + UNet2DConditionModel, text-conditioned) and LDM (VQModel +
UNet2DModel), seen through the ``LatentPrior`` contract of priors/base.py.

    z = encode(x) = scale * E(x)          x = decode(z) = D(z / scale)          (scale: 0.18215 SD, 1.0 LDM VQ)
    denoise(z_sigma, sigma, cond) = E[z0 | z_sigma]   through vp.VPDenoiser and the model's own alpha_bar table

Encoding takes the mean of SD's latent distribution (a deterministic map; the VQ encoder's pre-quantisation
latents for LDM, as LDM's own first stage). Decoding is differentiable: the VQ decoder quantises with a straight-
through gradient, which is what the LDM checkpoints were trained to decode. Classifier-free guidance runs the
negative and the conditional pass as one batch of 2N (``base.guide`` combines them).

Image sizes: the autoencoder and UNet take multiples of the autoencoder's down-sampling times the UNet's (8 x 8 =
64 px for SD); solvers pad other sizes to that grid (``LatentPrior.padded_shape``) and crop back. The model's
training size is ``native_size``: larger latents are denoised in windows of it (priors/tiled.py).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from ..errors import UsageError
from .base import Conditioning, LatentPrior, freeze_network
from .files import text_conditioning
from .vp import VPDenoiser


def _down_factor(config: Any) -> int:
    return 2 ** max(len(getattr(config, "block_out_channels", (0,))) - 1, 0)


class DiffusersLatentPrior(LatentPrior):
    """A diffusers UNet (conditional or not), its autoencoder and the scheduler that trained it.

    Args: latent_scale: multiplies encoder latents into the diffusion's units. prompt: the default prompt (SD).
    resolution: the training image size (0: the UNet's sample_size times the autoencoder's factor). dtype: the
    networks' dtype (None keeps theirs); latents and solver state stay float32."""

    def __init__(self, unet: torch.nn.Module, autoencoder: torch.nn.Module, scheduler: object, *,
                 latent_scale: float, name: str = "", prompt: str = "", resolution: int = 0,
                 text_encoder: torch.nn.Module | None = None, tokenizer: Any = None,
                 dtype: torch.dtype | None = None,
                 timestep: Literal["interpolate", "nearest"] = "interpolate") -> None:
        self.device, self.dtype = freeze_network(unet, dtype)
        freeze_network(autoencoder, self.dtype)
        if text_encoder is not None:
            freeze_network(text_encoder, None)
        self.unet, self.autoencoder = unet, autoencoder
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.name, self.prompt = name, prompt
        self.latent_scale = float(latent_scale)
        self.vp = VPDenoiser.from_scheduler(scheduler, timestep=timestep).to(self.device)
        self.alphas_cumprod = self.vp.alphas_cumprod
        self.sigma_min, self.sigma_max = self.vp.sigma_min, self.vp.sigma_max
        self.conditional = getattr(unet.config, "cross_attention_dim", None) is not None
        self.autoencoder_kind = "vq" if hasattr(autoencoder, "quantize") else "kl"
        self.latent_channels = int(unet.config.in_channels)
        self.channels = int(autoencoder.config.in_channels)
        self.downscale = _down_factor(autoencoder.config)
        self.size_multiple = self.downscale * _down_factor(unet.config)
        side = int(resolution) or int(getattr(unet.config, "sample_size", 0) or 0) * self.downscale
        self.native_size = (side, side) if side else None

    # ------------------------------------------------------------------------------------------- denoiser
    def denoise(self, z: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning | None = None) -> torch.Tensor:
        cond = cond if cond is not None else self._default_condition()

        def network(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = t.to(self.device)
            if not self.conditional:
                return self.unet(z_t, t, return_dict=False)[0]

            def embed(embeddings: torch.Tensor | None) -> torch.Tensor:
                if embeddings is None:
                    raise UsageError(f"model '{self.name}' is text-conditioned: give prompt embeddings")
                e = embeddings.to(self.device, self.dtype)
                return e.expand(z_t.shape[0], -1, -1) if e.shape[0] == 1 else e

            if not cond.guided:
                return self.unet(z_t, t, encoder_hidden_states=embed(cond.embeddings), return_dict=False)[0]
            # classifier-free guidance: the negative and the conditional pass in one batch of 2N (one call)
            both = self.unet(torch.cat([z_t, z_t]), torch.cat([t, t]),
                             encoder_hidden_states=torch.cat([embed(cond.negative), embed(cond.embeddings)]),
                             return_dict=False)[0]
            negative, conditional = both.chunk(2)
            return negative + cond.guidance * (conditional - negative)  # as base.guide

        return self.vp.denoise(network, z, sigma, self.dtype)

    def _default_condition(self) -> Conditioning:
        if not self.conditional:
            return Conditioning()
        if not hasattr(self, "_default"):
            self._default = self.condition()
        return self._default

    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        return text_conditioning(self, prompt, negative_prompt, guidance)

    # ---------------------------------------------------------------------------------------- autoencoder
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.autoencoder.encode(x.to(self.device, self.dtype))
        z = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
        return z.float() * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode((z / self.latent_scale).to(self.dtype)).sample.float()

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = (int(v) for v in image_shape)
        if c != self.channels:
            raise UsageError(f"the prior models {self.channels}-channel images but the image has {c} channel(s)")
        m = self.size_multiple
        if h % m or w % m:
            raise UsageError(f"the latent prior needs height and width divisible by {m} but the image is {w}x{h}",
                             hint=f"pad or crop the image to a multiple of {m} pixels")
        return (self.latent_channels, h // self.downscale, w // self.downscale)
