"""NCSN++ (Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential Equations",
arXiv:2011.13456) as a variance-exploding pixel prior, written from the paper and the released score_sde
checkpoints' layout, so that score_sde / MCG ``checkpoint_*.pth`` files load with ``strict=True``.

What the network computes (continuous VE training, ``embedding_type = "fourier"``):
    score(x, s) = h(x, log s) / s            (``scale_by_sigma``: the output is divided by sigma inside the net)
in the *data units* the model was trained on. Tweedie turns it into our denoiser:
    D_data(x, s) = x + s^2 score(x, s).

Data units. score_sde configs with ``data.centered = False`` (MCG's AAPM CT model among them) train on images
in [0, 1]; the network itself maps its input to 2x - 1 before the first conv. Our tensors are in [-1, 1]
(priors/base.py), so the prior converts
    x01 = (x + 1) / 2,   sigma01 = sigma / 2,   D(x, sigma) = 2 D01(x01, sigma01) - 1,
and states ``sigma_min`` / ``sigma_max`` in our units (twice the config's: 0.01 / 378 -> 0.02 / 756).
Centered models (data already in [-1, 1]) need no conversion.

Architecture (names = the checkpoint's; everything sits in one flat ``all_modules`` list, in build order):
  Fourier features  ``W`` (nf,) fixed Gaussian frequencies: [sin(2 pi W log s), cos(2 pi W log s)]
  two Linear        2 nf -> 4 nf -> 4 nf, SiLU between (the time embedding)
  conv3x3           channels -> nf
  down path         per level: num_res_blocks BigGAN ResBlocks (+ attention at the listed resolutions), then a
                    down-sampling ResBlock and the input-pyramid branch (``progressive_input``)
  middle            ResBlock, attention, ResBlock
  up path           per level: num_res_blocks + 1 ResBlocks on concat(h, skip), attention once, the output
                    pyramid (``progressive``), an up-sampling ResBlock
  head              GroupNorm -> SiLU -> conv3x3 (unless the output pyramid is the head)
  ResBlock          GroupNorm_0, SiLU, [FIR resample both paths], Conv_0, + Dense_0(SiLU(temb)), GroupNorm_1,
                    SiLU, Conv_1; Conv_2 (1x1) on the skip when channels change or it resamples; (x + h) / sqrt 2
  AttnBlockpp       GroupNorm_0, NIN_0..2 (q, k, v: 1x1 maps stored as (in, out) matrices ``W``, ``b``), one
                    head over all positions, NIN_3, residual (/ sqrt 2 with skip_rescale)
  FIR resampling    the separable [1, 3, 3, 1] filter of StyleGAN2 (upfirdn2d), re-written with conv2d
GroupNorm groups = min(channels // 4, 32), eps 1e-6, computed in float32 so the network may run in fp16/bf16.
The layers are in priors/ncsnpp_layers.py.
Attention sits where the official code puts it at the training size (feature width in ``attn_resolutions``);
we decide it per level from ``image_size``, which is the same thing at the native size the prior enforces.

Supported options: those of MCG's AAPM config and of score_sde's default VE NCSN++ configs (biggan blocks,
FIR, Fourier embedding, swish, progressive none/output_skip, progressive_input none/input_skip/residual).
Anything else is refused in one line rather than guessed.

Checkpoints (score_sde ``save_checkpoint``): a dict with ``model`` (the network's state dict, keys prefixed by
``module.`` from DataParallel, plus a ``sigmas`` buffer of the discrete schedule, unused by continuous Fourier
models and dropped here, as MCG does), ``ema`` (``shadow_params``: the EMA copies of the trainable parameters,
in ``parameters()`` order, without the fixed Fourier ``W``), ``optimizer`` and ``step``. Sampling code uses the
EMA weights; so do we. ``torch.load(weights_only=True)``: nothing in the file is executed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..registry.torch_file import read_torch_file
from .base import Prior, freeze_network, sigma_per_item
from .ncsnpp_layers import (
    SQRT2,
    AttnBlock,
    Combine,
    FIRConvDown,
    FourierFeatures,
    ResBlock,
    conv3x3,
    fir_downsample,
    fir_upsample,
    group_norm,
)

__all__ = ["AAPM_256", "NCSNpp", "NCSNppConfig", "NCSNppPrior", "fir_downsample", "fir_upsample",
           "load_ncsnpp_network", "ncsnpp_prior", "trainable_names", "write_tiny_checkpoint"]


@dataclass(frozen=True)
class NCSNppConfig:
    """score_sde's ``config.model`` / ``config.data`` fields that shape the network (same names)."""

    image_size: int = 256
    num_channels: int = 1
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    progressive: str = "none"
    progressive_input: str = "residual"
    progressive_combine: str = "sum"
    fourier_scale: float = 16.0
    scale_by_sigma: bool = True
    sigma_min: float = 0.01
    sigma_max: float = 378.0
    # options fixed by the configs we support; kept so a config dict with them set otherwise is refused
    name: str = "ncsnpp"
    resblock_type: str = "biggan"
    embedding_type: str = "fourier"
    nonlinearity: str = "swish"
    normalization: str = "GroupNorm"
    fir: bool = True
    resamp_with_conv: bool = True
    conditional: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NCSNppConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"unknown NCSN++ config key(s): {', '.join(unknown)}")
        cast = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        config = cls(**cast)
        config.check()
        return config

    def check(self) -> None:
        """One line per unsupported option (the official code has more branches than any released model uses)."""
        fixed = {"name": "ncsnpp", "resblock_type": "biggan", "embedding_type": "fourier", "nonlinearity": "swish",
                 "normalization": "GroupNorm", "fir": True, "resamp_with_conv": True, "conditional": True}
        for key, wanted in fixed.items():
            if getattr(self, key) != wanted:
                raise ModelError(f"NCSN++ option {key}={getattr(self, key)!r} is not supported (only {wanted!r})")
        if self.progressive not in ("none", "output_skip"):
            raise ModelError(f"NCSN++ option progressive={self.progressive!r} is not supported (none, output_skip)")
        if self.progressive_input not in ("none", "input_skip", "residual"):
            raise ModelError(f"NCSN++ option progressive_input={self.progressive_input!r} is not supported")
        if self.progressive_combine not in ("sum", "cat"):
            raise ModelError(f"NCSN++ option progressive_combine={self.progressive_combine!r} is not supported")
        if len(self.fir_kernel) < 2 or self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise ModelError("NCSN++ config: image_size must be divisible by 2^(levels - 1) and fir_kernel needs "
                             ">= 2 taps")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ModelError(f"NCSN++ config: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")


