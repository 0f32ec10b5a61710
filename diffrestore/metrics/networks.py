"""The feature networks behind LPIPS (AlexNet and VGG16 convolutional trunks) and the strict loading of weight
files into our modules.

The modules use the parameter names of torchvision's ImageNet classifiers (``features.N.weight``), so the
published files (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``) load as they are, without torchvision.
Only the convolutional trunk is built; the classifier keys of those files are known and ignored.

Loading is strict: every parameter of the module must be in the file with its exact shape, and every key of the
file must be one of the module's or one that the variant is known to leave unused (a classifier head). A file
that breaks either rule is the wrong file, and the error names it (one line, exit code 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..registry.torch_file import read_torch_file

if TYPE_CHECKING:
    import torch
    from torch import nn

#: AlexNet trunk as torchvision builds it: (in, out, kernel, stride, padding) per conv, "M" = 3x3/2 max pool
ALEXNET_LAYOUT: tuple[Any, ...] = ((3, 64, 11, 4, 2), "M", (64, 192, 5, 1, 2), "M", (192, 384, 3, 1, 1),
                                   (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
#: the ReLU outputs LPIPS compares, as indices into ``features`` (relu1 .. relu5)
ALEXNET_TAPS = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)

#: VGG16 trunk: conv3x3 widths, "M" = 2x2/2 pool after each block
VGG16_LAYOUT: tuple[Any, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                 512, 512, 512, "M")
#: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
VGG16_TAPS = (3, 8, 15, 22, 29)
VGG16_CHANNELS = (64, 128, 256, 512, 512)


#: a spatial step of a network: (kernel, stride, padding), as a convolution or a pool applies it to one side
Step = tuple[int, int, int]


def smallest_side(steps: tuple[Step, ...] | list[Step]) -> int:
    """The smallest input side for which every step leaves at least one pixel, from the layer arithmetic.

    A step maps a side n to floor((n + 2p - k) / s) + 1, so it leaves at least m pixels exactly when
    n >= (m - 1) s + k - 2p. Walking back from one pixel after the last step gives the bound; below it PyTorch
    stops with "Output size is too small" (or returns an empty tensor), at it every layer has an output.
    """
    needed = 1
    for kernel, stride, padding in reversed(list(steps)):
        needed = max(1, (needed - 1) * stride + kernel - 2 * padding)
    return needed


def trunk_steps(layout: tuple[Any, ...], taps: tuple[int, ...], pool: Step, conv: Step | None = None) -> list[Step]:
    """The spatial steps of a trunk up to its last tap (``Trunk.forward`` stops there, so a later pool does not
    count), in the numbering of ``features``: a conv item is two modules (conv, ReLU), a pool one. ``conv``: the
    step of every convolution when the layout gives only widths (VGG)."""
    steps: list[Step] = []
    index = 0
    for item in layout:
        if index > taps[-1]:
            break
        if item == "M":
            steps.append(pool)
            index += 1
        else:
            steps.append(conv if conv is not None else tuple(item[2:5]))  # type: ignore[arg-type]
            index += 2
    return steps


def _trunk_module() -> type:
    from torch import nn

    class Trunk(nn.Module):
        """``features`` (an ``nn.Sequential`` in torchvision's numbering) run up to the last tap, returning the
        activations at ``taps``."""

        def __init__(self, layers: list[nn.Module], taps: tuple[int, ...], channels: tuple[int, ...]) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.taps = taps
            self.channels = channels

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            out: list[torch.Tensor] = []
            for index, layer in enumerate(self.features):
                x = layer(x)
                if index in self.taps:
                    out.append(x)
                    if index == self.taps[-1]:
                        break  # later layers (the last pool) feed nothing LPIPS reads
            return out

    return Trunk


def alexnet_features() -> nn.Module:
    """AlexNet's convolutional trunk (the "one weird trick" variant torchvision ships), taps after each ReLU."""
    from torch import nn

    layers: list[nn.Module] = []
    for item in ALEXNET_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            c_in, c_out, k, s, p = item
            layers += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), nn.ReLU(inplace=False)]
    return _trunk_module()(layers, ALEXNET_TAPS, ALEXNET_CHANNELS)


