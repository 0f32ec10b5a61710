"""A learned, nonlinear, spatially varying blur: the generator of bkse's KernelWizard (Tran et al., "Explore Image
Deblurring via Encoded Blur Kernel Space", CVPR 2021, arXiv:2104.00317), as DPS ("non-uniform deblur") and DAPS
("nonlinear deblur") use it as their operator:

    y = clamp(2 G((x + 1) / 2, k) - 1, -1, 1)

``G(x01, k)`` blurs a [0, 1] image ``x01`` with the blur that the kernel code ``k`` (512 x H/128 x W/128, drawn
N(0, 1.2^2) for the VAE-trained model) encodes. ``G`` is bkse's ``adaptKernel`` path: a feature extractor (a 3x3
conv, two stride-2 convs, residual blocks) down to a quarter of the size, a five-level U-Net "adapter" whose
bottleneck (1/128 of the size) takes the code as extra channels, and a reconstruction trunk (residual blocks, two
pixel-shuffle x2 upsamplers), added to the input. The code is spatial, and G nonlinear in x, so the blur varies
across the image and is no convolution.

This is our own re-implementation (bkse's code is BSD-3-Clause) whose parameter names and shapes are those of the
released checkpoint ``GOPRO_wVAE.pth``, so that file loads strictly. The checkpoint also holds bkse's kernel
encoder (``kernel_extractor.*``, which maps a sharp/blurry pair to a code); the operator never runs it, so it is
not built: its keys are checked against their known shapes (``KERNEL_ENCODER_SHAPES``) and dropped.

One detail of the original that changes outputs: its U-Net levels activate their input with an in-place
LeakyReLU before the down-convolution, so the skip connection concatenates the *activated* input, not the input.
``_UNetLevel`` does the same on purpose, so the released weights see what they were trained with.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError, UsageError
from ..registry.torch_file import read_torch_file
from .base import DEFAULT_SEED, Operator, OperatorKind

#: bkse's options/generate_blur/default.yml: nf, front_RBs, back_RBs, input_nc (kernel_dim = 8 nf = 512)
BKSE_FEATURES = 64
BKSE_FRONT_BLOCKS = 10
BKSE_BACK_BLOCKS = 20
BKSE_CHANNELS = 3
#: two stride-2 convs in the feature extractor and five in the U-Net: each code cell covers 128 x 128 pixels
SIZE_MULTIPLE = 128
#: the std of the kernel codes bkse's generate_blur.py (and DPS / DAPS) draw for the VAE-trained model
CODE_STD = 1.2
#: checkpoint keys the operator does not use: bkse's kernel encoder (and its VAE head)
UNUSED_PREFIXES: tuple[str, ...] = ("kernel_extractor.",)


def _encoder_shapes(code_channels: int = 512, features: int = BKSE_FEATURES) -> dict[str, tuple[int, ...]]:
    """The kernel encoder's weights (no biases: built with norm "none") in GOPRO_wVAE.pth: a 7x7 conv on the sharp
    and blurry features side by side, five stride-2 convs capped at twice the code width (mean and log-variance of
    the VAE), four residual blocks at that width."""
    width = 2 * code_channels
    shapes: dict[str, tuple[int, ...]] = {"kernel_extractor.model.1.weight": (features, 2 * features, 7, 7)}
    c_in = features
    for level in range(5):
        c_out = min(features * 2 ** (level + 1), width)
        shapes[f"kernel_extractor.model.{4 + 3 * level}.weight"] = (c_out, c_in, 3, 3)
        c_in = c_out
    for block in range(4):
        for conv in (1, 5):
            shapes[f"kernel_extractor.model.{19 + block}.conv_block.{conv}.weight"] = (width, width, 3, 3)
    return shapes


#: the kernel encoder's keys and shapes in GOPRO_wVAE.pth (checked, then dropped)
KERNEL_ENCODER_SHAPES: dict[str, tuple[int, ...]] = _encoder_shapes()


class _ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, added to the input (no normalisation)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class _UNetLevel(nn.Module):
    """One level of the adapter U-Net: a 4x4 stride-2 conv down, the inner levels (or, innermost, the kernel code
    concatenated), a 4x4 stride-2 transposed conv up. Inner levels return their output beside their activated
    input (the skip); the outermost returns tanh of its output alone.

    The attributes sit at the indices of the original's ``nn.Sequential`` blocks (``down.1``, ``up.1``), so the
    checkpoint's names fit; the activations hold no weights."""

    def __init__(self, outer: int, inner: int, submodule: _UNetLevel | None, *, outermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(outer, inner, 4, 2, 1, bias=False)
        # The original has no bias on any conv but the outermost up-conv (its norm "none" keeps the bias-free
        # layout of a normalised U-Net).
        up = nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=outermost)
        self.down = nn.Sequential(down) if outermost else nn.Sequential(nn.LeakyReLU(0.2), down)
        self.up = nn.Sequential(nn.ReLU(), up)
        self.submodule = submodule

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        # The outermost level takes the features as they are; the others see LeakyReLU(x), and so does their skip.
        h = x if self.outermost else F.leaky_relu(x, 0.2)
        inner = self.down[-1](h)
        inner = torch.cat((inner, code), dim=1) if self.submodule is None else self.submodule(inner, code)
        out = self.up[1](F.relu(inner))
        return torch.tanh(out) if self.outermost else torch.cat((out, h), dim=1)


