"""The three kinds of prior a solver can rely on; each solver declares the kind it needs (``Solver.prior_kind``).

pixel (``Prior``): a denoiser in the variance-exploding (EDM) convention on images,

    x_sigma = x0 + sigma * eps,  eps ~ N(0, I),  images in [-1, 1] ("tensor units")
    denoise(x_sigma, sigma) = E[x0 | x_sigma]                  (Tweedie: score = (denoise - x) / sigma^2)

latent (``LatentPrior``, priors/latent.py): the same denoiser on autoencoder latents z, with conditioning
(prompt embeddings, classifier-free guidance), ``encode``, a differentiable ``decode``, ``latent_shape`` and the
model's own alpha_bar table.

discrete (``DiscretePrior``, priors/discrete.py): log p(z0 | z_t) over a VQ codebook for token ids at step t
(with guidance), the mask id, the noise schedule, the codebook and a differentiable decode of soft codes.

Variance-preserving networks are converted once (``vp.VPDenoiser``); analytic priors (``analytic.py``) answer
exactly. Solvers never see a network or a scheduler.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import DeviceError, UsageError


def check_channels(prior_channels: int, image_channels: int) -> None:
    """UsageError when an image's channel count is not the prior's (every prior kind, and the tiling wrapper)."""
    if image_channels != prior_channels:
        raise UsageError(
            f"the prior models {prior_channels}-channel images but the image has {image_channels} channel(s)",
            hint="pick a prior trained on this colour mode (e.g. a grayscale prior for grayscale input)",
        )


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

    kind: ClassVar[str] = "pixel"
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
        check_channels(int(self.channels), c)
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


def freeze_network(module: torch.nn.Module, dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Put a network in eval mode without parameter gradients (solvers differentiate images, never weights) and
    cast it to ``dtype`` (None keeps its own). Returns (its device, its dtype). fp16 on the CPU is refused."""
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    net_dtype = param.dtype if param is not None else torch.float32
    dtype = dtype or net_dtype
    if dtype == torch.float16 and device.type == "cpu":
        raise DeviceError("fp16 is not supported on the CPU",
                          hint="use float32 (or bf16) on the CPU, or run on cuda/mps")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise DeviceError(f"unsupported network dtype {dtype}", hint="use float32, float16 or bfloat16")
    if dtype != net_dtype:
        module.to(dtype=dtype)
    module.eval()
    module.requires_grad_(False)
    return device, dtype


# ------------------------------------------------------------------------------------------ latent and discrete


@dataclass
class Conditioning:
    """What a conditional network is told: prompt embeddings (N or 1, L, D), the negative (unconditional)
    embeddings for classifier-free guidance, and the guidance scale (1 = conditional only, no negative pass).
    ``embeddings=None`` means an unconditional model."""

    embeddings: torch.Tensor | None = None
    negative: torch.Tensor | None = None
    guidance: float = 1.0

    @property
    def guided(self) -> bool:
        return self.negative is not None and self.guidance != 1.0


def guide(network: Callable[[torch.Tensor | None], torch.Tensor], cond: Conditioning) -> torch.Tensor:
    """Classifier-free guidance: out_neg + g (out_cond - out_neg), in whatever space the network outputs (eps, v
    and x0 are affine in each other at fixed sigma, so guiding any of them is the same)."""
    out = network(cond.embeddings)
    if not cond.guided:
        return out
    negative = network(cond.negative)
    return negative + cond.guidance * (out - negative)


