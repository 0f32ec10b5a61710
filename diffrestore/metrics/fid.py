"""Set-level metrics: FID (Heusel et al. 2017, arXiv:1706.08500) and KID (Binkowski et al. 2018,
arXiv:1801.01401) from Inception features, and the feature extractor that feeds them.

FID fits a Gaussian to each set's features and takes the Frechet distance between them:

    FID = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)

The trace of the matrix square root is computed from the eigenvalues of the symmetric positive semi-definite
matrix S_1^1/2 S_2 S_1^1/2 (the same trace as (S_1 S_2)^1/2, without the complex round-off a general sqrtm
meets on a non-symmetric product). FID is biased upwards at small n, by an amount that depends on n.

KID is the squared maximum mean discrepancy with the kernel k(a, b) = (a.b / d + 1)^3, estimated without bias
on random subsets and averaged over them: at small n it is the fairer of the two (its expectation does not
depend on n).

Precision: the statistics are computed in float64 on the CPU. This is the one place the package uses float64
at run time (DESIGN keeps it out of restoration, where MPS has none): FID subtracts traces of 2048x2048
matrices of size ~1e2-1e3 to get values of ~1, so float32's 7 digits leave an error of the order of the
result; the reference implementations compute in float64 too. The features themselves stay float32 and come
to the CPU first, so no accelerator needs float64.

Resize modes for the network input (``RESIZE_MODES``):
- ``bilinear`` (default): ``F.interpolate(..., 299, mode="bilinear", align_corners=False)`` on float images,
  as pytorch-fid and DAPS's FID script do; the default because it is the most used pipeline on tensors, the
  one whose numbers papers in this field report, and it needs no quantisation;
- ``tf1``: torch-fidelity's pipeline, close to the original TensorFlow code: images quantised to 8 bits,
  TF1's bilinear resize (no half-pixel centres), then (v - 128) / 128;
- ``none``: no resizing (the network is fully convolutional; sides must be >= 75 pixels).
Different modes change FID by up to several points on the same images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .inception import FEATURES, MIN_SIDE, UNUSED_KEYS, inception_features
from .networks import load_checked, read_weights, weight_file

if TYPE_CHECKING:
    import torch
    from torch import nn

RESIZE_MODES = ("bilinear", "tf1", "none")
DEFAULT_RESIZE = "bilinear"
INPUT_SIZE = 299
#: feature network -> (registry model, file, Inception variant)
EXTRACTORS = {
    "inception-fid": ("inception-fid", "pt_inception-2015-12-05-6726825d.pth", "fid"),
    "inception-torchvision": ("inception-v3-imagenet", "inception_v3_google-0cc3c7bd.pth", "torchvision"),
}
#: images per forward pass: bounds memory at 299x299 (about 0.35 GB of activations per 32 images)
CHUNK = 32


# ------------------------------------------------------------------------------------------ statistics ----
def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (float64, CPU) of features (n, d), n >= 2."""
    import torch

    f = features.detach().to("cpu", torch.float64)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape (n >= 2, d), got {tuple(f.shape)}")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    import torch

    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """The Frechet distance between N(mu1, cov1) and N(mu2, cov2)."""
    import torch

    mu1, mu2, cov1, cov2 = (t.to("cpu", torch.float64) for t in (mu1, mu2, cov1, cov2))
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    # eigenvalues of a PSD matrix; round-off can make tiny ones negative, which contribute nothing
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_root
    return float(value.clamp_min(0))


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets (n_a, d) and (n_b, d).

    With fewer images than feature dimensions the covariances have rank < n, and the trace term has a
    small exact form: with centred features C_a, C_b and k = (n_a - 1)(n_b - 1), S_a S_b has the nonzero
    eigenvalues of (C_a C_b^T)(C_a C_b^T)^T / k, so tr (S_a^1/2 S_b S_a^1/2)^1/2 = |C_a C_b^T|_* / sqrt(k)
    (the sum of singular values of an n_a x n_b matrix instead of two d x d eigendecompositions).
    """
    import torch

    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"need two feature sets (n >= 2, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    if max(a.shape[0], b.shape[0]) >= a.shape[1]:
        return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    fa, fb = (t.detach().to("cpu", torch.float64) for t in (a, b))
    ca, cb = fa - fa.mean(dim=0), fb - fb.mean(dim=0)
    k = (fa.shape[0] - 1) * (fb.shape[0] - 1)
    trace_root = torch.linalg.svdvals(ca @ cb.T).sum() / k**0.5
    traces = ca.pow(2).sum() / (fa.shape[0] - 1) + cb.pow(2).sum() / (fb.shape[0] - 1)
    value = (fa.mean(dim=0) - fb.mean(dim=0)).pow(2).sum() + traces - 2 * trace_root
    return float(value.clamp_min(0))


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def _mmd2_unbiased(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    m = k_xx.shape[0]
    # the diagonals k(x_i, x_i) are left out: that is what removes the bias
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.mean()


#: up to this many rows per set, the kernel matrices are computed once and subsets index them (at most
#: 3 x 5000^2 float64 = 600 MB); beyond it, each subset computes its own
_KERNEL_ONCE = 5000


def kid(a: torch.Tensor, b: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int, int]:
    """KID between feature sets a and b: (mean, standard deviation over subsets, subset size, subsets).

    Each subset draws ``min(subset_size, n_a, n_b)`` rows of each set without replacement, from a CPU
    generator seeded with ``seed`` (the value is reproducible). Needs at least 2 rows per set.
    """
    import torch

    a = a.detach().to("cpu", torch.float64)
    b = b.detach().to("cpu", torch.float64)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {a.shape[0]} and {b.shape[0]}")
    if subsets < 1:
        raise ValueError(f"KID needs at least one subset, got {subsets}")
    once = max(a.shape[0], b.shape[0]) <= _KERNEL_ONCE
    if once:
        k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i = torch.randperm(a.shape[0], generator=generator)[:m]
        j = torch.randperm(b.shape[0], generator=generator)[:m]
        if once:
            values.append(_mmd2_unbiased(k_aa[i][:, i], k_bb[j][:, j], k_ab[i][:, j]))
        else:
            x, y = a[i], b[j]
            values.append(_mmd2_unbiased(_polynomial_kernel(x, x), _polynomial_kernel(y, y),
                                         _polynomial_kernel(x, y)))
    stacked = torch.stack(values)
    std = float(stacked.std()) if subsets > 1 else 0.0
    return float(stacked.mean()), std, m, subsets


# ------------------------------------------------------------------------------------------- the input ----
def _tf1_resize_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """TF1 ``resize_bilinear`` along one axis: source coordinate = output index * (in / out), no half-pixel
    shift, the last source pixel repeated past the edge."""
    import torch

    n_in = x.shape[dim]
    position = torch.arange(size, dtype=torch.float32, device=x.device) * (n_in / size)
    low = position.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    shape = [1] * x.dim()
    shape[dim] = size
    frac = (position - low.to(torch.float32)).view(shape)
    return x.index_select(dim, low) * (1 - frac) + x.index_select(dim, high) * frac


def prepare_input(x: torch.Tensor, resize: str = DEFAULT_RESIZE) -> torch.Tensor:
    """Images in [-1, 1] (N, 1 or 3, H, W) -> the network's input in [-1, 1], (N, 3, 299, 299) unless
    ``resize="none"``. Grey images are repeated to RGB; values are clamped to [-1, 1] first."""
    import torch
    import torch.nn.functional as F

    if resize not in RESIZE_MODES:
        raise UsageError(f"unknown FID resize mode '{resize}' (valid: {', '.join(RESIZE_MODES)})")
    x = x.to(torch.float32).clamp(-1.0, 1.0)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise UsageError(f"FID and KID need grey or RGB images, got {x.shape[1]} channels")
    if resize == "bilinear":
        # the reference pipelines resize [0, 1] images and then map them to [-1, 1]: the same thing, as
        # bilinear weights sum to one
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    if resize == "tf1":
        levels = ((x + 1) * 127.5).round()  # the 8-bit image the reference reads from a file
        levels = _tf1_resize_axis(_tf1_resize_axis(levels, INPUT_SIZE, 2), INPUT_SIZE, 3)
        return (levels - 128) / 128
    if min(x.shape[-2:]) < MIN_SIDE:
        raise UsageError(f"FID without resizing needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                         f"{x.shape[-1]}x{x.shape[-2]}", hint="use the bilinear resize mode")
    return x


def _extractor_class() -> type:
    import torch

    class Extractor:
        """Images in [-1, 1] -> pool3 features (N, 2048), float32, computed in chunks without gradients."""

        def __init__(self, network: nn.Module, resize: str = DEFAULT_RESIZE) -> None:
            self.network = network
            self.resize = resize
            self.device = next(network.parameters()).device

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            out = []
            with torch.no_grad():
                for chunk in x.split(CHUNK):
                    out.append(self.network(prepare_input(chunk.to(self.device), self.resize)).float())
            return torch.cat(out) if out else torch.zeros(0, FEATURES)

    return Extractor


def make_extractor(network: nn.Module, resize: str = DEFAULT_RESIZE) -> Any:
    """A feature extractor around an Inception network already in memory."""
    if resize not in RESIZE_MODES:
        raise UsageError(f"unknown FID resize mode '{resize}' (valid: {', '.join(RESIZE_MODES)})")
    return _extractor_class()(network.eval(), resize)


def load_extractor(network: str, *, registry: Any = None, device: str = "cpu",
                   resize: str = DEFAULT_RESIZE) -> Any:
    """The feature extractor ``network`` ("inception-fid" or "inception-torchvision"), weights from the registry."""
    model, file_name, variant = EXTRACTORS[network]
    path = weight_file(model, file_name, registry=registry)
    module = load_checked(inception_features(variant), read_weights(path), path, unused=UNUSED_KEYS[variant])
    return make_extractor(module.to(device), resize)
