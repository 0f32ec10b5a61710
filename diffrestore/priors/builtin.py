"""The built-in prior: our own small, fully convolutional denoiser network with EDM preconditioning.

Network. A compact UNet (``DenoiserUNet``), optionally behind a pixel-unshuffle stem (``pixel_unshuffle = 2``
folds each 2x2 block into channels, as FFDNet does, so the UNet runs at half resolution: about 4x cheaper per
pixel with a receptive field twice as wide): per resolution level ``num_res_blocks`` residual blocks
(GroupNorm, SiLU, 3x3 convolutions with reflect padding), average-pool down, nearest-neighbour + conv up, skip
connections by concatenation, and a noise-level embedding (Fourier features of ``c_noise`` -> MLP) that
modulates every block (scale and shift after the second GroupNorm). No attention and no positional input, so
the network runs on any image size: the input is padded (reflect) to a multiple of ``size_multiple`` and the
output cropped back, so there are no tiles and no seams.

Preconditioning (Karras et al. 2022, "Elucidating the design space of diffusion-based generative models",
arXiv:2206.00364, section 5 and table 1), variance-exploding, images in [-1, 1]::

    D(x; sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x; c_noise(sigma))
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma * sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4,   sd = sigma_data = 0.5

so ``denoise(x, sigma) = D(x; sigma) ~ E[x0 | x0 + sigma * eps]`` is exactly the ``Prior`` contract.

A model directory holds ``config.json`` (architecture, preconditioning, training metadata) and
``model.safetensors`` (the EMA weights); :func:`load_model_dir` reads one, :func:`default_prior` reads the one
shipped in ``diffrestore/weights/default``.

Channels. A prior has ``channels`` (1, 3, or 2: complex MRI images as real, imaginary) and ``denoise`` accepts that
many. The default prior is RGB (grey photos replicated in training); grey files use the luminance of an RGB x.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, UsageError
from .base import Prior
from .files import RESTORE_HINT, describe_mismatch, read_json
from .posterior_rms import PosteriorRMS, table_problem

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "diffrestore-edm-unet"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


@dataclass
class UNetConfig:
    """Architecture and preconditioning of a :class:`DenoiserUNet`; serialised as ``config.json``."""

    channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    emb_dim: int = 128
    groups: int = 8
    padding_mode: str = "reflect"
    pixel_unshuffle: int = 1
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def size_multiple(self) -> int:
        """Input sides are padded to a multiple of this (pixel unshuffle times the UNet's down-sampling)."""
        return self.pixel_unshuffle * 2 ** (self.levels - 1)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channel_mults"] = list(self.channel_mults)
        extra = data.pop("extra")
        return {"model_type": MODEL_TYPE, **data, **extra}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "channel_mults" in kwargs:
            kwargs["channel_mults"] = tuple(int(m) for m in kwargs["channel_mults"])
        extra = {k: v for k, v in data.items() if k not in known and k != "model_type"}
        return cls(**kwargs, extra=extra)


def _groups(channels: int, wanted: int) -> int:
    # GroupNorm needs the group count to divide the channel count.
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, padding_mode: str) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding_mode)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout, groups), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, padding_mode=padding_mode)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        # Zero-initialised last conv: each block starts as the identity, which keeps early training stable.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return (h + self.skip(x)) * (1 / math.sqrt(2))


