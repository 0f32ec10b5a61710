"""G2D2 (solvers/g2d2.py) against enumerable posteriors (docs/solvers.md, the closed-form tests), through the solver's
own inner optimisation and sampling loop.

The prior here is a stand-in ``DiscretePrior`` whose decoder is token-local (token l's code vector is row l of the
image) and whose "transformer" is an oracle for a factorised prior: log pi for masked tokens, a point mass on the
token for unmasked ones. With a pixel-wise operator each token is then observed on its own, and the posterior of
token l is q*_l(k) ~ pi_l(k) exp(-||y_l - A e_k||^2 / (2 std^2)), enumerable.

- The exact-expectation objective (sum_k q_k loss_k + KL(q || pi), Gaussian loss, KL weight 1) is minimised by q*:
  G2D2's RAdam on renormalised logits reaches it.
- The Gumbel-softmax relaxation G2D2 optimises instead (one relaxed draw, soft code mix) is biased at temperature
  1 and close at 0.1: measured and asserted below.
- End to end with the star-shaped process (truncation off), the final tokens' joint law is the product of the
  per-token posteriors.
"""

from __future__ import annotations

import torch

from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.base import Conditioning, DiscretePrior
from diffrestore.solvers import get_solver
from diffrestore.solvers.g2d2 import G2D2

STD = 0.3  # noise std in tensor units (GaussianNoise's sigma is half of it)


