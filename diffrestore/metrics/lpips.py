"""LPIPS (Zhang et al. 2018, arXiv:1801.03924): a learned distance between deep features of two images.

For each of five layers l of a trunk network, the activations of both images are unit-normalised along the
channel axis, their squared difference is weighted per channel by a learned non-negative vector w_l (a 1x1
convolution without bias), summed over channels and averaged over positions; the five layer terms are summed:

    d(x, y) = sum_l mean_hw sum_c w_lc (f_l(x)_chw / |f_l(x)_hw| - f_l(y)_chw / |f_l(y)_hw|)^2

Three variants, named apart because their numbers differ (docs/metrics.md):

- ``lpips``: the official v0.1 with AlexNet (the reference package's default). Input in [-1, 1] passes the
  "scaling layer" (x - shift) / scale, shift = (-.030, -.088, -.188), scale = (.458, .448, .450): that is the
  ImageNet mean/std normalisation of (x + 1) / 2, rounded to three decimals.
- ``lpips-vgg``: the official v0.1 with VGG16 (what DPS reports).
- ``lpips-piq``: piq's LPIPS with ``replace_pooling=True`` (what DAPS and InverseBench report): VGG16 whose max
  pools are average pools, exact ImageNet mean/std on [0, 1] input, and piq's own copy of the layer weights.

Inputs are clamped to [-1, 1] first, like PSNR and SSIM here: the score describes the image file the user gets.
Grey images are repeated to three channels, as the networks were trained on RGB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ModelError, UsageError
from .networks import alexnet_features, load_checked, read_weights, vgg16_features, weight_file

if TYPE_CHECKING:
    import torch
    from torch import nn

#: the official scaling layer (lpips v0.1), applied to input in [-1, 1]
OFFICIAL_SHIFT = (-0.030, -0.088, -0.188)
OFFICIAL_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: added to the feature norm before dividing, as both reference implementations do
NORM_EPS = 1e-10

#: variant -> (trunk, pooling, heads model, heads file, heads layout, input normalisation)
VARIANTS: dict[str, dict[str, str]] = {
    "lpips": {"trunk": "alexnet", "trunk_model": "alexnet-imagenet", "trunk_file": "alexnet-owt-7be5be79.pth",
              "heads_model": "lpips-heads", "heads_file": "alex.pth", "heads_layout": "official",
              "normalise": "official"},
    "lpips-vgg": {"trunk": "vgg16", "trunk_model": "vgg16-imagenet", "trunk_file": "vgg16-397923af.pth",
                  "heads_model": "lpips-heads", "heads_file": "vgg.pth", "heads_layout": "official",
                  "normalise": "official"},
    "lpips-piq": {"trunk": "vgg16-avg", "trunk_model": "vgg16-imagenet", "trunk_file": "vgg16-397923af.pth",
                  "heads_model": "lpips-piq-heads", "heads_file": "lpips_weights.pt", "heads_layout": "list",
                  "normalise": "imagenet"},
}


def build_trunk(trunk: str) -> nn.Module:
    if trunk == "alexnet":
        return alexnet_features()
    return vgg16_features(pooling="avg" if trunk == "vgg16-avg" else "max")


def input_affine(normalise: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(shift, scale) so that the network sees (x - shift) / scale for x in [-1, 1]."""
    if normalise == "official":
        return OFFICIAL_SHIFT, OFFICIAL_SCALE
    # (x + 1) / 2 in [0, 1], then ImageNet: ((x + 1) / 2 - m) / s = (x - (2m - 1)) / (2s)
    return tuple(2 * m - 1 for m in IMAGENET_MEAN), tuple(2 * s for s in IMAGENET_STD)


