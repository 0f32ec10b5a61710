"""The metric catalogue: every metric name the CLI and the API accept, what it measures, and a ``Scorer``.

Torch-free at import, so ``diffrestore --help`` and flag parsing stay fast; the networks and torch load inside
the functions that need them, through the model registry (their weights are registry entries of the
``metric`` family).

Image-level metrics give one number per (restored, reference) pair; set-level metrics (FID, KID) compare the
distribution of the restored set with that of the reference set, so the ``Scorer`` accumulates features of
both and answers at the end. Variants are separate names on purpose: LPIPS and FID numbers from different
networks or pipelines are not comparable, and a table should say which one it reports (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .networks import ALEXNET_MIN_SIDE, VGG16_MIN_SIDE

if TYPE_CHECKING:
    import torch

    from ..registry import Registry

METRIC_NAMES: tuple[str, ...] = (
    "psnr", "ssim", "lpips", "lpips-vgg", "lpips-piq", "fid", "fid-torchvision", "kid",
)

#: below this many images FID is strongly biased upwards (pytorch-fid recommends at least the feature size)
FID_MIN_IMAGES = 2048


@dataclass(frozen=True)
class MetricInfo:
    """What one metric name means: its kind, direction, input convention and the weights it needs."""

    name: str
    kind: str  # "image" (one value per pair) or "set" (one value for two sets of images)
    higher_is_better: bool
    convention: str
    summary: str
    models: tuple[str, ...] = ()
    #: the smallest image side (width and height) the metric takes: its network's, from the layer arithmetic
    #: (networks.smallest_side); 1 where any image works (PSNR, SSIM, FID and KID resized to 299)
    min_side: int = 1


_INFO: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("psnr", "image", True, "[0, 1] intensities, data range 1; dB",
                   "peak signal-to-noise ratio per image"),
        MetricInfo("ssim", "image", True, "[0, 1] intensities, data range 1; 11x11 Gaussian window, sigma 1.5",
                   "structural similarity (Wang et al. 2004) per image"),
        MetricInfo("lpips", "image", False, "[-1, 1] input, LPIPS v0.1 scaling layer; grey repeated to RGB",
                   "LPIPS v0.1 with AlexNet features (the official default)",
                   ("alexnet-imagenet", "lpips-heads"), ALEXNET_MIN_SIDE),
        MetricInfo("lpips-vgg", "image", False, "[-1, 1] input, LPIPS v0.1 scaling layer; grey repeated to RGB",
                   "LPIPS v0.1 with VGG16 features (what DPS reports)",
                   ("vgg16-imagenet", "lpips-heads"), VGG16_MIN_SIDE),
        MetricInfo("lpips-piq", "image", False, "[0, 1] input, ImageNet mean/std; grey repeated to RGB",
                   "piq's LPIPS: VGG16 with average pooling (what DAPS and InverseBench report)",
                   ("vgg16-imagenet", "lpips-piq-heads"), VGG16_MIN_SIDE),
        MetricInfo("fid", "set", False,
                   "[0, 1] -> 2x-1, bilinear resize to 299; TF Inception (2015-12-05) 2048-d pool3",
                   "Frechet Inception distance, pytorch-fid's network and pipeline",
                   ("inception-fid",)),
        MetricInfo("fid-torchvision", "set", False,
                   "[0, 1], bilinear resize to 299, ImageNet mean/std; torchvision Inception-v3 2048-d",
                   "FID with the torchvision ImageNet Inception-v3 (what DAPS reports; not comparable to fid)",
                   ("inception-v3-imagenet",)),
        MetricInfo("kid", "set", False,
                   "same features as fid; unbiased MMD^2, cubic polynomial kernel, mean over subsets",
                   "kernel Inception distance (Binkowski et al. 2018), unbiased at small n",
                   ("inception-fid",)),
    )
}


def describe(name: str) -> MetricInfo:
    """The catalogue entry of ``name``; an unknown name is a usage error listing the valid ones."""
    try:
        return _INFO[name]
    except KeyError:
        raise UsageError(f"unknown metric '{name}' (valid: {', '.join(METRIC_NAMES)})") from None


def min_side(name: str, *, fid_resize: str = "bilinear") -> int:
    """The smallest image side ``name`` takes; FID and KID without resizing take the Inception network's."""
    if describe(name).kind == "set" and fid_resize == "none":
        from .inception import MIN_SIDE

        return MIN_SIDE
    return describe(name).min_side