#: MCG's sparse-view CT prior (configs/ve/AAPM_256_ncsnpp_continuous.py on top of default_lsun_configs.py)
AAPM_256 = NCSNppConfig()
#: the architecture file next to the weights of a tiny (or hand-made) score-SDE model folder
NCSNPP_CONFIG_FILE = "ncsnpp_config.json"
#: registry entries whose architecture is fixed here (models.toml has no per-family architecture table for
#: this family yet); tiny models carry theirs in their ``config`` table
ENTRY_CONFIGS = {"mcg-aapm-256": AAPM_256}


# ---------------------------------------------------------------------------------------------------- network


class NCSNpp(nn.Module):
    """``forward(x, sigma) -> score`` in the model's data units; x (N, C, H, W), sigma (N,) > 0."""

    def __init__(self, config: NCSNppConfig) -> None:
        super().__init__()
        config.check()
        self.config = cfg = config
        nf, taps, levels = cfg.nf, tuple(cfg.fir_kernel), len(cfg.ch_mult)
        temb = 4 * nf
        self.attn_levels = [cfg.image_size // 2**i in cfg.attn_resolutions for i in range(levels)]

        def block(c_in: int, c_out: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(c_in, c_out, temb, taps=taps, skip_rescale=cfg.skip_rescale, **kw)

        def attention(ch: int) -> AttnBlock:
            return AttnBlock(ch, cfg.skip_rescale)

        # The order below is the checkpoint's: its keys are all_modules.<index>.* and its EMA list follows it.
        mods: list[nn.Module] = [FourierFeatures(nf, cfg.fourier_scale), nn.Linear(2 * nf, temb),
                                 nn.Linear(temb, temb), conv3x3(cfg.num_channels, nf)]
        skips, ch, pyramid_ch = [nf], nf, cfg.num_channels
        for level, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                mods.append(block(ch, nf * mult))
                ch = nf * mult
                if self.attn_levels[level]:
                    mods.append(attention(ch))
                skips.append(ch)
            if level != levels - 1:
                mods.append(block(ch, down=True))
                if cfg.progressive_input == "input_skip":
                    mods.append(Combine(pyramid_ch, ch, cfg.progressive_combine))
                    ch *= 2 if cfg.progressive_combine == "cat" else 1
                elif cfg.progressive_input == "residual":
                    mods.append(FIRConvDown(pyramid_ch, ch, taps))
                    pyramid_ch = ch
                skips.append(ch)
        mods += [block(ch), attention(ch), block(ch)]
        for level in reversed(range(levels)):
            for _ in range(cfg.num_res_blocks + 1):
                mods.append(block(ch + skips.pop(), nf * cfg.ch_mult[level]))
                ch = nf * cfg.ch_mult[level]
            if self.attn_levels[level]:
                mods.append(attention(ch))
            if cfg.progressive == "output_skip":
                mods += [group_norm(ch), conv3x3(ch, cfg.num_channels)]
            if level != 0:
                mods.append(block(ch, up=True))
        if cfg.progressive != "output_skip":
            mods += [group_norm(ch), conv3x3(ch, cfg.num_channels)]
        self.all_modules = nn.ModuleList(mods)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        cfg, levels = self.config, len(self.config.ch_mult)
        dtype = self.all_modules[1].weight.dtype
        mods = iter(self.all_modules)
        temb = next(mods)(torch.log(sigma.float())).to(dtype)
        temb = next(mods)(temb)
        temb = next(mods)(F.silu(temb))
        x = x.to(dtype)
        if not cfg.centered:
            x = 2 * x - 1  # the model was fed [0, 1] data and centres it itself
        pyramid = x if cfg.progressive_input != "none" else None
        hs = [next(mods)(x)]
        for level in range(levels):
            for _ in range(cfg.num_res_blocks):
                h = next(mods)(hs[-1], temb)
                if self.attn_levels[level]:
                    h = next(mods)(h)
                hs.append(h)
            if level != levels - 1:
                h = next(mods)(hs[-1], temb)
                if cfg.progressive_input == "input_skip":
                    pyramid = fir_downsample(pyramid, cfg.fir_kernel)
                    h = next(mods)(pyramid, h)
                elif cfg.progressive_input == "residual":
                    pyramid = next(mods)(pyramid)
                    pyramid = (pyramid + h) / SQRT2 if cfg.skip_rescale else pyramid + h
                    h = pyramid
                hs.append(h)
        h = next(mods)(hs[-1], temb)
        h = next(mods)(h)
        h = next(mods)(h, temb)
        out: torch.Tensor | None = None
        for level in reversed(range(levels)):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(mods)(torch.cat([h, hs.pop()], dim=1), temb)
            if self.attn_levels[level]:
                h = next(mods)(h)
            if cfg.progressive == "output_skip":
                branch = _head(mods, h)
                out = branch if out is None else fir_upsample(out, cfg.fir_kernel) + branch
            if level != 0:
                h = next(mods)(h, temb)
        if out is None:
            out = _head(mods, h)
        out = out.float()
        if cfg.scale_by_sigma:
            out = out / sigma.float().reshape(-1, 1, 1, 1)
        return out


def _head(mods: Any, h: torch.Tensor) -> torch.Tensor:
    """GroupNorm -> SiLU -> conv3x3, the next two modules in build order."""
    norm = next(mods)
    conv = next(mods)
    return conv(F.silu(norm(h)))


# ------------------------------------------------------------------------------------------------------ prior


class NCSNppPrior(Prior):
    """A VE score network as our denoiser: D(x, sigma) = x + sigma^2 score(x, sigma), in [-1, 1] units.

    The network runs at its training size only (``native_size``); the tiling wrapper serves other sizes.
    """

    def __init__(self, net: NCSNpp, *, dtype: torch.dtype | None = None, name: str = "ncsnpp") -> None:
        cfg = net.config
        self.device, self.dtype = freeze_network(net, dtype)
        self.net = net
        self.name = name
        self.channels = cfg.num_channels
        self.native_size = (cfg.image_size, cfg.image_size)
        self.size_multiple = 2 ** (len(cfg.ch_mult) - 1)
        # data units per tensor unit: [0, 1] data is half as wide as our [-1, 1] tensors
        self.data_scale = 1.0 if cfg.centered else 0.5
        self.sigma_min = cfg.sigma_min / self.data_scale
        self.sigma_max = cfg.sigma_max / self.data_scale

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s = sigma_per_item(sigma, x.shape[0], x.device)
        offset = 0.0 if self.data_scale == 1.0 else 0.5
        x_data = x.float() * self.data_scale + offset
        s_data = s * self.data_scale
        score = self.net(x_data.to(self.device), s_data.to(self.device)).to(x.device)
        d_data = x_data + s_data.reshape(-1, 1, 1, 1) ** 2 * score
        return (d_data - offset) / self.data_scale


# ---------------------------------------------------------------------------------------------------- loading


def trainable_names(net: NCSNpp) -> list[str]:
    """Parameter names in the order of score_sde's EMA ``shadow_params`` (trainable ones, ``parameters()`` order)."""
    fixed = {f"{name}.W" for name, m in net.named_modules() if isinstance(m, FourierFeatures)}
    return [name for name, _ in net.named_parameters() if name not in fixed]


def read_checkpoint(path: str | Path, net: NCSNpp, *, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The state dict for ``net`` from a score_sde checkpoint (EMA weights) or a plain state dict."""
    path = Path(path)
    raw = read_torch_file(path, "score-SDE checkpoint")
    model = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(model, dict) or not model or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise ModelError(f"'{path}' is not a score-SDE checkpoint (expected a 'model' state dict of tensors)")
    # DataParallel prefix; the discrete sigma table is unused by continuous models and its length varies
    state = {k.removeprefix("module."): v for k, v in model.items()}
    state.pop("sigmas", None)
    ema = raw.get("ema") if use_ema else None
    if isinstance(ema, dict) and "shadow_params" in ema:
        shadow = list(ema["shadow_params"])
        names = trainable_names(net)
        own = dict(net.named_parameters())
        if len(shadow) != len(names) or any(
            not isinstance(t, torch.Tensor) or t.shape != own[n].shape for t, n in zip(shadow, names, strict=False)
        ):
            raise ModelError(f"'{path}': its EMA weights ({len(shadow)} tensors) do not match the NCSN++ "
                             f"architecture ({len(names)} trainable tensors)",
                             hint="check the model's architecture config")
        state.update(zip(names, shadow, strict=True))
    return state


def load_ncsnpp_network(path: str | Path, config: NCSNppConfig, *, use_ema: bool = True) -> NCSNpp:
    """Build NCSN++ from ``config`` and load the checkpoint strictly (float32, CPU)."""
    net = NCSNpp(config)
    state = read_checkpoint(path, net, use_ema=use_ema)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ModelError(f"score-SDE checkpoint '{path}' does not match its NCSN++ config: {detail}",
                         hint="check the architecture config of this model") from None
    return net.float().eval()


def ncsnpp_prior(path: str | Path, config: NCSNppConfig, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, name: str = "ncsnpp") -> NCSNppPrior:
    """A score_sde NCSN++ checkpoint as a pixel ``Prior``."""
    net = load_ncsnpp_network(path, config).to(device)
    return NCSNppPrior(net, dtype=dtype, name=name)


def write_tiny_checkpoint(config: dict[str, Any], folder: Path) -> Path:
    """A random NCSN++ saved as score_sde saves one (``module.`` keys, a ``sigmas`` buffer, EMA shadow weights that
    differ from the raw ones), plus its config file: the folder the score-sde loader reads. Seed the caller."""
    import json

    cfg = NCSNppConfig.from_dict(config)
    net = NCSNpp(cfg)
    model = {f"module.{k}": v for k, v in net.state_dict().items()}
    model["module.sigmas"] = torch.ones(10)
    # the loader must take the EMA copies: make the raw weights useless so a test notices if it does not
    shadow = [p.detach().clone() for p in (dict(net.named_parameters())[n] for n in trainable_names(net))]
    for name in trainable_names(net):
        model[f"module.{name}"] = torch.full_like(model[f"module.{name}"], float("nan"))
    checkpoint = {"model": model, "ema": {"decay": 0.999, "num_updates": 1, "shadow_params": shadow}, "step": 1}
    folder = Path(folder)
    torch.save(checkpoint, folder / "model.pt")
    (folder / NCSNPP_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder
