"""The operator contract: ``Operator`` (any ``A``), ``LinearOperator`` (adjoint, pseudo-inverse, spectral norm) and
``OperatorKind``, the typed name of the task an operator stands for.

Solvers choose per-task hyper-parameters by ``operator.kind`` (an ``OperatorKind``), never by substrings of
``operator.name``; ``name`` stays the user-facing spelling (``"gaussian_blur"``, ``"inpaint"``, ...).
"""

from __future__ import annotations

import enum
import math

import torch

from ..errors import SizeMismatchError
from .linalg import EnergyTolerance, Tridiagonal, conjugate_gradient, lanczos, per_item

#: Seed used for a motion kernel or random mask when the caller passes no generator (reproducible by default).
DEFAULT_SEED = 0


class OperatorKind(enum.Enum):
    """What an operator measures, for per-task defaults; values are stable lower-case keys."""

    DENOISE = "denoise"  # identity
    INPAINT = "inpaint"  # random or free-form mask
    INPAINT_BOX = "inpaint_box"  # the missing pixels fill exactly one axis-aligned rectangle
    SUPERRES = "superres"
    GAUSSIAN_BLUR = "gaussian_blur"
    MOTION_BLUR = "motion_blur"
    KERNEL_BLUR = "kernel_blur"  # a kernel the user gave
    VARYING_BLUR = "varying_blur"  # a grid of kernels across the image (spatially varying blur)
    COLORIZE = "colorize"
    PHASE_RETRIEVAL = "phase_retrieval"
    HDR = "hdr"
    NONLINEAR_BLUR = "nonlinear_blur"  # a learned blur that varies across the image (bkse)
    CT = "ct"  # parallel-beam projections (a sinogram)
    MRI = "mri"  # undersampled multi-coil Cartesian k-space of a complex image


class Operator(torch.nn.Module):
    """A measurement operator built for images of shape ``image_shape = (C, H, W)``.

    ``forward(x)`` maps ``(N, C, H, W)`` to ``(N, *output_shape)``. Nonlinear operators are differentiable.
    ``kind`` is the task it stands for; None on an operator from outside this package (solvers then use their
    defaults).
    """

    linear: bool = False
    name: str = "operator"
    kind: OperatorKind | None = None

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.image_shape: tuple[int, int, int] = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        self.output_shape: tuple[int, int, int] = self.image_shape

    @property
    def fixed_batch_size(self) -> int | None:
        """The batch size the operator is tied to (a batch of inpainting masks, one per image), or None when it
        applies to any batch."""
        return None

    def lipschitz(self) -> float | None:
        """A constant ``L`` with ``||A(x) - A(x')|| <= L ||x - x'||`` for all images, or None if none is known.

        Step-size caps use it where they would otherwise assume ``||A|| <= 1``. The base class knows nothing
        about ``A``, hence None; linear operators return ``norm()``, nonlinear ones their own bound.
        """
        return None

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise SizeMismatchError(
                f"operator '{self.name}' was built for images of shape (N, {', '.join(map(str, self.image_shape))})"
                f" but got {tuple(x.shape)}"
            )

    def _check_output(self, y: torch.Tensor) -> None:
        if y.dim() != 4 or tuple(y.shape[1:]) != self.output_shape:
            raise SizeMismatchError(
                f"operator '{self.name}' expects measurements of shape (N, {', '.join(map(str, self.output_shape))})"
                f" but got {tuple(y.shape)}"
            )

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, output_shape={self.output_shape}"