def too_small(names: Any, size: tuple[int, int], *, fid_resize: str = "bilinear") -> tuple[str, int] | None:
    """(the first metric of ``names`` that cannot take an image of ``size`` = (width, height), its smallest side),
    or None when every one can."""
    for name in names:
        side = min_side(name, fid_resize=fid_resize)
        if min(size) < side:
            return name, side
    return None


def check_image_size(names: Any, size: tuple[int, int], image: str, *, flag: str = "--metrics",
                     fid_resize: str = "bilinear") -> None:
    """UsageError (exit 2), one line naming ``image``, its size and the metric, when a metric of ``names`` cannot
    take an image of ``size`` = (width, height). Callers check before any restoration or network loads: the
    network would stop with "Output size is too small" only after the work was done."""
    found = too_small(names, size, fid_resize=fid_resize)
    if found is not None:
        name, side = found
        raise UsageError(f"{image} is {size[0]} x {size[1]} pixels: too small for the metric {name}, whose network "
                         f"needs at least {side} pixels on each side",
                         hint=f"leave {name} out of {flag}, or score images of at least {side} x {side} pixels")


def parse_metrics(text: str, flag: str = "--metrics") -> tuple[str, ...]:
    """``"psnr, lpips,psnr"`` -> ``("psnr", "lpips")``: a comma list, names trimmed and lower-cased, first
    occurrence kept. An unknown or empty name is a one-line usage error (exit 2) naming ``flag``."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if name not in _INFO:
            shown = repr(raw.strip()) if raw.strip() else "an empty name"
            raise UsageError(f"{flag}: unknown metric {shown} (valid: {', '.join(METRIC_NAMES)})",
                             hint="give a comma-separated list, e.g. psnr,ssim,lpips")
        if name not in names:
            names.append(name)
    return tuple(names)


def required_models(names: Any) -> tuple[str, ...]:
    """The registry model names whose weights ``names`` need, each once, in catalogue order."""
    wanted: list[str] = []
    for name in names:
        for model in describe(name).models:
            if model not in wanted:
                wanted.append(model)
    return tuple(wanted)


def metrics_using(model: str) -> tuple[str, ...]:
    """The metric names whose networks load the registry model ``model``, in catalogue order."""
    return tuple(name for name in METRIC_NAMES if model in _INFO[name].models)


def weights_text(model: str) -> str:
    """What a metric-family registry entry is, for ``models info`` and the refusal of ``--model``: "weights for the
    lpips metric", "weights for the fid and kid metrics" (or a metric's network, for a name no metric loads)."""
    users = metrics_using(model)
    if not users:
        return "weights for a metric's network"
    names = users[0] if len(users) == 1 else f"{', '.join(users[:-1])} and {users[-1]}"
    return f"weights for the {names} metric{'s' if len(users) > 1 else ''}"