class _Adapter(nn.Module):
    """bkse's KernelAdapter: five U-Net levels, widths nf, 2 nf, 4 nf, 8 nf, 8 nf; the code has 8 nf channels."""

    def __init__(self, features: int) -> None:
        super().__init__()
        level = _UNetLevel(8 * features, 8 * features, None)
        for outer, inner in ((4, 8), (2, 4), (1, 2)):
            level = _UNetLevel(outer * features, inner * features, level)
        self.model = _UNetLevel(features, features, level, outermost=True)

    def forward(self, features: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.model(features, code)


class BkseGenerator(nn.Module):
    """``G(x01, code)``: bkse KernelWizard's ``adaptKernel`` path, with the parameter names of its checkpoints.

    ``x01``: (N, channels, H, W) in [0, 1] with H and W multiples of 128; ``code``: (N, 8 * features, H / 128,
    W / 128). Returns the blurred image in about [0, 1] (not clamped). The defaults are GOPRO_wVAE.pth's; smaller
    ``features`` / block counts / ``tail`` give test-sized networks of the same structure (``tail`` is the width
    of the last two convs, fixed at 64 in the original).
    """

    def __init__(self, features: int = BKSE_FEATURES, front_blocks: int = BKSE_FRONT_BLOCKS,
                 back_blocks: int = BKSE_BACK_BLOCKS, channels: int = BKSE_CHANNELS, tail: int = 64) -> None:
        super().__init__()
        self.features, self.channels = int(features), int(channels)
        act = nn.LeakyReLU(0.1)
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(channels, features, 3, 1, 1), act,
            nn.Conv2d(features, features, 3, 2, 1), act,
            nn.Conv2d(features, features, 3, 2, 1), act,
            *(_ResidualBlock(features) for _ in range(front_blocks)),
        )
        self.adapter = _Adapter(features)
        self.recon_trunk = nn.Sequential(
            *(_ResidualBlock(features) for _ in range(back_blocks)),
            nn.Conv2d(features, 4 * features, 3, 1, 1), nn.PixelShuffle(2), act,
            nn.Conv2d(features, 4 * tail, 3, 1, 1), nn.PixelShuffle(2), act,
            nn.Conv2d(tail, tail, 3, 1, 1), act,
            nn.Conv2d(tail, channels, 3, 1, 1),
        )

    @property
    def code_channels(self) -> int:
        return 8 * self.features

    def forward(self, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        out = self.recon_trunk(self.adapter(self.feature_extractor(x01), code))
        return out + x01


# ------------------------------------------------------------------------------------------- weight files


def check_bkse_state(state: Any, source: str | os.PathLike[str] = "bkse weights") -> dict[str, torch.Tensor]:
    """The generator's part of a bkse KernelWizard state dict, float32, after a strict check: every generator key
    with its exact shape, every kernel-encoder key of the VAE model with its shape, nothing else. ModelError (exit
    3, one line) naming the first key at fault; a model trained without the VAE (its encoder is half as wide) is
    named as such, since its codes do not follow N(0, 1.2^2)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"bkse weights '{source}' are not a state dict of tensors (got {type(state).__name__})",
                         hint="give bkse's GOPRO_wVAE.pth as released")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        wanted = {k: tuple(v.shape) for k, v in BkseGenerator().state_dict().items()}
    wanted |= KERNEL_ENCODER_SHAPES
    for key, shape in wanted.items():
        if key not in state:
            raise ModelError(f"bkse weights '{source}' lack the key '{key}': not bkse's GOPRO_wVAE.pth",
                             hint="download it again: `diffrestore models download bkse-gopro-wvae --force`")
        got = tuple(state[key].shape)
        if got != shape:
            without_vae = key == "kernel_extractor.model.13.weight" and got == (512, 512, 3, 3)
            what = ("a model trained without the VAE (woVAE), whose kernel codes are not N(0, 1.2^2)" if without_vae
                    else "not bkse's GOPRO_wVAE.pth")
            raise ModelError(f"bkse weights '{source}': key '{key}' has shape {got}, expected {shape}: {what}",
                             hint="use GOPRO_wVAE.pth (`diffrestore models download bkse-gopro-wvae`)")
    extra = sorted(k for k in state if k not in wanted)
    if extra:
        raise ModelError(f"bkse weights '{source}' hold unexpected keys ({', '.join(extra[:3])}"
                         f"{', ...' if len(extra) > 3 else ''}): not bkse's GOPRO_wVAE.pth")
    return {k: v.detach().to(torch.float32) for k, v in state.items() if not k.startswith(UNUSED_PREFIXES)}


@functools.lru_cache(maxsize=1)
def _read_checked(path: str, mtime_ns: int, size: int) -> dict[str, torch.Tensor]:
    # Keyed by modification time and size as well as path: a file replaced on disk is read again. One entry: a
    # run uses one file, and each image's operator reuses its tensors instead of reading 0.5 GB again.
    return check_bkse_state(read_torch_file(path, "bkse weights", model="bkse-gopro-wvae"), path)


def read_bkse_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The checked generator weights of a bkse checkpoint file (``torch.load(weights_only=True)``, on the CPU);
    cached, so that the operators of a run's images share one copy."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise ModelError(f"bkse weights '{path}' are missing",
                         hint="run `diffrestore models download bkse-gopro-wvae`") from None
    return _read_checked(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


def generator_from_state(state: Mapping[str, torch.Tensor]) -> BkseGenerator:
    """A frozen GOPRO_wVAE-sized generator holding the checked ``state`` (``check_bkse_state``'s output) without
    copying it: built on the meta device and given the tensors, so no 23-million-weight initialisation is spent."""
    with torch.device("meta"):
        network = BkseGenerator()
    network.load_state_dict(dict(state), strict=True, assign=True)
    return network.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ padding


def _mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding of any width: torch's reflect mode takes at most side - 1 pixels per step, so wider pads
    reflect the already padded image again (a 100-pixel side padded to 128 or a 17-pixel one to 128)."""
    while top or bottom or left or right:
        height, width = x.shape[-2:]
        step = [min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1)]
        if not any(step):  # a one-pixel side has nothing to reflect: repeat it
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (n - s for n, s in zip((left, right, top, bottom), step, strict=True))
    return x


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The size the generator runs at: each side rounded up to a multiple of 128."""
    return (SIZE_MULTIPLE * math.ceil(height / SIZE_MULTIPLE), SIZE_MULTIPLE * math.ceil(width / SIZE_MULTIPLE))


def code_shape(height: int, width: int, channels: int = 8 * BKSE_FEATURES) -> tuple[int, int, int, int]:
    """The kernel code's shape (1, 512, H' / 128, W' / 128) for an image of ``height`` x ``width``."""
    padded_h, padded_w = padded_size(height, width)
    return (1, channels, padded_h // SIZE_MULTIPLE, padded_w // SIZE_MULTIPLE)


# ----------------------------------------------------------------------------------------------- operator


class BkseBlur(Operator):
    """``y = clamp(2 G((x + 1) / 2, code) - 1, -1, 1)`` with bkse's generator ``G`` (module docstring).

    ``weights``: a ``BkseGenerator`` (copied, frozen), a bkse state dict (checked strictly,
    ``check_bkse_state``) or the path of a checkpoint file (``read_bkse_weights``). Images of any size: each side
    is reflect-padded to a multiple of 128 (the image centred), blurred, and cropped back, so the operator sees
    and returns ``image_shape``; a padded side makes the blur near that border depend on mirrored content.

    The kernel code is drawn ONCE, here, from ``generator`` (None: seed 0) as N(0, 1.2^2) of shape
    (1, 512, H' / 128, W' / 128) for the padded size H' x W', and kept for every call: the measurement and the
    guidance see the same blur. (DPS's official operator draws a new code at every call, so its measurement and
    its gradient use different blurs, a bug still open upstream; DAPS fixes one code, drawn with numpy after
    ``np.random.seed(0)``.) ``code``: a known code instead, (1, 512, h, w) or (512, h, w), e.g. read from a file.

    Nonlinear and differentiable (solvers backpropagate through ``G``); the clamp's gradient is 0 where it clips.
    No Lipschitz bound is known (``lipschitz()`` is None).
    """

    name = "bkse"
    kind = OperatorKind.NONLINEAR_BLUR

    def __init__(self, image_shape: tuple[int, int, int], weights: BkseGenerator | Mapping[str, torch.Tensor] | str
                 | os.PathLike[str], code: torch.Tensor | Any = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(image_shape)
        if isinstance(weights, BkseGenerator):
            # A copy: moving this operator to another device or dtype must not move the caller's network.
            network = copy.deepcopy(weights).eval().requires_grad_(False)
        elif isinstance(weights, Mapping):
            network = generator_from_state(check_bkse_state(weights))
        else:
            network = generator_from_state(read_bkse_weights(weights))
        channels, height, width = self.image_shape
        if channels != network.channels:
            raise UsageError(f"bkse blur works on {network.channels}-channel images, got {channels}",
                             hint="give an RGB image and an RGB model")
        self.network = network
        padded_h, padded_w = padded_size(height, width)
        top, left = (padded_h - height) // 2, (padded_w - width) // 2
        self._padding = (top, padded_h - height - top, left, padded_w - width - left)
        expected = code_shape(height, width, network.code_channels)
        if code is None:
            generator = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
            code = torch.randn(expected, generator=generator, device=generator.device) * CODE_STD
        code = torch.as_tensor(code, dtype=torch.float32).detach()
        if code.dim() == 3:
            code = code.unsqueeze(0)
        if tuple(code.shape) != expected:
            raise UsageError(f"bkse kernel code has shape {tuple(code.shape)}, but a {height}x{width} image needs "
                             f"{expected} (sides padded to multiples of {SIZE_MULTIPLE})")
        if not bool(torch.isfinite(code).all()):
            raise UsageError("bkse kernel code holds NaN or infinite values")
        self.register_buffer("code", code.cpu().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        top, bottom, left, right = self._padding
        x01 = _mirror_pad((x + 1) / 2, top, bottom, left, right)
        # One code for the whole batch; the generator's weights set the dtype (a float64 test moves both).
        blurred = self.network(x01, self.code.to(x01.dtype).expand(x.shape[0], -1, -1, -1))
        height, width = self.image_shape[1:]
        blurred = blurred[..., top : top + height, left : left + width]
        return (2 * blurred - 1).clamp(-1.0, 1.0)

    def extra_repr(self) -> str:
        return f"code={tuple(self.code.shape)}, {super().extra_repr()}"
