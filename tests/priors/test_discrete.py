"""VQ-Diffusion's log p(z0 | z_t) (priors/discrete.py) on the tiny random conditional model (registry
``tiny-discrete-vq``: 8 x 8 tokens, 12 codes, 12 timesteps, cross-attention over 32-wide embeddings):
classifier-free guidance runs the conditional and the negative pass as one transformer call of 2N that equals the
two-pass definition (``base.guide``), and an unguided call stays one pass of N. Prompt embeddings are drawn at
random, so no text encoder is needed."""

from __future__ import annotations

import pytest
import torch

from diffrestore.priors.base import Conditioning, guide

TOKENS = 64  # the tiny model's 8 x 8 grid
STEP = 7


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    from diffrestore.priors.load import load_prior

    with pytest.MonkeyPatch.context() as patch:  # the tiny model is built into a cache of this module's own
        patch.setenv("DIFFRESTORE_CACHE", str(tmp_path_factory.mktemp("discrete-cache")))
        return load_prior("tiny-discrete-vq", offline=True)


def embeddings(seed: int) -> torch.Tensor:
    return torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(seed))


def tokens(n: int) -> torch.Tensor:
    """n token grids, some of them masked (id K)."""
    return torch.randint(0, 13, (n, TOKENS), generator=torch.Generator().manual_seed(n))


def two_passes(prior, ids: torch.Tensor, t: int, cond: Conditioning) -> torch.Tensor:
    """The definition: one transformer pass per embedding, mixed by base.guide, renormalised over the codes."""
    timestep = torch.tensor(t)

    def network(e: torch.Tensor) -> torch.Tensor:
        states = e.expand(ids.shape[0], -1, -1)
        return prior.transformer(ids, encoder_hidden_states=states, timestep=timestep, return_dict=False)[0].float()

    with torch.no_grad():
        out = guide(network, cond)
    return out - torch.logsumexp(out, dim=1, keepdim=True)


class TransformerCalls:
    """Counts the transformer's calls and the batch size of each."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = transformer.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs) -> None:
        self.batches.append(int(args[0].shape[0]))

    def __enter__(self) -> TransformerCalls:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


@pytest.mark.parametrize("n", [1, 3])
def test_guidance_is_one_call_of_2n_equal_to_two_passes(prior, n):
    cond = Conditioning(embeddings=embeddings(1), negative=embeddings(2), guidance=3.0)
    ids = tokens(n)
    with TransformerCalls(prior.transformer) as calls, torch.no_grad():
        guided = prior.log_p0(ids, STEP, cond)
    assert calls.batches == [2 * n]
    assert guided.shape == (n, prior.codebook_size, TOKENS) and guided.dtype == torch.float32
    torch.testing.assert_close(guided, two_passes(prior, ids, STEP, cond), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.logsumexp(guided, dim=1), torch.zeros(n, TOKENS), atol=1e-5, rtol=0)


def test_the_learned_negative_and_per_item_prompts_batch_too(prior):
    """The model's learned empty-prompt embeddings come as (1, L, D) and a prompt may be one per item (N, L, D)."""
    ids = tokens(2)
    prompts = torch.cat([embeddings(3), embeddings(4)])
    cond = Conditioning(embeddings=prompts, negative=prior.cfg_embeddings[None], guidance=5.0)
    with TransformerCalls(prior.transformer) as calls, torch.no_grad():
        guided = prior.log_p0(ids, STEP, cond)
    assert calls.batches == [4]
    expected = torch.cat([two_passes(prior, ids[i : i + 1], STEP,
                                     Conditioning(embeddings=prompts[i : i + 1], negative=cond.negative, guidance=5.0))
                          for i in range(2)])
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-5)


def test_without_guidance_one_pass_of_n(prior):
    ids = tokens(2)
    for cond in (Conditioning(embeddings=embeddings(1)),
                 Conditioning(embeddings=embeddings(1), negative=embeddings(2), guidance=1.0)):
        with TransformerCalls(prior.transformer) as calls, torch.no_grad():
            plain = prior.log_p0(ids, STEP, cond)
        assert calls.batches == [2]
        torch.testing.assert_close(plain, two_passes(prior, ids, STEP, Conditioning(embeddings=embeddings(1))))


def test_a_conditional_model_without_a_prompt_is_refused(prior):
    from diffrestore.errors import UsageError

    with pytest.raises(UsageError, match="text-conditioned"):
        prior.log_p0(tokens(1), STEP, Conditioning(embeddings=None, negative=embeddings(2), guidance=2.0))
