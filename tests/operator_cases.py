"""The one table of operator test cases that every parametrised invariant runs over (adjointness, pinv, shapes,
norms, kinds, device moves), and the small helpers that build them.

A case is ``(name, params)``: ``name`` is a ``build_operator`` name and ``params`` its parameters, or ``name`` is
``"compose"`` and ``params`` holds ``outer`` and ``inner`` cases (the outer one is built for the inner one's output).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffrestore.operators import OPERATOR_NAMES, Compose, Operator, build_operator
from diffrestore.operators.bkse import BkseGenerator

# A small, asymmetric, even-sized kernel: catches flips and off-by-one centring that a symmetric one hides.
ASYM_KERNEL = torch.tensor([[0.0, 1.0, 2.0, 0.5], [3.0, 0.2, 0.0, 1.0], [0.0, 0.0, 4.0, 0.1]])
# Well-conditioned (spectrum >= 0.2): its pseudo-inverse is a meaningful number to compare with a dense reference.
MILD_KERNEL = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])



def tiny_bkse_generator(seed: int = 0) -> BkseGenerator:
    """bkse's generator at test size (4 features, one block each side, code of 32 channels), weights N(0, 0.05^2)
    from ``seed``: the structure of GOPRO_wVAE.pth in a few thousand weights."""
    network = BkseGenerator(features=4, front_blocks=1, back_blocks=1, tail=8)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return network


# Every operator name needs at least one entry (checked in test_operators).
VARIANTS: dict[str, list[dict]] = {
    "identity": [{}],
    "inpaint": [{}, {"fraction": 0.7}, {"box": (2, 3, 5, 4)}],
    "sr": [
        {"factor": 2},
        {"factor": 3},
        {"factor": 4},
        {"factor": 8},
        {"factor": 3, "kernel": "box"},
        {"factor": 4, "kernel": "box"},
    ],
    "gaussian_blur": [{}, {"kernel_size": 7, "sigma": 1.5, "boundary": "circular"}, {"boundary": "replicate"}],
    "motion_blur": [{}, {"boundary": "circular"}],
    "kernel_blur": [
        {"kernel": ASYM_KERNEL},
        {"kernel": ASYM_KERNEL, "boundary": "circular"},
        {"kernel": ASYM_KERNEL, "boundary": "replicate"},
    ],
    "varying_blur": [
        {"kernels": torch.stack([torch.stack([ASYM_KERNEL, ASYM_KERNEL.flip(0, 1) + 0.1])])},
        {"field": "shake", "grid": 2, "kernel_size": 5},
        {"field": "defocus", "grid": 3, "kernel_size": 5, "boundary": "circular"},
    ],
    "colorize": [{}],
    "phase_retrieval": [{}, {"oversampling": 1.5}],
    "hdr": [{}, {"scale": 3.0}],
    "bkse": [{"weights": tiny_bkse_generator()}],  # its code drawn from the seed; sides padded to 128
    # sparse views (default 30), a few irregular angles, and a detector narrower than the diagonal
    "ct": [{}, {"angles_deg": (0.0, 17.0, 61.5, 90.0, 133.0)}, {"views": 7, "detectors": 15}],
    # complex images (2 channels, see case_shape): single coil (A A^T diagonal), line masks with several coils
    # (exact per-line solves), and a 2-D Poisson-disc mask with coils (conjugate gradients)
    "mri": [
        {},
        {"sampling": "equispaced", "acceleration": 3, "coils": 4},
        {"sampling": "gaussian", "acceleration": 2, "center_fraction": 0.2, "coils": 2},
        {"sampling": "poisson", "acceleration": 2.5, "coils": 3},
    ],
}
# A grey task seen by an RGB prior: the grey operator applied after the luminance map.
COMPOSITES: list[dict] = [
    {"outer": ("inpaint", {"fraction": 0.5}), "inner": ("colorize", {})},
    {"outer": ("inpaint", {}), "inner": ("colorize", {})},
    {"outer": ("sr", {"factor": 2}), "inner": ("colorize", {})},
    {"outer": ("sr", {"factor": 3, "kernel": "box"}), "inner": ("colorize", {})},
    {"outer": ("motion_blur", {}), "inner": ("colorize", {})},
    # Inner rows not orthogonal: the pinv falls back to CGLS on the whole chain.
    {"outer": ("colorize", {}), "inner": ("gaussian_blur", {})},
    {"outer": ("hdr", {}), "inner": ("colorize", {})},
]
NONLINEAR = {"phase_retrieval", "hdr", "bkse"}
# Operators whose pinv is exact by construction; the others (CGLS, or a thresholded spectrum) are regularised.
CLOSED_FORM = {"identity", "inpaint", "colorize"}
# A A^T = c I: a composite with one of these inside has pinv inner^+ outer^+, as exact as the outer one's.
ROWS_ORTHONORMAL = {"identity", "colorize"}
# Odd, non-square, with batch 1 and batch > 1; three channels, so the colorize cases run too.
SHAPES = [(1, 3, 17, 23), (2, 3, 31, 20)]


def case_id(name: str, params: dict) -> str:
    if name == "compose":
        return f"{case_id(*params['outer'])}-after-{case_id(*params['inner'])}"
    shown = {k: ("tensor" if isinstance(v, torch.Tensor) else "network" if isinstance(v, torch.nn.Module) else v)
             for k, v in params.items()}
    return name + "".join(f"-{k}={v}" for k, v in shown.items())


def is_linear(name: str, params: dict) -> bool:
    if name == "compose":
        return is_linear(*params["outer"]) and is_linear(*params["inner"])
    return name not in NONLINEAR


def pinv_is_exact(name: str, params: dict) -> bool:
    if name == "compose":
        return params["inner"][0] in ROWS_ORTHONORMAL and pinv_is_exact(*params["outer"])
    if name == "mri":  # single coil: the adjoint. Several coils: eigen-solves (line masks) or CGLS, both limited by
        # float32 and the conditioning of A^H A (checked against the dense pinv in test_mri.py)
        return params.get("coils", 1) == 1
    return name in CLOSED_FORM or params.get("kernel") == "box"


def needs_rgb(name: str, params: dict) -> bool:
    # Every part here keeps the channel count or is the luminance map, so a composite needs RGB if a part does.
    if name == "compose":
        return needs_rgb(*params["outer"]) or needs_rgb(*params["inner"])
    return name == "colorize"


def case_shape(name: str, params: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` ((C, H, W) or (N, C, H, W)) with the channel count the case's operator takes: MRI's images are
    complex, 2 channels (real, imaginary), whatever the shared shapes hold; every other operator keeps ``shape``
    (colorize's 3 channels are the shared shapes' own)."""
    if name == "compose":
        return case_shape(*params["inner"], shape)
    if name == "mri":
        return (*shape[:-3], 2, *shape[-2:])
    return tuple(shape)