def vgg16_features(*, pooling: str = "max") -> nn.Module:
    """VGG16's convolutional trunk; ``pooling="avg"`` swaps every 2x2 max pool for a 2x2 average pool (piq's
    ``replace_pooling=True``, the LPIPS of DAPS and InverseBench). Pools hold no weights, so both load the same
    file."""
    from torch import nn

    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    layers: list[nn.Module] = []
    c_in = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = item
    return _trunk_module()(layers, VGG16_TAPS, VGG16_CHANNELS)


def read_weights(file: Path) -> Any:
    """The tensors of a weight file, read with ``weights_only=True`` onto the CPU (some published files were
    saved from a GPU and would otherwise need CUDA to open)."""
    return read_torch_file(file, "metric weights")


def load_checked(module: nn.Module, state: Any, file: Path | str, *, unused: tuple[str, ...] = ()) -> nn.Module:
    """Load ``state`` into ``module`` after checking keys and shapes; ``unused`` are key prefixes the file may
    carry that the module does not need (e.g. ``"classifier."``). BatchNorm's ``num_batches_tracked`` counters
    are optional: files saved before PyTorch 0.4.1 lack them and they play no part in inference."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"metric weights '{file}' are not a state dict of tensors (got {type(state).__name__})")
    wanted = module.state_dict()
    for key, tensor in wanted.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):
                continue
            raise ModelError(f"metric weights '{file}' lack the key '{key}': not the file this network needs",
                             hint="check the model name, or download it again with --force")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(f"metric weights '{file}': key '{key}' has shape {tuple(state[key].shape)}, expected "
                             f"{tuple(tensor.shape)}: not the file this network needs")
    extra = sorted(k for k in state if k not in wanted and not k.startswith(unused))
    if extra:
        raise ModelError(f"metric weights '{file}' hold unexpected keys ({', '.join(extra[:3])}"
                         f"{', ...' if len(extra) > 3 else ''}): not the file this network needs")
    kept = {k: v.to(torch.float32) for k, v in state.items() if k in wanted}
    module.load_state_dict(kept, strict=False)  # strictness checked above (num_batches_tracked may be absent)
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def weight_file(model: str, path: str, *, registry: Any = None) -> Path:
    """The cached file ``path`` of registry model ``model``, downloaded and verified first if needed (offline
    with an empty cache: the registry's one-line error naming ``diffrestore models download``).

    Files published under torch.hub's naming rule carry the first hex digits of their sha256 in the name
    (``-7be5be79.pth``); where models.toml cannot pin the full hash, the hash recorded at download is checked
    against that prefix, so a wrong file is refused even though its full hash is not known in advance.
    """
    from ..registry import ensure_local, read_lock

    entry, folder = ensure_local(model, registry=registry)
    if folder is None or entry is None:
        raise ModelError(f"'{model}' is not a downloaded model: it cannot hold metric weights")
    target = folder / path
    prefix = hub_hash_prefix(path)
    recorded = read_lock(entry).get("files", {}).get(path, {})
    digest = recorded.get("sha256", "") if isinstance(recorded, dict) else ""
    if prefix and isinstance(digest, str) and digest and not digest.startswith(prefix):
        raise ModelError(f"metric weights '{target}' have sha256 {digest[:12]}..., but the file name promises "
                         f"{prefix}...: not the published file",
                         hint=f"delete it and run `diffrestore models download {model} --force`")
    return target


def hub_hash_prefix(path: str) -> str:
    """The sha256 prefix in a torch.hub style file name (``name-<hex>.pth``), or ""."""
    import re

    match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z]+$", Path(path).name)
    return match.group(1) if match else ""


#: the smallest image side each LPIPS trunk takes (31 for AlexNet: the 11x11/4 convolution and two 3x3/2 pools;
#: 16 for VGG16: four 2x2/2 pools before relu5_3; average pools have the same arithmetic as max pools)
ALEXNET_MIN_SIDE = smallest_side(trunk_steps(ALEXNET_LAYOUT, ALEXNET_TAPS, pool=(3, 2, 0)))
VGG16_MIN_SIDE = smallest_side(trunk_steps(VGG16_LAYOUT, VGG16_TAPS, pool=(2, 2, 0), conv=(3, 1, 1)))
