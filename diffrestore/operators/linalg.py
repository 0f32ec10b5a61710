"""Batched Krylov methods for the operators and the solvers: conjugate gradients (``conjugate_gradient``) for
symmetric positive definite systems given by their products, and Lanczos tridiagonalisation (``lanczos``) for a
spectral norm (``Tridiagonal.top_eigenvalue``) or a matrix square root (``Tridiagonal.root_times_start``).

Every batch item (dim 0) is its own system: the scalars are one per item, shape (N,), and an item that has
converged, or broken down, stops moving while the others go on, so its result does not depend on its batch.
Everything runs in the vectors' own dtype (float32 at run time: some accelerators have no float64); the small
tridiagonal eigenproblems run on the CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

#: v -> M v for a symmetric matrix M given only by its products (one batch item per row of dim 0)
Matvec = Callable[[torch.Tensor], torch.Tensor]
#: v -> (M v, L v): the product and, computed on the way, a linear image of v (see ``conjugate_gradient``)
MatvecWithImage = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


#: the smallest relative residual ``conjugate_gradient`` iterates towards, in units of the dtype's eps
ROUNDING_FLOOR = 10.0


def per_item(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """A number, or one value per batch item shaped (N, 1, ..., 1) to broadcast against ``like``."""
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.to(like.device, like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
    return float(value)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a_i, b_i> for every batch item i, shape (N,)."""
    return (a * b).flatten(1).sum(dim=1)


