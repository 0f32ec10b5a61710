"""The categorical pieces of G2D2 (solvers/categorical.py, docs/solvers.md, G2D2): Gumbel-max
frequencies, the Gumbel-softmax bias, nucleus truncation, and the star-shaped re-masking step."""

from __future__ import annotations

import math

import torch

from diffrestore.solvers.categorical import gumbel_softmax, remask, sample_tokens, star_step, truncate

P = torch.tensor([0.5, 0.3, 0.15, 0.05])


def _log(p: torch.Tensor, n: int) -> torch.Tensor:
    return p.log().view(1, -1, 1).expand(n, -1, 1).contiguous()  # (N, K, L = 1)


def test_gumbel_max_draws_have_the_softmax_frequencies():
    n = 40000
    ids = sample_tokens(_log(P, n), torch.Generator().manual_seed(0))
    assert ids.shape == (n, 1)
    freq = torch.bincount(ids.flatten(), minlength=4).float() / n
    assert (freq - P).abs().max() < 0.012, freq  # 4.8 standard errors at the largest p


def test_each_item_draws_from_its_own_generator():
    logp = torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(1)).log_softmax(dim=1)
    batch = sample_tokens(logp, [torch.Generator().manual_seed(s) for s in (4, 5, 6)])
    alone = sample_tokens(logp[1:2], [torch.Generator().manual_seed(5)])
    assert torch.equal(batch[1:2], alone)


def test_gumbel_softmax_is_biased_at_temperature_one_and_not_when_cold():
    """Its mean weights are flatter than the probabilities at temperature 1 (G2D2's choice) and approach them
    as the temperature drops. Measured (40000 draws) for P = (0.5, 0.3, 0.15, 0.05): tau 1 -> (0.431, 0.301, 0.186,
    0.082); tau 0.1 -> P within 0.02."""
    n = 40000
    g = torch.Generator().manual_seed(2)
    warm = gumbel_softmax(_log(P, n), 1.0, g).mean(dim=0).flatten()
    cold = gumbel_softmax(_log(P, n), 0.1, g).mean(dim=0).flatten()
    assert (warm - P).abs().max() > 0.04 and warm[3] > 1.5 * P[3] and warm[0] < P[0] - 0.04
    assert (cold - P).abs().max() < 0.02
    assert torch.allclose(warm.sum(), torch.tensor(1.0), atol=1e-5)


def test_truncation_keeps_the_nucleus():
    logp = _log(P, 1)
    kept = truncate(logp, 0.95).exp().flatten()
    assert torch.allclose(kept, torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95, atol=1e-6)
    assert torch.allclose(truncate(logp, 0.4).exp().flatten(), torch.tensor([1.0, 0, 0, 0]))
    assert torch.equal(truncate(logp, 1.0), logp)


def test_remasking_masks_exactly_the_count_uniformly_and_can_remask_unmasked_tokens():
    n, length, count, mask_id = 6000, 10, 3, 7
    tokens = torch.randint(0, 7, (n, length), generator=torch.Generator().manual_seed(3))  # nothing masked
    out = remask(tokens, count, mask_id, torch.Generator().manual_seed(4))
    masked = out == mask_id
    assert torch.equal(masked.sum(dim=1), torch.full((n,), count))  # exactly the count, every item
    assert torch.equal(out[~masked], tokens[~masked])  # the others untouched
    per_position = masked.float().mean(dim=0)
    assert (per_position - count / length).abs().max() < 4 * math.sqrt(0.3 * 0.7 / n), per_position
    assert torch.equal(remask(tokens, 0, mask_id, torch.Generator()), tokens)
    assert bool((remask(tokens[:2], 99, mask_id, torch.Generator()) == mask_id).all())


def test_the_star_step_draws_from_q_then_masks_the_next_count():
    n, k, length, mask_id = 4000, 4, 5, 4
    log_q = _log(P, n).expand(n, k, length).contiguous()
    end = star_step(log_q, 0, mask_id, torch.Generator().manual_seed(5))
    assert not bool((end == mask_id).any())  # nothing masked at the end
    freq = torch.bincount(end.flatten(), minlength=k).float() / end.numel()
    assert freq[3] == 0 and (freq[:3] - P[:3] / 0.95).abs().max() < 0.01  # truncated at 0.95 by default
    mid = star_step(log_q, 2, mask_id, torch.Generator().manual_seed(6))
    assert torch.equal((mid == mask_id).sum(dim=1), torch.full((n,), 2))