class LinearOperator(Operator):
    """A linear operator with an exact ``adjoint``, a pseudo-inverse ``pinv`` and its spectral norm ``norm()``.

    The default ``pinv`` runs conjugate gradients on ``A^T A x = A^T y`` from ``x = 0``, which converges
    to the minimum-norm least-squares solution, i.e. ``A^+ y``. The default ``norm`` is a Lanczos estimate from
    products ``A^T A v`` (``estimate_norm``). Subclasses with a closed form override ``pinv`` / ``_spectral_norm``.
    """

    linear = True
    #: True when ``A A^T = c I`` for some ``c > 0`` (rows orthogonal, all of one length), as for the identity and
    #: the luminance map. Then ``(B A)^+ = A^+ B^+`` for any ``B``, which ``Compose`` uses for a closed-form pinv.
    rows_orthonormal_up_to_scale: bool = False
    #: CG budget of the fallback pseudo-inverse (fixed, so results are reproducible and time is bounded).
    cg_max_iter: int = 100
    cg_tol: float = 1e-6
    #: Budget of the fallback norm estimate: fixed seed, step cap and tolerance, so the estimate is the same on
    #: every run and device (up to float rounding). The tolerance is on the relative growth of the estimate of
    #: ``||A||^2``; float32 rounding sits near 1e-7, so asking for less would rarely stop before the cap. Our
    #: operators settle within 60 steps on every test case, up to 64 x 64 (the cap of 100 is not reached).
    norm_max_iter: int = 100
    norm_tol: float = 1e-6
    #: The estimate must have grown by less than ``norm_tol`` over this many steps, not just the last one: when the
    #: start vector holds little of the top singular vector, the estimate rests near the second singular value for
    #: a few steps before it climbs (3 steps for super-resolution x4 of a 12 x 10 image at seed 0).
    norm_window: int = 10
    norm_seed: int = 0

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.cg_pinv(y)

    def lipschitz(self) -> float:
        """For a linear map the best Lipschitz constant is its spectral norm: ``norm()``."""
        return self.norm()

    def norm(self) -> float:
        """The spectral norm ``||A||_2`` (largest singular value), computed on first use and cached.

        Exact where a closed form is cheap (see the subclasses' ``_spectral_norm``); otherwise
        ``estimate_norm()``, which approaches ``||A||`` from below. Cached because it is a property of the matrix:
        moving the operator to another device or dtype does not change it beyond rounding.
        """
        cached = self.__dict__.get("_spectral_norm_cache")
        if cached is None:
            cached = float(self._spectral_norm())
            self.__dict__["_spectral_norm_cache"] = cached
        return cached

    def _spectral_norm(self) -> float:
        return self.estimate_norm()

    def estimate_norm(self, *, max_iter: int | None = None, tol: float | None = None) -> float:
        """``||A||_2`` estimated from products ``A^T A v`` (Lanczos, ``linalg.lanczos``), on the operator's device
        and dtype.

        Lanczos is power iteration that keeps the best combination of all the iterates: ``max_iter`` steps of it
        build the Krylov space of ``A^T A`` from a start vector and return the largest eigenvalue of its
        tridiagonal projection (the top Ritz value). Plain power iteration stalls when the top two singular
        values are close (super-resolution x4 of a 12 x 10 image has 0.31936 and 0.31887: power iteration is still
        0.15 % low after 500 steps, Lanczos is exact after 10). The Ritz value grows monotonically towards
        ``||A||^2`` from below, so up to rounding the estimate never exceeds the norm.

        Deterministic: the start is a standard normal image drawn on the CPU from
        ``torch.Generator().manual_seed(norm_seed)`` (it has a component along the top singular vector with
        probability 1). Stops when the estimate has grown by less than ``tol`` relative over the last
        ``norm_window`` steps, when the Krylov space stops growing (then it is exact), or after ``max_iter`` steps
        (defaults ``norm_max_iter``, ``norm_tol``). Only the two latest vectors are kept, so memory stays at a few
        images. A batch-tied operator is block-diagonal over the batch: every item is run on its own and the
        largest norm is returned.
        """
        max_iter = max(1, self.norm_max_iter if max_iter is None else int(max_iter))
        tol = self.norm_tol if tol is None else float(tol)
        reference = next((b for b in self.buffers() if b.is_floating_point()), None)
        device = reference.device if reference is not None else torch.device("cpu")
        dtype = reference.dtype if reference is not None else torch.float32
        shape = (self.fixed_batch_size or 1, *self.image_shape)
        start = torch.randn(shape, generator=torch.Generator().manual_seed(self.norm_seed))
        history: list[torch.Tensor] = []

        def settled(projection: Tridiagonal) -> bool:
            estimate = projection.top_eigenvalue()
            history.append(estimate)
            if len(history) <= self.norm_window:
                return False
            return bool(((estimate - history[-1 - self.norm_window]).abs() <= tol * estimate).all())

        with torch.no_grad():
            projection = lanczos(lambda v: self.adjoint(self.forward(v)), start.to(device=device, dtype=dtype),
                                 max_iter, stop=settled)
        return math.sqrt(float(projection.top_eigenvalue().max()))

    def gram_diag(self) -> torch.Tensor | None:
        """The diagonal of ``A A^T`` (broadcastable to a measurement) when ``A A^T`` is diagonal, else None."""
        return None

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                   tol: torch.Tensor | float | EnergyTolerance | None = None) -> torch.Tensor:
        """``u = (scale A A^T + shift I)^-1 v`` for measurements ``v`` (``scale`` a number or one per item).

        The measurement-space solve behind exact draws from Gaussian posteriors (perturb-and-solve, used by DAPS):
        elementwise where ``A A^T`` is diagonal (``gram_diag``), otherwise conjugate gradients on the symmetric
        positive definite system, whose condition number is at most ``1 + scale ||A||^2 / shift``; subclasses solve
        exactly where they can (circular blur by FFT, separable operators by Kronecker eigen-solves).
        ``tol``: where the solve iterates, the residual ``||v - (scale A A^T + shift I) u||`` each item must reach,
        relative to its ``||v||``: a number or one per item (shape (N,)) (None: ``gram_cg_tol``); or an absolute
        bound per item on the error's norm in the system's own metric (``linalg.EnergyTolerance``: DAPS's inner
        step, ``inner.solve_tolerance``), so a caller asks for the accuracy it needs; exact solves ignore it.
        Every item stops on its own: its result does not depend on its batch-mates.
        """
        diagonal = self.gram_diag()
        scale = per_item(scale, v)
        if diagonal is not None:
            return v / (scale * diagonal + shift)
        return self._cg_gram_solve(v, scale, shift, tol=tol)

    #: CG budget of ``gram_solve`` (fixed, so results are reproducible and time is bounded) and its default
    #: tolerance on the residual relative to ``||v||``. A caller's tolerance ends most solves well before the budget
    #: (DAPS's, ``solvers.inner.solve_tolerance``). Where it does not, on a reflect blur by a non-separable kernel
    #: early in an annealing (r_t >= 1: a barely regularised deconvolution, condition number up to 1e7), CG
    #: creeps: DAPS fast, 20 steps, on task_overhead.py's 256 px photo at sigma 1/255, 100-263 steps per annealing
    #: step with the 15-px kernel file for the same PSNR (25.053 dB) as with 50; the 61-px motion kernel: 30.170 dB
    #: with a budget of 500, 30.162 with 50 (before the tolerance: 30.153); at 128 px 27.53 against 27.40 (before:
    #: 27.35) at 1.4x the CG steps. So the budget stays 50: no step costs more than before the tolerance existed.
    gram_cg_max_iter: int = 50
    gram_cg_tol: float = 1e-4

    def gram_preconditioner(self, scale: torch.Tensor | float, shift: float):
        """An approximate inverse of ``scale A A^T + shift I`` (a callable on measurements) that makes
        ``gram_solve``'s conjugate gradients converge in a few steps, or None. Blurs give their circulant version."""
        return None

    def _cg_gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *,
                       tol: torch.Tensor | float | EnergyTolerance | None = None) -> torch.Tensor:
        """Preconditioned conjugate gradients (``linalg.conjugate_gradient``), per item, from u = 0."""

        def apply(u: torch.Tensor) -> torch.Tensor:
            return scale * self.forward(self.adjoint(u)) + shift * u

        def shifted(r: torch.Tensor) -> torch.Tensor:
            return r / shift

        precondition = self.gram_preconditioner(scale, shift)
        if precondition is None and isinstance(tol, EnergyTolerance):
            # P = shift I <= M: the same iterates as none, and r^T P^-1 r bounds the error's M-norm from above
            precondition = shifted
        return conjugate_gradient(apply, v, max_iter=self.gram_cg_max_iter,
                                  tol=self.gram_cg_tol if tol is None else tol, precondition=precondition)

    def cg_pinv(self, y: torch.Tensor, *, max_iter: int | None = None, tol: float | None = None) -> torch.Tensor:
        """``min ||A x - y||`` per batch item by conjugate gradients on the normal equations ``A^T A x = A^T y``
        from ``x = 0`` (which converges to the minimum-norm solution); an item stops when its normal residual
        ``||A^T r||`` has fallen below ``tol`` times its start value, the run after ``max_iter`` iterations."""
        max_iter = self.cg_max_iter if max_iter is None else int(max_iter)
        tol = self.cg_tol if tol is None else float(tol)
        return conjugate_gradient(lambda x: self.adjoint(self.forward(x)), self.adjoint(y), max_iter=max_iter,
                                  tol=tol)