def _scaled(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """numerator / denominator where ``where`` holds, else 0 (no division by a zero or negative denominator)."""
    return torch.where(where, numerator / denominator.where(where, torch.ones_like(denominator)),
                       torch.zeros_like(numerator))


def conjugate_gradient(matvec: Matvec | MatvecWithImage, rhs: torch.Tensor, *, max_iter: int, tol: float = 0.0,
                       start: torch.Tensor | None = None,
                       precondition: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The solution u of M u = rhs per batch item, by (preconditioned) conjugate gradients from ``start`` (None: 0).

    An item stops once its residual is at most ``tol`` times ||rhs|| (``tol`` 0: it runs ``max_iter`` steps), or
    when it meets a direction of non-positive curvature (a learned Jacobian need not be positive definite): its
    step is 0 from then on. It also stops at rounding level (``ROUNDING_FLOOR`` eps ||rhs||): beyond it the updated
    residual is rounding noise, and for normal equations (``cg_pinv``) steps along it run into A's null space,
    where the curvature is noise too and the solution blows up. The loop ends when no item moves, so ``max_iter``
    bounds the products.
    ``precondition``: an approximate inverse of M (symmetric positive definite) applied to residuals.

    When ``matvec`` returns a pair (M p, L p) for a linear map L that the product computes on the way (e.g. the
    Tweedie step's M = A C A^T + tau^2 I gives C A^T p), the iteration carries L u along and returns it instead of
    u, without another product; ``start`` is then required.
    """
    precondition = precondition or (lambda r: r)
    if start is None:
        solution, residual = torch.zeros_like(rhs), rhs.clone()
    else:
        product, solution = _split(matvec(start), start)
        residual = rhs - product
    z = precondition(residual)
    direction, rz = z, batch_dot(residual, z)
    threshold = max(float(tol), ROUNDING_FLOOR * torch.finfo(rhs.dtype).eps) ** 2 * batch_dot(rhs, rhs)
    active = torch.ones_like(rz, dtype=torch.bool)
    for _ in range(int(max_iter)):
        active = active & (batch_dot(residual, residual) > threshold)
        if not bool(active.any()):
            break
        product, image = _split(matvec(direction), direction)
        curvature = batch_dot(direction, product)
        active = active & (curvature > 0) & (rz > 0)
        alpha = _safe_ratio(rz, curvature, active)
        solution = solution + _scaled(alpha, image) * image
        residual = residual - _scaled(alpha, product) * product
        z = precondition(residual)
        rz_next = batch_dot(residual, z)
        beta = _safe_ratio(rz_next, rz, active)
        direction, rz = z + _scaled(beta, direction) * direction, rz_next
    return solution


def _split(out: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
           argument: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M p, L p) from a matvec's output; L is the identity when it returns M p alone."""
    return out if isinstance(out, tuple) else (out, argument)


@dataclasses.dataclass
class Tridiagonal:
    """Lanczos's projection T = Q^T M Q onto the Krylov space of a start vector b, per batch item: ``alphas``
    (N, k) on its diagonal and ``betas`` (N, k - 1) beside it (on the CPU), ``basis`` Q (k unit vectors shaped
    like b, kept when the run re-orthogonalised), and ``start_norm`` ||b|| (N,)."""

    alphas: torch.Tensor
    betas: torch.Tensor
    start_norm: torch.Tensor
    basis: list[torch.Tensor] | None = None

    def matrix(self) -> torch.Tensor:
        """T as dense (N, k, k) matrices on the CPU."""
        t = torch.diag_embed(self.alphas)
        if self.betas.shape[-1]:
            t = t + torch.diag_embed(self.betas, offset=1) + torch.diag_embed(self.betas, offset=-1)
        return t

    def top_eigenvalue(self) -> torch.Tensor:
        """T's largest eigenvalue (the top Ritz value) per item, clamped at 0: it approaches M's largest from
        below as the space grows."""
        return torch.linalg.eigvalsh(self.matrix())[:, -1].clamp_min(0)

    def root_times_start(self) -> torch.Tensor:
        """M^(1/2) b ~ ||b|| Q T^(1/2) e_1 (needs the basis), T's eigenvalues clamped at 0 (a learned Jacobian is
        only nearly positive). Exact once the space holds every distinct eigenvalue."""
        if self.basis is None:
            raise ValueError("the square root needs the Lanczos basis: run lanczos(..., reorthogonalise=True)")
        values, vectors = torch.linalg.eigh(self.matrix())
        root_e1 = vectors @ (values.clamp_min(0.0).sqrt().unsqueeze(-1) * vectors[:, 0, :].unsqueeze(-1))
        like = self.basis[0]
        coefficients = (self.start_norm.unsqueeze(-1) * root_e1.squeeze(-1)).to(like.device, like.dtype)
        out = torch.zeros_like(like)
        for i, q in enumerate(self.basis):
            out = out + _scaled(coefficients[:, i], q) * q
        return out


def lanczos(matvec: Matvec, start: torch.Tensor, max_steps: int, *, reorthogonalise: bool = False,
            stop: Callable[[Tridiagonal], bool] | None = None) -> Tridiagonal:
    """Up to ``max_steps`` Lanczos steps (one product each) on the symmetric M from ``start``, per batch item.

    Without ``reorthogonalise`` only the three-term recurrence runs and two vectors are kept (memory of a few
    vectors): rounding then adds copies of eigenvalues already found, which leaves the largest one where it is,
    enough for a norm. With it every new vector is orthogonalised twice against the whole basis (float32 needs
    the second pass), which is kept: for square roots, over few steps. ``stop(T)``, asked after every step, ends
    the run early when true. An item whose Krylov space stops growing (the new direction is rounding noise) gets
    a zero direction: its block of T is finished and exact. The run ends when no item's space grows.
    """
    norm0 = batch_dot(start, start).sqrt().clamp_min(torch.finfo(start.dtype).tiny)
    q = start / _scaled(norm0, start)
    q_previous, beta = torch.zeros_like(q), torch.zeros_like(norm0)
    basis = [q] if reorthogonalise else None
    breakdown = 100 * torch.finfo(start.dtype).eps
    scale = torch.zeros_like(norm0)  # the largest entry of T so far: the size the breakdown test is relative to
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []

    def projection() -> Tridiagonal:
        off = torch.stack(betas, dim=-1) if betas else torch.zeros(len(norm0), 0)
        return Tridiagonal(torch.stack(alphas, dim=-1), off, norm0.cpu(), basis)

    steps = max(1, int(max_steps))
    for step in range(steps):
        w = matvec(q)
        alpha = batch_dot(q, w)
        alphas.append(alpha.cpu())
        if basis is not None:
            for _ in range(2):
                for v in basis:
                    w = w - _scaled(batch_dot(v, w), w) * v
        else:
            w = w - _scaled(alpha, w) * q - _scaled(beta, w) * q_previous
        if step == steps - 1 or (stop is not None and stop(projection())):
            break
        scale = torch.maximum(scale, torch.maximum(alpha.abs(), beta))
        beta = batch_dot(w, w).sqrt()
        grows = beta > breakdown * scale
        if not bool(grows.any()):
            break
        beta = torch.where(grows, beta, torch.zeros_like(beta))
        betas.append(beta.cpu())
        q_previous, q = q, w * _scaled(_safe_ratio(torch.ones_like(beta), beta, grows), w)
        if basis is not None:
            basis.append(q)
    return projection()


__all__ = ["Matvec", "MatvecWithImage", "Tridiagonal", "batch_dot", "conjugate_gradient", "lanczos", "per_item"]
