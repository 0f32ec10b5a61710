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


@dataclasses.dataclass(frozen=True)
class EnergyTolerance:
    """A stopping rule for ``conjugate_gradient`` in the norm CG minimises: each item stops once the M-norm of its
    error, ||e_k||_M = ||u_k - M^-1 rhs||_M, is at most ``bound`` (absolute; a number or one per item, shape (N,)),
    by either of two estimates CG has at hand (no extra product):

    - sqrt(r_k^T P^-1 r_k) (r_k the residual, P the preconditioner): exact where P = M, a bound from above where
      P <= M (e.g. P = shift I for M = scale A A^T + shift I), low where P exceeds M in directions the error still
      holds; it stops the easy solves at once;
    - the Hestenes-Stiefel sum over the last ``delay`` steps, ||e_k||_M^2 - ||e_{k+d}||_M^2 = sum_{j=k}^{k+d-1}
      alpha_j r_j^T P^-1 r_j (exact in exact arithmetic; Strakos & Tichy, ETNA 13, 2002): a bound from below on
      ||e_k||_M^2, whose iterate k + d is returned (CG's M-norm error only falls). It stops the solves where P is
      far from M in directions that matter little (the first estimate is then far too high), and errs low only
      where CG stagnates over ``delay`` steps.

    Callers whose accuracy is a bound on a linear image of u use it: DAPS's inner step moves x0 by r^2 A^T e for an
    error e in u, and ||r^2 A^T e|| <= r ||e||_M (``solvers.inner.solve_tolerance``)."""

    bound: torch.Tensor | float
    delay: int = 10


def conjugate_gradient(matvec: Matvec | MatvecWithImage, rhs: torch.Tensor, *, max_iter: int,
                       tol: torch.Tensor | float | EnergyTolerance = 0.0, start: torch.Tensor | None = None,
                       precondition: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The solution u of M u = rhs per batch item, by (preconditioned) conjugate gradients from ``start`` (None: 0).

    An item stops once its residual is at most ``tol`` times ||rhs|| (``tol`` a number or one per item, shape
    (N,); 0: it runs ``max_iter`` steps), or, for an ``EnergyTolerance``, once its estimated error in M's norm is
    at most that bound; or when it meets a direction of non-positive curvature (a learned Jacobian need not be
    positive definite): its step is 0 from then on. It also stops at rounding level (``ROUNDING_FLOOR`` eps
    ||rhs||): beyond it the updated residual is rounding noise, and for normal equations (``cg_pinv``) steps along
    it run into A's null space, where the curvature is noise too and the solution blows up. The loop ends when no
    item moves, so ``max_iter`` bounds the products.
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
    floor = ROUNDING_FLOOR * torch.finfo(rhs.dtype).eps
    energy, delay = None, 0  # the squared bound on the error's M-norm per item; the Hestenes-Stiefel delay
    recent: list[torch.Tensor] = []  # alpha_j r_j^T z_j of the last ``delay`` steps: their sum estimates ||e||_M^2
    if isinstance(tol, EnergyTolerance):
        energy, relative = _per_item(tol.bound, rhs) ** 2, torch.tensor(floor, dtype=rhs.dtype, device=rhs.device)
        delay = int(tol.delay)
    else:
        relative = _per_item(tol, rhs).clamp_min(floor)
    threshold = relative**2 * batch_dot(rhs, rhs)
    active = torch.ones_like(rz, dtype=torch.bool)
    for _ in range(int(max_iter)):
        active = active & (batch_dot(residual, residual) > threshold)
        if energy is not None:
            active = active & (rz > energy)
            if delay and len(recent) == delay:
                active = active & (torch.stack(recent).sum(dim=0) > energy)
        if not bool(active.any()):
            break
        product, image = _split(matvec(direction), direction)
        curvature = batch_dot(direction, product)
        active = active & (curvature > 0) & (rz > 0)
        alpha = _safe_ratio(rz, curvature, active)
        if delay:
            recent = [*recent[1 - delay:], alpha * rz] if delay > 1 else [alpha * rz]
        solution = solution + _scaled(alpha, image) * image
        residual = residual - _scaled(alpha, product) * product
        z = precondition(residual)
        rz_next = batch_dot(residual, z)
        beta = _safe_ratio(rz_next, rz, active)
        direction, rz = z + _scaled(beta, direction) * direction, rz_next
    return solution


def _per_item(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A number or one value per item as a (N,) or (1,) tensor in ``like``'s dtype and device."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)


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


__all__ = [
    "EnergyTolerance", "Matvec", "MatvecWithImage", "Tridiagonal", "batch_dot", "conjugate_gradient", "lanczos",
    "per_item",
]
