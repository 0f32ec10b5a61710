"""Seeded random weights in the published files' layouts, for tests: every metric runs end to end without the
real files (which CI cannot download).

``write_random_cache(cache)`` writes each metric model's files into ``<cache>/models/<name>/`` with the key
names, shapes and container types of the real files (torchvision state dicts with classifier keys, the lpips
package's ``lin{k}.model.1.weight`` heads, piq's list of tensors), and ``write_random_registry`` a models.toml
naming them without pinned hashes or sizes, so the registry counts the random files as present. The values
mean nothing: scores computed from them test plumbing and algebra, never quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: metric model -> its files, as in the shipped models.toml
METRIC_FILES: dict[str, tuple[str, ...]] = {
    "alexnet-imagenet": ("alexnet-owt-7be5be79.pth",),
    "vgg16-imagenet": ("vgg16-397923af.pth",),
    "lpips-heads": ("alex.pth", "vgg.pth"),
    "lpips-piq-heads": ("lpips_weights.pt",),
    "inception-fid": ("pt_inception-2015-12-05-6726825d.pth",),
    "inception-v3-imagenet": ("inception_v3_google-0cc3c7bd.pth",),
}


def _randomised(module: Any, generator: Any) -> dict[str, Any]:
    """The module's state dict with He-normal convolutions (so activations keep their scale through a deep
    random network) and mildly random BatchNorm statistics."""
    import torch

    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
        elif value.dim() == 4:  # convolution kernels
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        else:  # biases, BatchNorm shifts and running means
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
    return state


def random_file_content(model: str, file: str, *, seed: int = 0) -> Any:
    """What ``file`` of ``model`` would hold, with seeded random values."""
    import torch

    from .inception import inception_features
    from .networks import ALEXNET_CHANNELS, VGG16_CHANNELS, alexnet_features, vgg16_features

    generator = torch.Generator().manual_seed(seed)
    if model == "alexnet-imagenet":
        state = _randomised(alexnet_features(), generator)
        # the classifier's keys are in the real file; tiny stand-ins keep the test files small
        return state | {"classifier.1.weight": torch.zeros(4, 4), "classifier.1.bias": torch.zeros(4)}
    if model == "vgg16-imagenet":
        return _randomised(vgg16_features(), generator) | {"classifier.0.weight": torch.zeros(4, 4),
                                                           "classifier.0.bias": torch.zeros(4)}
    if model == "lpips-heads":
        channels = ALEXNET_CHANNELS if file == "alex.pth" else VGG16_CHANNELS
        return {f"lin{k}.model.1.weight": torch.rand((1, c, 1, 1), generator=generator) / c
                for k, c in enumerate(channels)}
    if model == "lpips-piq-heads":
        return [torch.rand((1, c, 1, 1), generator=generator) / c for c in VGG16_CHANNELS]
    if model in ("inception-fid", "inception-v3-imagenet"):
        variant = "fid" if model == "inception-fid" else "torchvision"
        classes = 1008 if variant == "fid" else 1000
        state = _randomised(inception_features(variant), generator)
        state |= {"fc.weight": torch.zeros(classes, 8), "fc.bias": torch.zeros(classes)}
        if variant == "torchvision":
            state |= {"AuxLogits.fc.weight": torch.zeros(classes, 8), "AuxLogits.fc.bias": torch.zeros(classes)}
        return state
    raise KeyError(f"no metric model '{model}'")


def write_random_cache(cache: Path, models: tuple[str, ...] | None = None, *, seed: int = 0) -> None:
    """Random files for ``models`` (default: all) in the cache folder ``cache`` (what DIFFRESTORE_CACHE names)."""
    import torch

    for model in models or tuple(METRIC_FILES):
        folder = Path(cache) / "models" / model
        folder.mkdir(parents=True, exist_ok=True)
        for file in METRIC_FILES[model]:
            torch.save(random_file_content(model, file, seed=seed), folder / file)


def write_random_registry(path: Path) -> Path:
    """A models.toml with the metric models only, nothing pinned (random files must count as present)."""
    lines = ["schema_version = 1", ""]
    for model, files in METRIC_FILES.items():
        lines += [f"[models.{model}]", 'family = "metric"', f'description = "random stand-in for {model}"',
                  'licence = "test"', "resolution = 0", 'tasks = ["metrics"]', "verified = false", ""]
        for file in files:
            lines += [f"[[models.{model}.files]]", f'path = "{file}"', 'sha256 = ""', "size = 0", ""]
        for file in files:
            lines += [f"[[models.{model}.sources]]", 'type = "url"',
                      f'url = "https://example.invalid/{model}/{file}"', f'file = "{file}"', ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return Path(path)