class DenoiserUNet(nn.Module):
    """The raw network F(c_in * x; c_noise) of the EDM parameterisation (no preconditioning inside)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        chans = [config.base_channels * m for m in config.channel_mults]
        self.freqs_dim = 32
        self.emb_mlp = nn.Sequential(
            nn.Linear(2 * self.freqs_dim, config.emb_dim), nn.SiLU(), nn.Linear(config.emb_dim, config.emb_dim)
        )
        pm, g, e = config.padding_mode, config.groups, config.emb_dim
        r = config.pixel_unshuffle
        self.conv_in = nn.Conv2d(c * r * r, chans[0], 3, padding=1, padding_mode=pm)
        self.down = nn.ModuleList()
        prev = chans[0]
        for ch in chans:
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                blocks.append(_ResBlock(prev, ch, e, g, pm))
                prev = ch
            self.down.append(blocks)
        self.mid = _ResBlock(prev, prev, e, g, pm)
        self.up = nn.ModuleList()
        self.upconv = nn.ModuleList()
        for level in reversed(range(len(chans))):
            ch = chans[level]
            blocks = nn.ModuleList()
            for i in range(config.num_res_blocks):
                blocks.append(_ResBlock(prev + (ch if i == 0 else 0), ch, e, g, pm))
                prev = ch
            self.up.append(blocks)
            if level > 0:
                self.upconv.append(nn.Conv2d(ch, chans[level - 1], 3, padding=1, padding_mode=pm))
                prev = chans[level - 1]
        self.norm_out = nn.GroupNorm(_groups(prev, g), prev)
        self.conv_out = nn.Conv2d(prev, c * r * r, 3, padding=1, padding_mode=pm)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        # c_noise = ln(sigma)/4 lies in about [-1.6, 1.1]; frequencies up to ~100 resolve that range finely.
        freqs = torch.exp(torch.linspace(0.0, math.log(100.0), self.freqs_dim, device=c_noise.device))
        angles = c_noise[:, None].float() * freqs[None, :]
        feats = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(self.conv_in.weight.dtype)
        return F.silu(self.emb_mlp(feats))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self._embed(c_noise)
        r = self.config.pixel_unshuffle
        if r > 1:
            x = F.pixel_unshuffle(x, r)
        h = self.conv_in(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upconv):
                h = self.upconv[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, r) if r > 1 else out


def edm_precondition(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for sigma of shape (N,), in float32."""
    sigma = sigma.float()
    sd2 = sigma_data**2
    denom = sigma**2 + sd2
    return sd2 / denom, sigma * sigma_data / denom.sqrt(), 1 / denom.sqrt(), sigma.log() / 4


def apply_denoiser(net: DenoiserUNet, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """D(x; sigma) with EDM preconditioning. ``x`` float32 (N, C, H, W), any H, W; ``sigma`` shape (N,).

    Pads to a multiple of ``config.size_multiple``, and to at least twice that (reflect, or replicate where the
    image is too small for reflect), and crops back, so odd and tiny sizes work. Runs the network in its own
    dtype; returns float32.
    """
    cfg = net.config
    c_skip, c_out, c_in, c_noise = (t.to(x.device) for t in edm_precondition(sigma, cfg.sigma_data))
    h, w = x.shape[-2:]
    multiple = cfg.size_multiple
    # At least 2 pixels at the coarsest level: reflect-padded 3x3 convolutions need 2.
    pad_h, pad_w = max((-h) % multiple, 2 * multiple - h), max((-w) % multiple, 2 * multiple - w)
    inp = x * c_in[:, None, None, None]
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        inp = F.pad(inp, (0, pad_w, 0, pad_h), mode=mode)
    dtype = net.conv_in.weight.dtype
    out = net(inp.to(dtype), c_noise.to(dtype)).float()[..., :h, :w]
    return c_skip[:, None, None, None] * x + c_out[:, None, None, None] * out


class BuiltinPrior(Prior):
    """A :class:`DenoiserUNet` as a variance-exploding ``Prior``: ``denoise(x, sigma) -> E[x0 | x]``."""

    native_size: tuple[int, int] | None = None  # fully convolutional: any size

    def __init__(self, net: DenoiserUNet, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 name: str = "builtin") -> None:
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.net = net.to(device=self.device, dtype=self.dtype).eval()
        if self.device.type == "cpu":
            # channels-last: 15-25 % less CPU time per call at 256 and 512 px (measured); other devices as they are
            self.net.to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)  # solvers differentiate w.r.t. x only
        cfg = net.config
        self.config = cfg
        self.channels = cfg.channels
        self.sigma_min = float(cfg.sigma_min)
        self.sigma_max = float(cfg.sigma_max)
        self.sigma_data = float(cfg.sigma_data)
        self.native_size, self.name = None, name
        self.clip_range = None if cfg.channels == 2 else (-1.0, 1.0)  # complex MR images: scaled, not bounded
        # settings measured for this network, in its config.json (e.g. DPS's step gain: solvers/dps.py)
        self.recommended = dict(cfg.extra.get("recommended", {}))
        # the denoiser's measured rms error by sigma (priors/posterior_rms.py; DAPS's r_t = "mmse"), if stored
        table = cfg.extra.get("posterior_rms")
        self.posterior_rms = PosteriorRMS.from_json_dict(table) if table is not None else None

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """E[x0 | x] for x = x0 + sigma * eps; x float32 (N, C, H, W) in tensor units. Differentiable in x."""
        n, c = x.shape[:2]
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma_t.numel() == 1:
            sigma_t = sigma_t.expand(n)
        elif sigma_t.numel() != n:
            raise ValueError(f"sigma has {sigma_t.numel()} values for a batch of {n}")
        sigma_t = sigma_t.clamp_min(1e-8)  # ln(0) would poison c_noise
        x = x.float()
        if c != self.channels:
            raise UsageError(
                f"the prior '{self.name}' models {self.channels}-channel images but got a {c}-channel image",
                hint="replicate a grey image to 3 channels for a colour prior (and average the result back)",
            )
        return apply_denoiser(self.net, x, sigma_t)

    def __repr__(self) -> str:
        return (
            f"BuiltinPrior(name={self.name!r}, channels={self.channels}, params={count_parameters(self.net)}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def save_model_dir(net: DenoiserUNet, path: str | Path, *, metadata: dict[str, Any] | None = None,
                   dtype: torch.dtype = torch.float32) -> Path:
    """Write ``config.json`` + ``model.safetensors`` into ``path``, atomically per file. ``dtype``: how the
    weights are stored (float16 halves the file; ``load_network`` always builds a float32 network from them)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = net.config.to_json_dict()
    if metadata:
        config["training"] = metadata
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    tmp_weights = path / (WEIGHTS_NAME + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"format": "pt", "model_type": MODEL_TYPE})
    tmp_weights.chmod(0o644)  # safetensors creates 0600 files; model dirs are meant to be shared and shipped
    tmp_weights.replace(path / WEIGHTS_NAME)
    tmp_config = path / (CONFIG_NAME + ".tmp")
    tmp_config.write_text(json.dumps(config, indent=2) + "\n")
    tmp_config.replace(path / CONFIG_NAME)
    return path


def is_model_dir(path: str | Path) -> bool:
    """True if ``path`` holds a built-in model (config.json of our model type + model.safetensors). Never raises:
    a broken config.json is said precisely by whoever then tries the folder's other layouts."""
    path = Path(path)
    if not (path / WEIGHTS_NAME).is_file():
        return False
    try:
        data = read_json(path / CONFIG_NAME)
    except ModelError:
        return False
    return data.get("model_type") == MODEL_TYPE