class FactorisedOracle(DiscretePrior):
    """Tokens (N, L) -> images (N, 1, L, D): row l is token l's code vector. log_p0 is the oracle of a factorised
    prior pi (K, L): pi_l for a masked token, a point mass on the token for an unmasked one."""

    def __init__(self, codebook: torch.Tensor, log_pi: torch.Tensor, steps: int = 6) -> None:
        self.codes = codebook.float()
        self.log_pi = log_pi.float()
        self.codebook_size, self.length = int(codebook.shape[0]), int(log_pi.shape[1])
        self.mask_id, self.num_steps, self.channels = self.codebook_size, steps, 1
        self.native_size = (self.length, int(codebook.shape[1]))
        self.calls = 0

    def log_p0(self, tokens: torch.Tensor, t: int, cond: Conditioning | None = None) -> torch.Tensor:
        self.calls += 1
        n = tokens.shape[0]
        masked = (tokens == self.mask_id)[:, None, :]
        point = torch.full((n, self.codebook_size, self.length), -1e9)
        point.scatter_(1, tokens.clamp_max(self.codebook_size - 1)[:, None, :], 0.0)
        return torch.where(masked, self.log_pi.expand(n, -1, -1), point)

    def schedule(self) -> dict[str, torch.Tensor]:
        gamma = torch.arange(1, self.num_steps + 1, dtype=torch.float32) / self.num_steps  # all masked at T - 1
        return {"alpha_bar": 1.0 - gamma, "beta_bar": torch.zeros_like(gamma), "gamma_bar": gamma}

    def codebook(self) -> torch.Tensor:
        return self.codes

    def decode_soft(self, weights: torch.Tensor) -> torch.Tensor:
        return (weights @ self.codes)[:, None]

    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes[ids.reshape(ids.shape[0], -1)][:, None]

    def token_grid(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        return (self.length, 1)

    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        return Conditioning()


class ExactExpectation(G2D2):
    """G2D2 with the data term's exact expectation under q instead of one relaxed draw: for a token-local decoder
    and a pixel-wise operator, E_q ||y - A(x)||^2 = sum_l sum_k q_l(k) ||y_l - A e_k||^2 (rows of the image)."""

    def data_term(self, prior, problem, y, logits, generator, y_size):
        q = logits.softmax(dim=1)  # (N, K, L)
        per_code = []
        for k in range(prior.codebook_size):
            one_hot = torch.zeros_like(q).transpose(1, 2)
            one_hot[..., k] = 1.0
            residual = y - problem.operator(prior.decode_soft(one_hot))  # (N, 1, L, D)
            per_code.append(residual.square().sum(dim=-1)[:, 0] / (2 * STD**2))  # (N, L)
        return (q * torch.stack(per_code, dim=1)).sum(dim=(1, 2))


def _problem(prior: FactorisedOracle, truth: torch.Tensor, observed: torch.Tensor, batch: int) -> Problem:
    """y = A(decode(truth)) + noise, A = the mask keeping ``observed`` (L, D) entries, the same y ``batch`` times."""
    shape = (1, prior.length, prior.codes.shape[1])
    op = build_operator("inpaint", shape, mask=~observed)
    noise = GaussianNoise(STD / 2)
    clean = op(prior.decode_tokens(truth[None]))
    y = noise.sample(clean, torch.Generator().manual_seed(7))
    return Problem(operator=op, noise=noise, y=y.expand(batch, -1, -1, -1).contiguous())


def _posterior(prior: FactorisedOracle, problem: Problem) -> torch.Tensor:
    """q*_l(k) (K, L), by enumeration."""
    y = problem.y[:1]
    losses = torch.stack([
        (y - problem.operator(prior.decode_tokens(torch.full((1, prior.length), k)))).square().sum(dim=-1)[0, 0]
        for k in range(prior.codebook_size)])  # (K, L)
    return (prior.log_pi - losses / (2 * STD**2)).softmax(dim=0)


def _one_token(batch: int = 1) -> tuple[FactorisedOracle, Problem]:
    g = torch.Generator().manual_seed(3)
    codebook = torch.randn(5, 3, generator=g) * 0.4
    log_pi = torch.tensor([[0.30], [0.15], [0.25], [0.10], [0.20]]).log()
    prior = FactorisedOracle(codebook, log_pi)
    return prior, _problem(prior, torch.tensor([1]), torch.tensor([[True, True, False]]), batch)


def _solver(cls: type[G2D2] = ExactExpectation, **settings) -> G2D2:
    base = get_solver("g2d2", "paper", likelihood="gaussian", kl_weight=1.0, kl_width=0.0, lr_width=0.0,
                      truncation=1.0, **settings)
    solver = cls(base.config) if cls is not G2D2 else base
    return solver


def test_the_exact_expectation_objective_reaches_the_enumerated_posterior():
    prior, problem = _one_token()
    truth = _posterior(prior, problem)
    assert (truth - prior.log_pi.exp()).abs().max() > 0.1  # the data moves the posterior away from the prior
    solver = _solver(inner_steps=400)
    fitted = solver.optimise(prior, problem, problem.y, prior.log_pi[None], prior.log_pi[None], 0.05, 1.0,
                             torch.Generator().manual_seed(0), (1, 3))
    assert (fitted[0].exp() - truth).abs().max() < 1e-3, (fitted[0].exp().flatten(), truth.flatten())
    less = _solver(inner_steps=400).optimise(prior, problem, problem.y, prior.log_pi[None], prior.log_pi[None],
                                             0.05, 0.5, torch.Generator().manual_seed(0), (1, 3))
    assert (less[0].exp() - truth).abs().max() > 0.01  # a KL weight of 1 is what makes q* the optimum


def _relaxed_optimum(temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The optimum of G2D2's own relaxed data term (solver.data_term: a Gumbel-softmax draw, the soft code mix, the
    Gaussian loss) plus KL(q || pi) for the one-token problem, with the expectation over the Gumbel noise estimated
    by 4000 fresh draws per step (the one token's logits copied into 4000 rows of one image, so each step averages
    4000 draws), then 300 RAdam steps: the relaxed objective's minimiser, not G2D2's noisy single-draw path to it."""
    copies = 4000
    prior, one = _one_token()
    many = FactorisedOracle(prior.codes, prior.log_pi.expand(-1, copies).contiguous())
    problem = _problem(many, torch.ones(copies, dtype=torch.long),
                       torch.tensor([[True, True, False]]).expand(copies, -1), 1)
    problem.y[:] = one.y[0, 0, 0]  # every row sees the one-token problem's y
    solver = _solver(G2D2, temperature=temperature)
    logits = prior.log_pi[None].clone().requires_grad_(True)  # (1, K, 1)
    adam = torch.optim.RAdam([logits], lr=0.05)
    generator = torch.Generator().manual_seed(1)
    for _ in range(300):
        log_q = logits.log_softmax(dim=1)
        kl = (log_q.exp() * (log_q - prior.log_pi[None])).sum()
        data = solver.data_term(many, problem, problem.y, logits.expand(-1, -1, copies), generator, (copies, 3))
        adam.zero_grad()
        (data.sum() / copies + kl).backward()
        adam.step()
    return logits.detach().softmax(dim=1).flatten(), _posterior(prior, one)[:, 0]


def test_the_gumbel_softmax_relaxation_is_biased_at_temperature_one():
    """Flatter than q* at temperature 1 (G2D2's setting), close when cold. Measured here: q* = (0.077, 0.268,
    0.199, 0.019, 0.437); tau 1 -> (0.130, 0.235, 0.250, 0.025, 0.360), total variation 0.110; tau 0.3 -> 0.049;
    tau 0.1 -> (0.083, 0.260, 0.206, 0.023, 0.428), 0.017."""
    warm, truth = _relaxed_optimum(1.0)
    cold, _ = _relaxed_optimum(0.1)
    tv_warm = 0.5 * float((warm - truth).abs().sum())
    tv_cold = 0.5 * float((cold - truth).abs().sum())
    assert tv_warm > 0.08 and tv_cold < 0.035
    assert warm.max() < truth.max() - 0.05  # flatter: the mode loses mass


def test_the_star_process_samples_the_product_of_per_token_posteriors():
    """Four tokens, three codes, an oracle factorised prior, each token observed on its own; 3000 chains of the
    full G2D2 loop (6 steps, star process, no truncation, exact-expectation objective, Gaussian loss, KL 1)."""
    g = torch.Generator().manual_seed(5)
    codebook = torch.tensor([[0.0, 0.4], [0.4, 0.0], [-0.3, -0.3]])
    log_pi = torch.rand(3, 4, generator=g).add(0.2).log().log_softmax(dim=0)
    prior = FactorisedOracle(codebook, log_pi)
    chains = 3000
    observed = torch.tensor([[True, False], [False, True], [True, True], [False, False]])
    problem = _problem(prior, torch.tensor([0, 1, 2, 0]), observed, chains)
    truth = _posterior(prior, problem)
    solver = _solver(steps=6, inner_steps=300, lr=0.2, forget=1.0)
    solver.prepare(prior)
    out = solver.run(prior, problem, generator=torch.Generator().manual_seed(11))
    ids = (out[:, 0, :, None, :] - codebook[None, None]).abs().sum(dim=-1).argmin(dim=-1)  # (chains, L)
    assert torch.allclose(out[:, 0], codebook[ids]), "the output is not a decode of tokens"
    freq = torch.stack([torch.bincount(ids[:, token], minlength=3) for token in range(4)], dim=1).float() / chains
    se = (truth * (1 - truth) / chains).sqrt()
    assert ((freq - truth).abs() <= 4.5 * se + 1e-3).all(), (freq, truth)
    assert (truth[:, 3] - prior.log_pi[:, 3].exp()).abs().max() < 1e-6  # the unobserved token keeps its prior
    assert (truth[:, 2] - prior.log_pi[:, 2].exp()).abs().max() > 0.2  # an observed one does not
    joint = torch.zeros(3, 3)
    joint.index_put_((ids[:, 0], ids[:, 2]), torch.ones(chains), accumulate=True)
    product = truth[:, 0, None] * truth[None, :, 2]
    assert ((joint / chains - product).abs() <= 4.5 * (product * (1 - product) / chains).sqrt() + 2e-3).all()


def test_the_inner_loop_never_calls_the_prior_more_than_once_per_step():
    prior, problem = _one_token()
    solver = _solver(steps=6, inner_steps=3, lr=0.05)
    solver.prepare(prior)
    solver.run(prior, problem, generator=torch.Generator().manual_seed(0))
    assert prior.calls == 6



def test_the_gaussian_likelihood_is_the_squared_residual_over_twice_the_variance():
    _, problem = _one_token()
    ax = torch.zeros_like(problem.y)
    gaussian = _solver(G2D2).likelihood(problem, problem.y, ax)
    assert torch.allclose(gaussian, problem.y.flatten(1).square().sum(dim=1) / (2 * STD**2))
    official = get_solver("g2d2", "paper").likelihood(problem, problem.y, ax)
    assert torch.allclose(official, problem.y.flatten(1).norm(dim=1))