def _param(name: str, params: dict):
    return pytest.param(name, params, id=case_id(name, params))


CASES = [_param(name, params) for name in OPERATOR_NAMES for params in VARIANTS.get(name, [])]
CASES += [_param("compose", params) for params in COMPOSITES]
LINEAR_CASES = [case for case in CASES if is_linear(*case.values)]
NONLINEAR_CASES = [case for case in CASES if not is_linear(*case.values)]


def build_case(name: str, params: dict, shape: tuple[int, ...], seed: int = 0) -> Operator:
    """The case's operator for images of ``shape = (N, C, H, W)``; random parts drawn from ``seed``."""
    if name == "compose":
        inner = build_case(*params["inner"], shape, seed)
        outer = build_case(*params["outer"], (shape[0], *inner.output_shape), seed)
        return Compose(outer, inner)
    return build_operator(name, tuple(shape[1:]), generator=torch.Generator().manual_seed(seed), **params)


def randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def expected_output_shape(name: str, params: dict, shape: tuple[int, int, int, int]) -> tuple[int, ...]:
    """Written from the documentation, not read from the operator."""
    if name == "compose":
        return expected_output_shape(*params["outer"], expected_output_shape(*params["inner"], shape))
    n, c, h, w = shape
    if name == "sr":
        f = params["factor"]
        return (n, c, -(-h // f), -(-w // f))
    if name == "colorize":
        return (n, 1, h, w)
    if name == "phase_retrieval":
        s = params.get("oversampling", 2.0)
        return (n, c, math.ceil(s * h), math.ceil(s * w))
    if name == "ct":  # (detectors, views): the diagonal of the padded square by default
        views = len(params["angles_deg"]) if "angles_deg" in params else params.get("views", 30)
        return (n, c, params.get("detectors", math.ceil(math.sqrt(2) * max(h, w))), views)
    if name == "mri":  # every coil's k-space on the full grid, (real, imaginary) per coil
        return (n, 2 * params.get("coils", 1), h, w)
    return shape


def dense_matrix(op: Operator, shape: tuple[int, int, int]) -> torch.Tensor:
    """The operator as a float64 matrix, built by applying it to every basis image (moves ``op`` to float64)."""
    basis = torch.eye(math.prod(shape), dtype=torch.float64).view(-1, *shape)
    return op.to(torch.float64)(basis).flatten(1).T
