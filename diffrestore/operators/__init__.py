"""Measurement operators ``y = A(x)`` and noise models ``y ~ p(y | A(x))``.

Conventions (docs/architecture.md):
- Images are ``(N, C, H, W)`` float32 tensors in [-1, 1] ("tensor units"); users talk in [0, 1] intensity.
- Every operator is a ``torch.nn.Module``; masks, kernels and index tables are registered buffers, so
  ``op.to(device, dtype)`` moves them. Operators are built for one image shape ``(C, H, W)``.
- ``op.kind`` (an ``OperatorKind``) says which task an operator stands for; solvers pick per-task settings by it.
- Linear operators have an exact ``adjoint`` (tested: ``<A x, y> = <x, A^T y>``), a ``pinv`` (the Moore-Penrose
  pseudo-inverse: closed form for identity, inpainting, box super-resolution, colorization and circular blur;
  Kronecker eigen-solves for bicubic super-resolution and separable reflect / replicate blur; otherwise a batched
  conjugate-gradient solve of the normal equations, CGLS), ``gram_solve`` ((s A A^T + t I)^-1, exact wherever pinv
  has a closed form or a Kronecker solve) and ``norm()``, the spectral norm (closed form where cheap, else power
  iteration). Every operator has ``lipschitz()``, a bound or None.
- ``Compose(outer, inner)`` chains two operators, e.g. a grey task on an RGB prior's images.
- Random things (motion kernels, random masks, noise) come only from a passed ``torch.Generator``; a motion
  kernel is drawn once, at construction, and never redrawn per call.

Modules: ``base`` (contracts, kinds), ``compose``, ``identity``, ``inpaint``, ``resample`` (super-resolution),
``blur`` and ``kernels``, ``kronecker`` (exact solves for separable operators), ``colour``, ``nonlinear`` (phase
retrieval, HDR), ``radon`` (parallel-beam CT: exact adjoint, FBP, SART, TV), ``factory`` (by name), ``noise``
(with ``TransmissionNoise``, CT's photon counts), ``mri`` (multi-coil Cartesian k-space: exact adjoint, exact
Gram solves for line masks, zero-filled and RSS images) with ``mri_masks`` (line and Poisson-disc masks).
"""

from .base import DEFAULT_SEED, LinearOperator, Operator, OperatorKind
from .blur import BLUR_BOUNDARIES, BlurOperator
from .colour import BT601_WEIGHTS, Colorize
from .compose import Compose
from .factory import OPERATOR_NAMES, build_operator, image_shape_for_measurement
from .identity import Identity
from .inpaint import Inpaint, box_mask, random_mask
from .kernels import gaussian_kernel, motion_blur_kernel
from .mri import MultiCoilMRI
from .mri_masks import KSpaceMask
from .noise import (
    NOISE_NAMES,
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonNoise,
    Problem,
    TransmissionNoise,
    build_noise,
    paper_sigma_to_unit,
    simulate,
)
from .nonlinear import HighDynamicRange, PhaseRetrieval
from .radon import FBP_FILTERS, ParallelBeamCT, sparse_view_index, to_full_views, to_sparse_views, view_angles
from .resample import SR_KERNELS, SuperResolution

__all__ = [
    "BLUR_BOUNDARIES",
    "BT601_WEIGHTS",
    "DEFAULT_SEED",
    "FBP_FILTERS",
    "NOISE_NAMES",
    "OPERATOR_NAMES",
    "SR_KERNELS",
    "BlurOperator",
    "Colorize",
    "Compose",
    "GaussianNoise",
    "HighDynamicRange",
    "Identity",
    "Inpaint",
    "KSpaceMask",
    "LinearOperator",
    "MultiCoilMRI",
    "NoNoise",
    "NoiseModel",
    "Operator",
    "OperatorKind",
    "ParallelBeamCT",
    "PhaseRetrieval",
    "PoissonNoise",
    "Problem",
    "SuperResolution",
    "TransmissionNoise",
    "box_mask",
    "build_noise",
    "build_operator",
    "gaussian_kernel",
    "image_shape_for_measurement",
    "motion_blur_kernel",
    "paper_sigma_to_unit",
    "random_mask",
    "simulate",
    "sparse_view_index",
    "to_full_views",
    "to_sparse_views",
    "view_angles",
]