_WHOLE_FIELDS = ("channels", "base_channels", "num_res_blocks", "emb_dim", "groups", "pixel_unshuffle")
_SIGMA_FIELDS = ("sigma_data", "sigma_min", "sigma_max")
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _config_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a config.json's architecture values, checked before a network is built from them (a 0
    would divide by zero deep inside torch, a string would fail with a message about something else)."""
    values = {**UNetConfig().to_json_dict(), **data}

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    for name in _WHOLE_FIELDS:
        if not whole(values[name]):
            return f"'{name}' must be a whole number >= 1, got {values[name]!r}"
    if values["channels"] not in (1, 2, 3):
        return f"'channels' must be 1 (gray), 2 (complex) or 3 (RGB), got {values['channels']}"
    mults = values["channel_mults"]
    if not isinstance(mults, list) or not mults or not all(whole(m) for m in mults):
        return f"'channel_mults' must be a non-empty list of whole numbers >= 1, got {mults!r}"
    if values["padding_mode"] not in _PADDING_MODES:
        return f"'padding_mode' must be one of {', '.join(_PADDING_MODES)}, got {values['padding_mode']!r}"
    for name in _SIGMA_FIELDS:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            return f"'{name}' must be a number > 0, got {value!r}"
    if values["sigma_min"] >= values["sigma_max"]:
        return f"'sigma_min' ({values['sigma_min']}) must be below 'sigma_max' ({values['sigma_max']})"
    if "posterior_rms" in data and (problem := table_problem(data["posterior_rms"])):
        return problem
    if "daps_r_t_blend" in (data.get("recommended") or {}) and "posterior_rms" not in data:
        return "'recommended.daps_r_t_blend' needs the 'posterior_rms' table it blends with"
    return _recommended_problem(data.get("recommended", {}))


def _recommended_problem(recommended: Any) -> str | None:
    """A config's measured solver settings: ``{"dps_zeta": number or {operator kind: number}, "dps_zeta_pixels":
    the C x H x W it was measured at (DPS then scales it by sqrt(values / this)), "daps_r_t_blend": number in
    [0, 1]}`` (the last needs a "posterior_rms" table)."""
    def positive(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value < math.inf

    if not isinstance(recommended, dict):
        return f"'recommended' must be a table, got {recommended!r}"
    zeta = recommended.get("dps_zeta", 1.0)
    values = zeta.values() if isinstance(zeta, dict) else [zeta]
    if not all(positive(v) for v in values):
        return f"'recommended.dps_zeta' must be a number > 0 or a table of them by task, got {zeta!r}"
    pixels = recommended.get("dps_zeta_pixels", 1)
    if not positive(pixels):
        return (f"'recommended.dps_zeta_pixels' must be a number > 0 (the C x H x W its dps_zeta was measured at), "
                f"got {pixels!r}")
    if "dps_zeta_pixels" in recommended and "dps_zeta" not in recommended:
        return "'recommended.dps_zeta_pixels' needs the 'dps_zeta' it was measured for"
    blend = recommended.get("daps_r_t_blend", 0.5)
    if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0 <= blend <= 1:
        return f"'recommended.daps_r_t_blend' must be a number in [0, 1], got {blend!r}"
    return None


def _check_weights_fit(config: UNetConfig, weights_path: Path, folder: Path) -> None:
    """Compare the tensor names and shapes in the weights file's header with the network the config describes,
    built on the meta device: a mismatch is found without reading the weights or allocating the network."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            # keys(): a safetensors handle is not iterable itself
            stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"model folder '{folder}': cannot read {WEIGHTS_NAME}: {exc}", hint=RESTORE_HINT) from None
    with torch.device("meta"):
        wanted = {name: tuple(t.shape) for name, t in DenoiserUNet(config).state_dict().items()}
    shapes = [(n, stored[n], shape) for n, shape in wanted.items() if n in stored and stored[n] != shape]
    missing = [n for n in wanted if n not in stored]
    unexpected = [n for n in stored if n not in wanted]
    if shapes or missing or unexpected:
        raise ModelError(
            f"model folder '{folder}': the weights in {WEIGHTS_NAME} do not match its {CONFIG_NAME}: "
            f"{describe_mismatch(shapes, missing, unexpected)}",
            hint="use the config.json that `diffrestore train` wrote with these weights",
        )


