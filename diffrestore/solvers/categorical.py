"""Categorical sampling for solvers on discrete (VQ token) priors, the pieces G2D2 (arXiv 2410.14710) is built
from: Gumbel-max draws, the Gumbel-softmax relaxation, nucleus truncation, and the star-shaped process's
re-masking step. Every random number comes from the caller's generators, one per batch item (``base.rand``), so an
item's tokens do not depend on the others.

Shapes: log-probabilities (N, K, L) over K codes for L tokens (the prior's ``log_p0`` layout); token ids (N, L).
"""

from __future__ import annotations

import torch

from .base import Generators, rand

#: the smallest uniform number drawn into a Gumbel variable (keeps -log(-log(u)) finite in float32)
_TINY = 1e-20


def gumbel(shape: tuple[int, ...] | torch.Size, generator: Generators, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise -log(-log(U)), U ~ U(0, 1), float32."""
    u = rand(shape, generator, device)
    return -torch.log((-torch.log(u.clamp_min(_TINY))).clamp_min(_TINY))


def sample_tokens(log_probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One code per token from Cat(softmax(log_probs)) over dim 1, by Gumbel-max: ids (N, L)."""
    noise = gumbel(log_probs.shape, generator, log_probs.device)
    return (log_probs.float() + noise).argmax(dim=1)


def gumbel_softmax(logits: torch.Tensor, temperature: float, generator: Generators) -> torch.Tensor:
    """The Gumbel-softmax relaxation softmax((logits + G) / temperature) over dim 1 (no straight-through): soft
    one-hot weights that are differentiable in ``logits``. Biased: its weights' mean is not softmax(logits)
    (at temperature 1 it is much flatter; tests/solvers/test_categorical.py measures it)."""
    noise = gumbel(logits.shape, generator, logits.device)
    return torch.softmax((logits + noise) / float(temperature), dim=1)


def truncate(log_probs: torch.Tensor, mass: float) -> torch.Tensor:
    """Nucleus truncation over dim 1: keep the most probable codes until their probability reaches ``mass`` (the
    most probable always), drop the rest (-inf), renormalise. mass >= 1 keeps everything."""
    if mass >= 1.0:
        return log_probs
    logp = log_probs.float().log_softmax(dim=1)
    sorted_logp, order = logp.sort(dim=1, descending=True)
    before = sorted_logp.exp().cumsum(dim=1) - sorted_logp.exp()  # probability of the codes ranked above
    keep_sorted = before < float(mass)
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return logp.masked_fill(~keep, float("-inf")).log_softmax(dim=1)


def remask(tokens: torch.Tensor, count: int, mask_id: int, generator: Generators) -> torch.Tensor:
    """``tokens`` (N, L) with exactly ``count`` positions per item set to ``mask_id``, chosen uniformly at random
    (the lowest ``count`` of iid uniform scores) whatever the tokens were: the star-shaped process re-masks
    tokens that earlier steps had unmasked."""
    n, length = tokens.shape
    count = max(0, min(int(count), length))
    if count == 0:
        return tokens.clone()
    scores = rand((n, length), generator, tokens.device)
    chosen = scores.argsort(dim=1)[:, :count]
    return tokens.clone().scatter(1, chosen, int(mask_id))


def star_step(log_q: torch.Tensor, mask_count: int, mask_id: int, generator: Generators, *,
              truncation: float = 0.95) -> torch.Tensor:
    """The star-shaped process's next state from the variational posterior q(z0) (N, K, L): z0 ~ Cat(truncate(q))
    by Gumbel-max, then ``mask_count`` uniformly chosen positions re-masked (the schedule's count for the next
    timestep; 0 at the end). Independent of the current state but through q."""
    z0 = sample_tokens(truncate(log_q, truncation), generator)
    return remask(z0, mask_count, mask_id, generator)


__all__ = ["gumbel", "gumbel_softmax", "remask", "sample_tokens", "star_step", "truncate"]