def _lpips_class() -> type:
    import torch
    from torch import nn

    class LPIPS(nn.Module):
        """Distance per image pair, shape (N,), from a trunk with five taps and one weight vector per tap."""

        def __init__(self, trunk: nn.Module, heads: list[torch.Tensor], shift: tuple[float, ...],
                     scale: tuple[float, ...]) -> None:
            super().__init__()
            self.trunk = trunk
            for index, w in enumerate(heads):
                self.register_buffer(f"head{index}", w.reshape(1, -1, 1, 1).to(torch.float32))
            self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, 3, 1, 1))
            self.eval()

        def heads(self) -> list[torch.Tensor]:
            return [getattr(self, f"head{i}") for i in range(len(self.trunk.taps))]

        def features(self, x: torch.Tensor) -> list[torch.Tensor]:
            """The unit-normalised activations at the five taps, for images in [-1, 1]."""
            x = _rgb(x.to(self.shift.device, torch.float32).clamp(-1.0, 1.0))
            taps = self.trunk((x - self.shift) / self.scale)
            return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS) for f in taps]

        def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
            """The five per-layer terms, each of shape (N,)."""
            return [((a - b).pow(2) * w).sum(dim=1).mean(dim=(1, 2))
                    for a, b, w in zip(self.features(x), self.features(y), self.heads(), strict=True)]

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if x.shape != y.shape:
                raise ValueError(f"LPIPS compares images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
            return torch.stack(self.layer_distances(x, y)).sum(dim=0)

    return LPIPS


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise UsageError(f"LPIPS needs grey or RGB images, got {x.shape[1]} channels")
    return x


def heads_from_state(state: Any, file: Any, channels: tuple[int, ...], layout: str) -> list[torch.Tensor]:
    """The five per-channel weight vectors from a heads file, checked against the trunk's tap widths.

    ``official``: the lpips package's ``{"lin{k}.model.1.weight": (1, C, 1, 1)}``; ``list``: piq's file, a list
    of five tensors with C elements each (used as multipliers of the squared differences).
    """
    import torch

    def wrong(problem: str) -> ModelError:
        return ModelError(f"LPIPS weights '{file}': {problem}: not the file this variant needs",
                          hint="check the file, or download it again with --force")

    if layout == "official":
        if not isinstance(state, dict):
            raise wrong(f"expected a state dict, got {type(state).__name__}")
        keys = [f"lin{k}.model.1.weight" for k in range(len(channels))]
        extra = sorted(set(state) - set(keys))
        if extra:
            raise wrong(f"unexpected key '{extra[0]}'")
        tensors = []
        for key, c in zip(keys, channels, strict=True):
            if key not in state:
                raise wrong(f"missing key '{key}'")
            if not isinstance(state[key], torch.Tensor) or tuple(state[key].shape) != (1, c, 1, 1):
                shape = tuple(getattr(state[key], "shape", ()))
                raise wrong(f"key '{key}' has shape {shape}, expected {(1, c, 1, 1)}")
            tensors.append(state[key])
    else:
        if not isinstance(state, (list, tuple)) or len(state) != len(channels):
            raise wrong(f"expected a list of {len(channels)} tensors, got {type(state).__name__}")
        tensors = []
        for index, (w, c) in enumerate(zip(state, channels, strict=True)):
            if not isinstance(w, torch.Tensor) or w.numel() != c or w.dim() not in (1, 3, 4):
                shape = tuple(getattr(w, "shape", ()))
                raise wrong(f"entry {index} has shape {shape}, expected {c} per-channel weights")
            tensors.append(w)
    return [t.detach().reshape(-1).to(torch.float32) for t in tensors]


def load_lpips(name: str, *, registry: Any = None, device: str = "cpu") -> nn.Module:
    """The LPIPS network of variant ``name``, its weights from the registry's cache, in eval mode on ``device``."""
    spec = VARIANTS[name]
    trunk_path = weight_file(spec["trunk_model"], spec["trunk_file"], registry=registry)
    heads_path = weight_file(spec["heads_model"], spec["heads_file"], registry=registry)
    trunk = load_checked(build_trunk(spec["trunk"]), read_weights(trunk_path), trunk_path,
                         unused=("classifier.",))
    heads = heads_from_state(read_weights(heads_path), heads_path, trunk.channels, spec["heads_layout"])
    shift, scale = input_affine(spec["normalise"])
    return _lpips_class()(trunk, heads, shift, scale).to(device)


def make_lpips(trunk: nn.Module, heads: list[torch.Tensor], normalise: str = "official") -> nn.Module:
    """An LPIPS module from parts already in memory (tests, or weights obtained another way)."""
    shift, scale = input_affine(normalise)
    module = _lpips_class()(trunk, heads, shift, scale)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