def load_network(path: str | Path) -> DenoiserUNet:
    """The float32 CPU network stored in a model directory; ModelError naming the folder, the file and the fix
    if it cannot be (missing files, a config.json that is no JSON object or has impossible values, weights that
    do not fit the config)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not path.is_dir():
        raise ModelError(f"model directory '{path}' does not exist", hint="train one with `diffrestore train`")
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelError(
            f"'{path}' is not a model directory: it needs {CONFIG_NAME} and {WEIGHTS_NAME}",
            hint="pass the --out folder of `diffrestore train`",
        )
    data = read_json(config_path)
    if data.get("model_type") != MODEL_TYPE:
        raise ModelError(
            f"model folder '{path}': {CONFIG_NAME} describes a model of type {data.get('model_type')!r}, "
            f"not {MODEL_TYPE!r}",
            hint=f"a diffrestore model folder's {CONFIG_NAME} has \"model_type\": \"{MODEL_TYPE}\"",
        )
    problem = _config_problem(data)
    if problem:
        raise ModelError(f"model folder '{path}': invalid {CONFIG_NAME}: {problem}", hint=RESTORE_HINT)
    config = UNetConfig.from_json_dict(data)
    _check_weights_fit(config, weights_path, path)
    net = DenoiserUNet(config)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"model folder '{path}': cannot read {WEIGHTS_NAME}: {exc}", hint=RESTORE_HINT) from None
    net.load_state_dict(state, strict=True)  # names and shapes were checked above
    return net.eval()


def load_model_dir(
    path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> BuiltinPrior:
    """Load a model directory written by ``diffrestore train`` (or the shipped default) as a ``Prior``."""
    return BuiltinPrior(load_network(path), device=device, dtype=dtype, name=Path(path).name or str(path))


def default_prior(device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> BuiltinPrior:
    """The prior shipped inside the package (no download): see diffrestore/weights/default/MODEL_CARD.md."""
    prior = load_model_dir(DEFAULT_WEIGHTS_DIR, device=device, dtype=dtype)
    prior.name = "default"
    return prior
