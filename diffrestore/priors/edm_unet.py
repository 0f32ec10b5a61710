"""EDM's "DhariwalUNet" (the ADM UNet as re-implemented by Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", arXiv:2206.00364) with EDM preconditioning, written from the paper and the
parameter layout of its released checkpoints, so that their state dicts load with ``strict=True``. InverseBench's
MRI priors (``mri-knee.pt``, ``mri-brain.pt``: complex images as 2 channels, 320 x 320) use it.

Preconditioning (EDMPrecond, sigma_data = 0.5):
    D(x; s) = c_skip x + c_out F(c_in x, log(s) / 4),   c_skip = sd^2 / (s^2 + sd^2),
    c_out = s sd / sqrt(s^2 + sd^2),   c_in = 1 / sqrt(s^2 + sd^2),
which is already our denoiser convention (priors/base.py): no unit conversion. The tensor is the complex image
divided by the 99th percentile of its magnitude (``operators.mri_phase``), as InverseBench scales its data.

Network (parameter names as in the checkpoints, all under ``model.``):
  map_noise      positional embedding of c_noise: [cos(c f_i), sin(c f_i)], f_i = 10000^(-i / (C / 2)) (no weights)
  map_layer0/1   Linear C -> 4C -> 4C (SiLU between and after)
  enc            ``{R}x{R}_conv`` (3x3, in -> C m_0) at the top level; at each lower level ``{R}x{R}_down`` (a
                 block that halves the size), then ``num_blocks`` blocks ``{R}x{R}_block{i}``
  dec            at the lowest level ``_in0`` (with attention) and ``_in1``, elsewhere ``{R}x{R}_up`` (a block that
                 doubles the size); then ``num_blocks + 1`` blocks on concat(h, skip)
  out_norm, out_conv   GroupNorm, SiLU, 3x3 conv to the output channels
  block          norm0 -> SiLU -> conv0 (3x3, resampling first if up/down) ; affine(emb) -> (scale, shift):
                 SiLU(norm1(h) (1 + scale) + shift) -> conv1 ; + skip (1x1 ``skip`` conv if the channels change,
                 a weightless resample if only the size does) ; attention (``norm2``, ``qkv`` 1x1, ``proj`` 1x1,
                 64 channels per head) at the listed resolutions
  resampling     a 2x2 box filter (``resample_filter`` buffer, [1, 1] outer [1, 1] / 4): average-pool down,
                 nearest-neighbour up (the transposed convolution of the filter times 4)
GroupNorm: min(32, C / 4) groups, eps 1e-5. Dropout is a training-time setting and does nothing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ModelError
from .base import Prior, freeze_network, sigma_per_item


@dataclass(frozen=True)
class EDMUNetConfig:
    """DhariwalUNet's constructor arguments (InverseBench's ``configs/pretrain/*.yaml`` ``model:`` block)."""

    img_resolution: int
    img_channels: int
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 1, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (16,)
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EDMUNetConfig:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"EDM UNet config: unknown keys {', '.join(unknown)}")
        values = dict(data)
        for key in ("channel_mult", "attn_resolutions"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        return cls(**values)


#: InverseBench's knee (and brain) prior: configs/pretrain/mri-knee-mvue.yaml
INVERSEBENCH_MRI = EDMUNetConfig(img_resolution=320, img_channels=2, model_channels=128,
                                 channel_mult=(1, 1, 1, 2, 2), num_blocks=1, attn_resolutions=(16,))
#: registry entry name -> architecture
ENTRY_CONFIGS = {"inversebench-mri-knee": INVERSEBENCH_MRI}


def _groups(channels: int) -> int:
    return min(32, channels // 4)


class _Conv(torch.nn.Module):
    """A convolution (``kernel`` 0: none) with optional 2x resampling by the box filter, resampling first."""

    def __init__(self, cin: int, cout: int, kernel: int, *, up: bool = False, down: bool = False) -> None:
        super().__init__()
        self.cin, self.up, self.down = cin, up, down
        if kernel:
            self.weight = torch.nn.Parameter(torch.empty(cout, cin, kernel, kernel))
            self.bias = torch.nn.Parameter(torch.zeros(cout))
            torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        else:
            self.weight = self.bias = None
        if up or down:
            self.register_buffer("resample_filter", torch.full((1, 1, 2, 2), 0.25))
        else:
            self.resample_filter = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample_filter is not None:
            f = self.resample_filter.to(x.dtype).tile(self.cin, 1, 1, 1)
            x = (F.conv_transpose2d(x, f * 4, groups=self.cin, stride=2) if self.up
                 else F.conv2d(x, f, groups=self.cin, stride=2))
        if self.weight is not None:
            x = F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.weight.shape[-1] // 2)
        return x


class _Block(torch.nn.Module):
    """EDM's UNetBlock in its ADM configuration (adaptive scale, skip scale 1, 64 channels per head)."""

    def __init__(self, cin: int, cout: int, emb: int, *, up: bool = False, down: bool = False,
                 attention: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = cin, cout
        self.norm0 = torch.nn.GroupNorm(_groups(cin), cin, eps=1e-5)
        self.conv0 = _Conv(cin, cout, 3, up=up, down=down)
        self.affine = torch.nn.Linear(emb, 2 * cout)
        self.norm1 = torch.nn.GroupNorm(_groups(cout), cout, eps=1e-5)
        self.conv1 = _Conv(cout, cout, 3)
        self.skip = _Conv(cin, cout, 1 if cout != cin else 0, up=up, down=down) if (cout != cin or up or down) else None
        self.heads = cout // 64 if attention else 0
        if self.heads:
            self.norm2 = torch.nn.GroupNorm(_groups(cout), cout, eps=1e-5)
            self.qkv = _Conv(cout, 3 * cout, 1)
            self.proj = _Conv(cout, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(h) + (self.skip(x) if self.skip is not None else x)
        if self.heads:
            n, c, height, width = h.shape
            qkv = self.qkv(self.norm2(h)).reshape(n * self.heads, c // self.heads, 3, height * width)
            q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # (n heads, positions, channels per head)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
            h = self.proj(a.reshape(n, c, height, width)) + h
        return h


class DhariwalUNet(torch.nn.Module):
    """The network F(x, c_noise) (module doc); parameter names match EDM's ``model`` submodule."""

    def __init__(self, config: EDMUNetConfig) -> None:
        super().__init__()
        c = config.model_channels
        emb = c * config.channel_mult_emb
        self.model_channels = c
        self.map_layer0 = torch.nn.Linear(c, emb)
        self.map_layer1 = torch.nn.Linear(emb, emb)
        self.enc = torch.nn.ModuleDict()
        cout = config.img_channels
        for level, mult in enumerate(config.channel_mult):
            res = config.img_resolution >> level
            if level == 0:
                cin, cout = cout, c * mult
                self.enc[f"{res}x{res}_conv"] = _Conv(cin, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = _Block(cout, cout, emb, down=True)
            for i in range(config.num_blocks):
                cin, cout = cout, c * mult
                self.enc[f"{res}x{res}_block{i}"] = _Block(cin, cout, emb, attention=res in config.attn_resolutions)
        skips = [block.out_channels if isinstance(block, _Block) else c * config.channel_mult[0]
                 for block in self.enc.values()]
        self.dec = torch.nn.ModuleDict()
        last = len(config.channel_mult) - 1
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            res = config.img_resolution >> level
            if level == last:
                self.dec[f"{res}x{res}_in0"] = _Block(cout, cout, emb, attention=True)
                self.dec[f"{res}x{res}_in1"] = _Block(cout, cout, emb)
            else:
                self.dec[f"{res}x{res}_up"] = _Block(cout, cout, emb, up=True)
            for i in range(config.num_blocks + 1):
                cin, cout = cout + skips.pop(), c * mult
                self.dec[f"{res}x{res}_block{i}"] = _Block(cin, cout, emb, attention=res in config.attn_resolutions)
        self.out_norm = torch.nn.GroupNorm(_groups(cout), cout, eps=1e-5)
        self.out_conv = _Conv(cout, config.img_channels, 3)

    def embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.model_channels // 2
        freqs = (1.0 / 10000) ** (torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
        angles = c_noise.float()[:, None] * freqs[None]
        e = torch.cat([angles.cos(), angles.sin()], dim=1)
        return F.silu(self.map_layer1(F.silu(self.map_layer0(e))))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise).to(x.dtype)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, _Block) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


class EDMPrecond(torch.nn.Module):
    """EDM's preconditioning around the network, holding it as ``model`` (the checkpoints' prefix)."""

    def __init__(self, config: EDMUNetConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DhariwalUNet(config)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sd = self.config.sigma_data
        s = sigma.float().reshape(-1, 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        dtype = next(self.model.parameters()).dtype
        out = self.model((c_in * x.float()).to(dtype), (s.log() / 4).flatten().to(dtype))
        return c_skip * x.float() + c_out * out.float()


class EDMPrior(Prior):
    """An EDM-preconditioned network as our denoiser (same units, module doc); runs at its training size only."""

    def __init__(self, net: EDMPrecond, *, dtype: torch.dtype | None = None, name: str = "edm") -> None:
        cfg = net.config
        self.device, self.dtype = freeze_network(net, dtype)
        self.net = net
        self.name = name
        self.channels = cfg.img_channels
        self.native_size = (cfg.img_resolution, cfg.img_resolution)
        self.size_multiple = 2 ** (len(cfg.channel_mult) - 1)
        self.sigma_min, self.sigma_max = cfg.sigma_min, cfg.sigma_max
        self.clip_range = None  # complex MR images scaled by a percentile: no fixed support

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s = sigma_per_item(sigma, x.shape[0], x.device)
        return self.net(x.to(self.device), s.to(self.device)).to(x.device)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The EMA state dict of an EDM/InverseBench checkpoint, read with tensors only (``weights_only``: no code runs).

    Accepted layouts: a training checkpoint ``{"ema": state dict, "net": ..., "optimizer": ...}`` (InverseBench's
    train.py; its EMA weights are used), ``{"net": state dict}``, or a bare state dict. EDM's own ``.pkl``
    snapshots pickle whole Python modules and are refused: reading them would run their code.
    """
    from ..registry.torch_file import read_torch_file

    raw = read_torch_file(path, "EDM checkpoint")
    if isinstance(raw, dict):
        for key in ("ema", "net"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ModelError(f"'{path}' is not an EDM state dict (expected 'ema' or 'net' tensors, or tensors only)",
                         hint="EDM .pkl snapshots hold pickled code and are not loaded; save net.state_dict() "
                         "from a trusted environment with torch.save and load that")
    return {k.removeprefix("module."): v for k, v in raw.items()}


def load_edm_network(path: str | Path, config: EDMUNetConfig) -> EDMPrecond:
    """EDMPrecond with the checkpoint's weights, loaded strictly (every name and shape must match)."""
    net = EDMPrecond(config)
    state = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise ModelError(f"'{path}' does not match the EDM UNet architecture ({detail})",
                         hint="check the model's architecture config") from None
    return net


def edm_prior(path: str | Path, config: EDMUNetConfig, *, device: torch.device | str = "cpu",
              dtype: torch.dtype | None = None, name: str = "edm") -> EDMPrior:
    """An EDM checkpoint as a pixel ``Prior``."""
    return EDMPrior(load_edm_network(path, config).to(device), dtype=dtype, name=name)


def write_tiny_checkpoint(config: dict[str, Any], folder: Path) -> Path:
    """A random EDMPrecond saved as InverseBench's train.py saves one (``net``, ``ema`` that differs from it,
    ``optimizer``), plus its architecture file: the folder the edm loader reads. Seed the caller."""
    import json

    net = EDMPrecond(EDMUNetConfig.from_dict(config))
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
    raw = {k: torch.full_like(v, float("nan")) for k, v in ema.items()}  # the loader must take the EMA
    folder = Path(folder)
    torch.save({"net": raw, "ema": ema, "optimizer": {"state": {}, "param_groups": []}}, folder / "model.pt")
    (folder / EDM_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


#: the architecture file a local EDM folder (and a tiny model) carries next to its weights
EDM_CONFIG_FILE = "edm_config.json"
