"""The layers of NCSN++ (priors/ncsnpp.py): FIR resampling (StyleGAN2's upfirdn2d written with conv2d), the
BigGAN residual block, single-head attention, the Fourier noise embedding and the input-pyramid pieces. Attribute
names are score_sde's, so the checkpoints' parameter names come out unchanged."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .adm import GroupNorm32

SQRT2 = math.sqrt(2.0)


# ------------------------------------------------------------------------------------------- FIR resampling


def _fir(taps: tuple[int, ...], gain: float, like: torch.Tensor) -> torch.Tensor:
    """The 2-D separable filter outer(k, k), normalised to sum ``gain``, flipped for conv2d (correlation)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    k2 = k2 / k2.sum() * gain
    return k2.flip(0, 1).to(device=like.device, dtype=like.dtype)


def _upfirdn(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1,
             pad: tuple[int, int]) -> torch.Tensor:
    """Zero-insert by ``up``, pad (before, after) on both axes, filter each channel, keep every ``down``-th."""
    n, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(n, c, h * up, w * up)
        spread[..., ::up, ::up] = x
        x = spread
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = kernel[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, stride=down, groups=c)


def fir_upsample(x: torch.Tensor, taps: tuple[int, ...]) -> torch.Tensor:
    """x2 up-sampling with the FIR filter (gain 4 keeps a constant image constant after zero insertion)."""
    p = len(taps) - 2
    return _upfirdn(x, _fir(taps, 4.0, x), up=2, pad=((p + 1) // 2 + 1, p // 2))


def fir_downsample(x: torch.Tensor, taps: tuple[int, ...]) -> torch.Tensor:
    """x2 down-sampling: FIR low-pass, then every second pixel."""
    p = len(taps) - 2
    return _upfirdn(x, _fir(taps, 1.0, x), down=2, pad=((p + 1) // 2, p // 2))


# ----------------------------------------------------------------------------------------------------- layers


def group_norm(channels: int) -> GroupNorm32:
    return GroupNorm32(min(channels // 4, 32), channels, eps=1e-6)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of log(sigma); ``W`` is a non-trainable parameter in the checkpoints."""

    def __init__(self, size: int, scale: float) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        angle = log_sigma.float()[:, None] * self.W.float()[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class NIN(nn.Module):
    """A 1x1 map stored the TF way: ``W`` (in, out) and ``b`` (out,)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(c_in, c_out) / math.sqrt(c_in))
        self.b = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,cd->bdhw", x, self.W) + self.b[None, :, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (score_sde's AttnBlockpp)."""

    def __init__(self, channels: int, skip_rescale: bool) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = (NIN(channels, channels) for _ in range(4))
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.GroupNorm_0(x)
        q, k, v = (m(n).reshape(b, c, h * w).transpose(1, 2) for m in (self.NIN_0, self.NIN_1, self.NIN_2))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v, as the original
        out = self.NIN_3(out.transpose(1, 2).reshape(b, c, h, w))
        return (x + out) / SQRT2 if self.skip_rescale else x + out


class ResBlock(nn.Module):
    """BigGAN-style residual block (score_sde's ResnetBlockBigGANpp), optional FIR up/down-sampling."""

    def __init__(self, c_in: int, c_out: int | None, temb_dim: int, *, taps: tuple[int, ...], skip_rescale: bool,
                 up: bool = False, down: bool = False) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.GroupNorm_0 = group_norm(c_in)
        self.Conv_0 = conv3x3(c_in, c_out)
        self.Dense_0 = nn.Linear(temb_dim, c_out)
        self.GroupNorm_1 = group_norm(c_out)
        self.Conv_1 = conv3x3(c_out, c_out)
        if c_in != c_out or up or down:
            self.Conv_2 = nn.Conv2d(c_in, c_out, 1)
        self.up, self.down, self.taps, self.skip_rescale = up, down, taps, skip_rescale

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.GroupNorm_0(x))
        if self.up:
            h, x = fir_upsample(h, self.taps), fir_upsample(x, self.taps)
        elif self.down:
            h, x = fir_downsample(h, self.taps), fir_downsample(x, self.taps)
        h = self.Conv_0(h) + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(F.silu(self.GroupNorm_1(h)))  # dropout: inference only
        if hasattr(self, "Conv_2"):
            x = self.Conv_2(x)
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class FIRConvDown(nn.Module):
    """FIR low-pass, then a stride-2 3x3 conv (StyleGAN2's fused conv_downsample_2d); ``Conv2d_0`` holds it."""

    def __init__(self, c_in: int, c_out: int, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.Conv2d_0 = _PlainConv(c_in, c_out)
        self.taps = taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = len(self.taps) - 2 + 2  # filter overhang + the 3x3 conv's
        x = _upfirdn(x, _fir(self.taps, 1.0, x), pad=((p + 1) // 2, p // 2))
        return F.conv2d(x, self.Conv2d_0.weight, self.Conv2d_0.bias, stride=2)


class _PlainConv(nn.Module):
    """Just ``weight`` (out, in, 3, 3) and ``bias``: the names of score_sde's up_or_down_sampling.Conv2d."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3) / math.sqrt(9 * c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))


class Combine(nn.Module):
    """Input-pyramid merge: a 1x1 conv of the pyramid, summed with (or concatenated to) the features."""

    def __init__(self, c_in: int, c_out: int, method: str) -> None:
        super().__init__()
        self.Conv_0 = nn.Conv2d(c_in, c_out, 1)
        self.method = method

    def forward(self, pyramid: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        p = self.Conv_0(pyramid)
        return p + h if self.method == "sum" else torch.cat([p, h], dim=1)