class Scorer:
    """Scores restored images against references with the metrics ``names``.

    ``score_images`` returns the image-level metrics per pair and feeds the set-level ones; ``set_scores``
    computes those from everything fed so far. Networks load lazily through the registry (``registry`` or
    the default models.toml) on first use, on ``device``, in float32. ``fid_resize`` is how images reach the
    Inception network's 299x299 input (``metrics.fid.RESIZE_MODES``; "bilinear" = pytorch-fid's).
    """

    def __init__(self, names: Any, *, registry: Registry | None = None, device: str = "cpu",
                 fid_resize: str = "bilinear") -> None:
        self.names: tuple[str, ...] = tuple(describe(n).name for n in names)
        self.registry = registry
        self.device = device
        from .fid import RESIZE_MODES  # torch-free at import

        if fid_resize not in RESIZE_MODES:
            raise UsageError(f"unknown FID resize mode '{fid_resize}' (valid: {', '.join(RESIZE_MODES)})")
        self.fid_resize = fid_resize
        self._lpips: dict[str, Any] = {}
        self._extractors: dict[str, Any] = {}
        # per feature network: the restored set's and the reference set's feature batches
        self._features: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @property
    def image_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if _INFO[n].kind == "image")

    @property
    def set_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if _INFO[n].kind == "set")

    def _registry(self) -> Registry:
        if self.registry is None:
            from ..registry import load_registry

            self.registry = load_registry()
        return self.registry

    def _lpips_model(self, name: str) -> Any:
        if name not in self._lpips:
            from .lpips import load_lpips

            self._lpips[name] = load_lpips(name, registry=self._registry(), device=self.device)
        return self._lpips[name]

    def _extractor(self, name: str) -> Any:
        network = _feature_network(name)
        if network not in self._extractors:
            from .fid import load_extractor

            self._extractors[network] = load_extractor(network, registry=self._registry(), device=self.device,
                                                       resize=self.fid_resize)
        return self._extractors[network]

    def score_images(self, restored: torch.Tensor, reference: torch.Tensor) -> dict[str, list[float]]:
        """Image-level scores per pair, and features of both batches for the set-level metrics.

        Both tensors are (N, C, H, W) in [-1, 1]; a single image (C, H, W) counts as N = 1.
        """
        import torch

        from . import pixel

        restored, reference = _batch(restored), _batch(reference)
        if restored.shape != reference.shape:
            raise ValueError(f"cannot compare images of shapes {tuple(restored.shape)} and "
                             f"{tuple(reference.shape)}")
        scores: dict[str, list[float]] = {}
        with torch.no_grad():
            for name in self.image_names:
                if name == "psnr":
                    values = pixel.psnr(restored, reference)
                elif name == "ssim":
                    values = pixel.ssim(restored, reference)
                else:
                    model = self._lpips_model(name)
                    # a clear refusal instead of the network's "Output size is too small" (the engine, eval and
                    # the API check before anything loads; this guards direct users of the Scorer)
                    check_image_size((name,), (int(restored.shape[-1]), int(restored.shape[-2])), "the image",
                                     flag="the metrics")
                    values = model(restored.to(self.device), reference.to(self.device))
                scores[name] = [float(v) for v in values.cpu()]
            for name in self.set_names:
                network = _feature_network(name)
                if network in self._features and name != _first_user(self.set_names, network):
                    continue  # fid and kid share one feature network: extract once
                extractor = self._extractor(name)
                mine, theirs = self._features.setdefault(network, ([], []))
                mine.append(extractor(restored.to(self.device)).cpu())
                theirs.append(extractor(reference.to(self.device)).cpu())
        return scores

    def set_scores(self, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   seed: int = 0) -> dict[str, dict[str, Any]]:
        """The set-level metrics over every image fed so far.

        ``{"fid": {"value", "n", "warning"}, "kid": {"value", "std", "n", "subset_size", "subsets"}}``;
        ``n`` is the number of image pairs. FID below 2048 images carries a warning (its bias at small n is
        large and depends on n, so such values are only comparable at equal n).
        """
        import torch

        from . import fid as fid_module

        out: dict[str, dict[str, Any]] = {}
        for name in self.set_names:
            mine, theirs = self._features.get(_feature_network(name), ([], []))
            if not mine:
                raise ValueError(f"{name}: no images were scored yet")
            a, b = torch.cat(mine), torch.cat(theirs)
            n = int(a.shape[0])
            if name == "kid":
                mean, std, size, subsets = fid_module.kid(a, b, subsets=kid_subsets, subset_size=kid_subset_size,
                                                          seed=seed)
                out[name] = {"value": mean, "std": std, "n": n, "subset_size": size, "subsets": subsets}
            else:
                if n < 2:
                    raise ValueError(f"{name} needs at least 2 images per set, got {n}")
                warning = None
                if n < FID_MIN_IMAGES:
                    warning = (f"FID over n={n} images: FID is biased upwards at small n (use >= "
                               f"{FID_MIN_IMAGES} images); compare only values computed at the same n")
                out[name] = {"value": fid_module.fid_from_features(a, b), "n": n, "warning": warning}
        return out


def _feature_network(name: str) -> str:
    return "inception-torchvision" if name == "fid-torchvision" else "inception-fid"


def _first_user(set_names: tuple[str, ...], network: str) -> str:
    return next(n for n in set_names if _feature_network(n) == network)


def _batch(x: torch.Tensor) -> torch.Tensor:
    import torch

    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    return x.to(torch.float32)