class LatentPrior(ABC):
    """A diffusion prior on autoencoder latents: images x in [-1, 1] <-> latents z = encode(x), decode(z).

    Attributes: sigma_min / sigma_max (latent units), latent_channels, channels (image channels), size_multiple
    (image sides the autoencoder and UNet take are multiples of it; other sizes are padded by the solver, see
    ``padded_shape``), native_size (image (H, W) the model was trained at, or None), autoencoder_kind ("kl" or "vq"),
    conditional (takes prompt embeddings), alphas_cumprod (the model's own table), device, dtype (the networks';
    solver state stays float32)."""

    kind: ClassVar[str] = "latent"
    sigma_min: float
    sigma_max: float
    channels: int = 3
    latent_channels: int
    size_multiple: int = 1
    native_size: tuple[int, int] | None = None
    clip_range: tuple[float, float] | None = (-1.0, 1.0)
    autoencoder_kind: str = "kl"
    conditional: bool = False
    alphas_cumprod: torch.Tensor
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def denoise(self, z: torch.Tensor, sigma: torch.Tensor | float, cond: Conditioning | None = None) -> torch.Tensor:
        """E[z0 | z] for z = z0 + sigma * eps (latent units), with ``cond``'s guidance; float32 of z's shape."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] -> latents (float32, already scaled to the diffusion's units)."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] (float32), differentiable in z (no clamping)."""

    @abstractmethod
    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The latent (c, h, w) of an image (C, H, W) whose sides are multiples of ``size_multiple``; UsageError
        otherwise (``padded_shape`` gives the canvas any image fits in)."""

    @abstractmethod
    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        """The conditioning for a prompt (None: the model's default prompt); UsageError for a prompt or guidance
        on an unconditional model, ModelError when it needs a text encoder that is not installed."""

    def padded_shape(self, image_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
        """(C, H', W'): the image's canvas on the latent grid, H' and W' the next multiples of size_multiple."""
        c, h, w = (int(v) for v in tuple(image_shape)[-3:])
        m = max(1, int(self.size_multiple))
        return (c, -(-h // m) * m, -(-w // m) * m)

    def check_image_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Any size goes (solvers pad it to the latent grid); only the channels must match."""
        check_channels(int(self.channels), int(tuple(shape)[-3]))


class DiscretePrior(ABC):
    """A discrete (masked) diffusion prior on VQ tokens: an image is a grid of codebook ids; token ``mask_id``
    means "masked"; step t in 0..num_steps-1 has mask probability gamma_bar[t].

    Attributes: codebook_size K (ids 0..K-1, mask_id = K), num_steps, channels, native_size (image (H, W)),
    conditional (takes prompt embeddings), device, dtype."""

    kind: ClassVar[str] = "discrete"
    codebook_size: int
    mask_id: int
    num_steps: int
    channels: int = 3
    native_size: tuple[int, int] | None = None
    conditional: bool = False
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def log_p0(self, tokens: torch.Tensor, t: int, cond: Conditioning | None = None) -> torch.Tensor:
        """log p(z0 | z_t) for token ids (N, L) at step t: float32 (N, K, L), normalised over K, with guidance."""

    @abstractmethod
    def schedule(self) -> dict[str, torch.Tensor]:
        """The noise schedule per step t: ``alpha_bar`` (keep), ``beta_bar`` (uniform resample), ``gamma_bar``
        (masked), float32 (num_steps,), cumulative products as the model was trained."""

    @abstractmethod
    def codebook(self) -> torch.Tensor:
        """(K, D) code vectors."""

    @abstractmethod
    def decode_soft(self, weights: torch.Tensor) -> torch.Tensor:
        """Soft codes (N, L, K), rows summing to 1, -> images (N, C, H, W) in [-1, 1]: the weighted mix of code
        vectors through the decoder, no quantisation; differentiable in ``weights``. One-hot weights give the
        decode of those tokens."""

    @abstractmethod
    def token_grid(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(h, w) of the token grid of an image (C, H, W): the native grid for images up to the native size (they
        are the top-left of its canvas; solvers crop the decode); UsageError when it does not fit."""

    @abstractmethod
    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        """As LatentPrior.condition."""

    def check_image_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        self.token_grid(tuple(int(v) for v in tuple(shape)[-3:]))  # type: ignore[arg-type]


class PerItemCalls:
    """A prior whose network sees one batch item at a time: on the CPU, convolution and matrix kernels round
    differently for different batch sizes (1e-7 relative, then amplified by the sampler), so only one-item calls
    make an image's result bitwise independent of what it is batched with. Everything else is the wrapped
    prior's. Used by the engine on the CPU, where batching buys little; GPUs keep their batches."""

    def __init__(self, prior: Any) -> None:
        self.inner = prior

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, *args: Any) -> torch.Tensor:
        s = sigma_per_item(sigma, x.shape[0], x.device)
        return torch.cat([self.inner.denoise(x[i : i + 1], s[i : i + 1], *args) for i in range(x.shape[0])])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A latent prior's decoder, one item at a time (the same rounding argument as ``denoise``)."""
        return torch.cat([self.inner.decode(z[i : i + 1]) for i in range(z.shape[0])])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A latent prior's encoder, one item at a time (DWGF encodes every step)."""
        return torch.cat([self.inner.encode(x[i : i + 1]) for i in range(x.shape[0])])

    def decode_soft(self, weights: torch.Tensor) -> torch.Tensor:
        """A discrete prior's soft-code decoder, one item at a time."""
        return torch.cat([self.inner.decode_soft(weights[i : i + 1]) for i in range(weights.shape[0])])

    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.inner.decode_tokens(ids[i : i + 1]) for i in range(ids.shape[0])])

    def log_p0(self, tokens: torch.Tensor, t: int, *args: Any) -> torch.Tensor:
        return torch.cat([self.inner.log_p0(tokens[i : i + 1], t, *args) for i in range(tokens.shape[0])])
