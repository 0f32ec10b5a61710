"""The ADM network (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", arXiv:2105.05233),
written from the paper's architecture description and the released checkpoints' layout, so that OpenAI
guided-diffusion ``.pt`` state dicts (ffhq_10m.pt, 256x256_diffusion_uncond.pt, ...) load with ``strict=True``.

Architecture (names = the checkpoint's parameter names):
  time_embed             sinusoidal embedding of t (cos half, then sin half) -> Linear -> SiLU -> Linear (4 * C)
  input_blocks[0]        3x3 conv in -> C
  input_blocks[k]        per level (channel_mult): num_res_blocks x [ResBlock (+ AttentionBlock at the listed
                         down-sampling factors)], then a down-sampling ResBlock (resblock_updown) or strided conv
  middle_block           ResBlock, AttentionBlock, ResBlock
  output_blocks[k]       per level, reversed: (num_res_blocks + 1) x [ResBlock on concat(h, skip) (+ attention)],
                         the last one of each level but the top ends with an up-sampling ResBlock / conv
  out                    GroupNorm -> SiLU -> 3x3 conv -> out_channels (2 * in_channels with learned sigma)
  ResBlock               in_layers (GroupNorm, SiLU, conv), emb_layers (SiLU, Linear -> 2 * C_out with
                         scale-shift norm: h = norm(h) * (1 + scale) + shift), out_layers (GroupNorm, SiLU,
                         Dropout, conv), skip_connection (1x1 conv when channels change); up/down variants
                         resample both paths (nearest x2 / average pool) between in_layers' norm and conv
  AttentionBlock         GroupNorm, qkv (1x1 conv1d -> 3C), multi-head attention, proj_out (1x1 conv1d)
                         "legacy" order: per head [q, k, v] blocks of the 3C channels; new order: [q | k | v]

GroupNorm (32 groups) always computes in float32, as in the original, so the network can run in fp16/bf16.

``ADMUNet`` adapts the network to the diffusers ``UNet2DModel`` call (``net(x, t, return_dict=False)[0]`` and a
``config``) so the one VP -> VE conversion in ``priors/diffusers_pixel.py`` serves ADM checkpoints too: ADM is an
epsilon-prediction model with learned variance, whose variance half that prior drops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..registry.torch_file import read_torch_file

#: channel multipliers per resolution when the checkpoint flags leave ``channel_mult`` empty (the paper's table)
DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
                        64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}


@dataclass
class ADMConfig:
    """guided-diffusion's model flags (same names as its ``script_util.create_model``)."""

    image_size: int = 256
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str = ""
    attention_resolutions: str = "16"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    learn_sigma: bool = True
    class_cond: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    use_new_attention_order: bool = False
    dropout: float = 0.0
    in_channels: int = 3
    num_classes: int = 1000

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> ADMConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(flags) - known)
        if unknown:
            raise ModelError(f"unknown ADM flag(s): {', '.join(unknown)}")
        return cls(**flags)

    def multipliers(self) -> tuple[float, ...]:
        if self.channel_mult:
            return tuple(float(v) if "." in v else int(v) for v in self.channel_mult.split(","))
        if self.image_size not in DEFAULT_CHANNEL_MULT:
            raise ModelError(f"no default channel_mult for image_size {self.image_size}: set arch.channel_mult")
        return DEFAULT_CHANNEL_MULT[self.image_size]

    def attention_factors(self) -> set[int]:
        """Down-sampling factors (image_size // resolution) at which attention layers sit."""
        return {self.image_size // int(r) for r in self.attention_resolutions.split(",") if r.strip()}

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [cos(t f_k), sin(t f_k)], f_k = P^(-k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm in float32 whatever the network dtype (fp16 statistics over large maps overflow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


class Upsample(nn.Module):
    """Nearest x2, then (optionally) a 3x3 conv named ``conv``."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """A stride-2 3x3 conv, or a 2x2 average pool, named ``op``."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.op = (nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1) if use_conv
                   else nn.AvgPool2d(kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None, *,
                 use_scale_shift_norm: bool, up: bool = False, down: bool = False) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(p=dropout), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            # Resample between the norm/activation and the conv, on both paths (as in the checkpoints' training).
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over all positions; heads = channels // num_head_channels when that is set."""

    def __init__(self, channels: int, num_heads: int, num_head_channels: int, new_order: bool) -> None:
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ModelError(f"ADM: {channels} channels are not divisible by num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        self.num_heads = num_heads
        self.new_order = new_order
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        length, heads, ch = flat.shape[-1], self.num_heads, c // self.num_heads
        if self.new_order:  # [q | k | v], each split into heads
            q, k, v = (t.reshape(b * heads, ch, length) for t in qkv.chunk(3, dim=1))
        else:  # legacy: per head a contiguous [q, k, v] block of 3 * ch channels
            q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
        # (B*H, T, ch) layout for the fused kernel; its 1/sqrt(ch) scale equals the original's two 1/ch^(1/4).
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(b, c, length)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential whose ResBlocks also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMNet(nn.Module):
    """guided-diffusion's UNetModel (2-D); ``forward(x, t, y=None) -> (N, out_channels, H, W)``."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__()
        self.config = config
        ch0 = config.num_channels
        emb_dim = 4 * ch0
        mults = config.multipliers()
        attn_at = config.attention_factors()
        heads_up = config.num_heads if config.num_heads_upsample == -1 else config.num_heads_upsample
        res = dict(use_scale_shift_norm=config.use_scale_shift_norm)

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, config.num_head_channels, config.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if config.class_cond:
            self.label_emb = nn.Embedding(config.num_classes, emb_dim)
        ch = int(mults[0] * ch0)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        factor = 1
        for level, mult in enumerate(mults):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, config.dropout, int(mult * ch0), **res)]
                ch = int(mult * ch0)
                if factor in attn_at:
                    layers.append(attention(ch, config.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(mults) - 1:
                down = (ResBlock(ch, emb_dim, config.dropout, ch, down=True, **res) if config.resblock_updown
                        else Downsample(ch, True, ch))
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                factor *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, config.dropout, **res),
            attention(ch, config.num_heads),
            ResBlock(ch, emb_dim, config.dropout, **res),
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(mults))[::-1]:
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, config.dropout, int(mult * ch0), **res)]
                ch = int(mult * ch0)
                if factor in attn_at:
                    layers.append(attention(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, config.dropout, ch, up=True, **res) if config.resblock_updown
                                  else Upsample(ch, True, ch))
                    factor //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, config.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.out[-1].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.num_channels).to(dtype))
        if self.config.class_cond:
            if y is None:
                raise ModelError("this ADM checkpoint is class-conditional: pass class labels y")
            emb = emb + self.label_emb(y).to(dtype)
        skips = []
        h = x.to(dtype)
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


class ADMUNet(nn.Module):
    """``ADMNet`` behind the ``UNet2DModel`` call used by ``DiffusersPixelPrior``: ``(x, t, return_dict=False)``."""

    def __init__(self, net: ADMNet) -> None:
        super().__init__()
        self.net = net
        cfg = net.config
        mults = cfg.multipliers()
        self.config = SimpleNamespace(
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            sample_size=cfg.image_size,
            # only its length matters to the prior: H and W must be multiples of 2 ** (levels - 1)
            block_out_channels=tuple(int(m * cfg.num_channels) for m in mults),
            adm=asdict(cfg),
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, return_dict: bool = True) -> Any:
        t = torch.as_tensor(timestep, dtype=torch.float32, device=sample.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(sample.shape[0])
        out = self.net(sample, t)
        return (out,) if not return_dict else SimpleNamespace(sample=out)


def adm_scheduler(diffusion: dict[str, Any] | None = None) -> Any:
    """The DDPM noise schedule ADM was trained with, as a diffusers DDPMScheduler (epsilon prediction).

    guided-diffusion's "linear" schedule is linspace(1e-4, 2e-2) scaled by 1000 / steps; "cosine" is the
    Nichol & Dhariwal cosine schedule (diffusers' "squaredcos_cap_v2", betas capped at 0.999).
    """
    from diffusers import DDPMScheduler

    diffusion = diffusion or {}
    steps = int(diffusion.get("steps", 1000))
    schedule = diffusion.get("noise_schedule", "linear")
    if schedule == "linear":
        scale = 1000.0 / steps
        return DDPMScheduler(num_train_timesteps=steps, beta_schedule="linear",
                             beta_start=1e-4 * scale, beta_end=2e-2 * scale, prediction_type="epsilon")
    if schedule == "cosine":
        return DDPMScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")
    raise ModelError(f"unknown ADM noise_schedule {schedule!r} (linear or cosine)")


def load_adm_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a guided-diffusion checkpoint safely (weights_only: no code from the file is ever run)."""
    path = Path(path)
    state = read_torch_file(path, "ADM checkpoint")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # some re-packaged copies nest the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"'{path}' is not an ADM state dict (expected a mapping of parameter names to tensors)")
    return state


def load_adm_network(path: str | Path, flags: dict[str, Any]) -> ADMNet:
    """Build the ADM network from guided-diffusion ``flags`` and load the checkpoint strictly (float32, CPU)."""
    net = ADMNet(ADMConfig.from_flags(flags))
    state = load_adm_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelError(
            f"ADM checkpoint '{path}' does not match its architecture flags: {detail}",
            hint="check the arch table of this model in models.toml",
        ) from None
    return net.float().eval()


def adm_prior(path: str | Path, flags: dict[str, Any], diffusion: dict[str, Any] | None = None, *,
              device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """An ADM checkpoint as a ``Prior`` (the VP -> VE wrapper of ``DiffusersPixelPrior``; variance half dropped)."""
    from .diffusers_pixel import DiffusersPixelPrior

    unet = ADMUNet(load_adm_network(path, flags)).to(device)
    return DiffusersPixelPrior(unet, adm_scheduler(diffusion), dtype=dtype)
