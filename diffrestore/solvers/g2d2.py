"""G2D2: gradient-guided discrete diffusion for inverse problems (Murata, Saito, Lai, Takida, Uesaka, Mitsufuji,
Ermon; arXiv 2410.14710, and the official code sony/g2d2 @c33250c, ``InvProbAncVQDiffusionPipeline.__call__``).

A discrete (VQ-Diffusion) prior on token grids, tokens in 0..K-1 and [MASK]. From z = [MASK]^L, per timestep t of
the grid T-1 > ... > 0:

    L_t   = log p(z0 | z_t) from the transformer, with guidance (no gradient), clamped at -70
    a     = L_t at the first step, else log-normalise(c_f L_t + (1 - c_f) a_prev)          (warm start)
    inner : a fresh RAdam on a, I iterations of
              w = softmax((a + Gumbel) / temperature)           (the Gumbel-softmax relaxation of z0 ~ Cat(a))
              x = VQ decoder(w @ codebook)                      (a soft code mix, no quantisation)
              loss = ||y - A(x)||_2 + kl_t sum_tokens KL(softmax(a) || softmax(L_t))
            gradients only through the decoder, never the transformer; a renormalised after every step
    next  : star (default, the paper's process): z0 ~ Cat(truncate_0.95(a)) by Gumbel-max, then re-mask exactly
            int(L gamma_bar_{t'}) uniformly chosen positions for the next timestep t' of the grid (none at the end),
            whatever z_t was; markov (the released presets): the VQ-Diffusion posterior q(z_{t-1} | z_t, z0 ~ a)
    x     = decode(z)

Presets: ``paper`` = the official settings: 100 steps, 30 inner iterations, RAdam lr log-linear per task (SR
10 x 10^(+1 -> -1), Gaussian blur 15 x 10^(+0.5 -> -0.5)), KL weight 3e-4 x 10^(+1 -> -1), warm-start 0.3,
temperature 1, guidance 5 (the ImageNet presets; FFHQ used 1). ``fast`` = 25 steps x 20 iterations, guidance
1, chosen on the trained digits prior (tests/fixtures/discrete_digits16, 8 held-out digits, star process; PSNR
inpainting 70 % / SR x2): paper 100 x 30 30.53 / 37.46 dB; 25 x 20 30.50 / 37.00; 25 x 10 30.05 / 35.08;
12 x 10 30.42 / 33.71; 50 x 10 29.99 / 34.44; 25 x 5 23.68 / 23.87. The inner iterations matter more than the
steps. On ITHQ at 256 px (benchmarks/g2d2_speed.py) an inner iteration costs a fifth of an unguided transformer
call, so fast is about a sixth of paper's time per image.

Conventions and deviations from the official code:
- The likelihood is the official one: the unsquared norm of the residual, no 1 / sigma^2, but per image (the
  official code takes one norm over the whole batch, which couples the images). ``likelihood="gaussian"`` gives
  the exact Gaussian term ||r||^2 / (2 std^2) instead (what the closed-form tests use).
- The star step reads the schedule at the next timestep actually used; the official code reads it at t - 1,
  wrong when the grid skips timesteps. The count is int(L gamma_bar) (the official subtracts beta_bar, ~1e-10).
- Images smaller than the model's native size are the top-left of its canvas (the padding is free tokens only
  the prior shapes); the operator sees the crop, the output is the crop. Larger images are refused.
- The markov step walks every timestep (it is a one-step posterior): ``markov`` needs steps = the model's count.
- Tasks without an official row (inpainting, motion or file-kernel blur, denoising, colorization) take the SR
  row, the wider lr sweep.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import UsageError
from ..operators import OperatorKind
from .base import Generators, ProgressCallback, Solver, SolverConfig, by_kind, likelihood_std, residual_norms
from .categorical import gumbel_softmax, star_step
from .methods import G2D2_PROCESSES
from .prompted import PromptConditioned, PromptSettings
from .rules import Rule, fraction, integer, non_negative, one_of, positive

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import DiscretePrior

#: (lr, log10 width of its log-linear sweep) per task, the official presets (util/experiments.py)
LR_TABLE: dict[OperatorKind, tuple[float, float]] = {
    OperatorKind.SUPERRES: (10.0, 2.0),
    OperatorKind.GAUSSIAN_BLUR: (15.0, 1.0),
}
_DEFAULT_LR = LR_TABLE[OperatorKind.SUPERRES]
#: the data terms: the official unsquared norm, or the exact Gaussian log-likelihood
LIKELIHOODS = ("norm", "gaussian")


@dataclasses.dataclass
class G2D2Config(PromptSettings, SolverConfig):
    """steps: timesteps of the grid (network calls); inner_steps: RAdam iterations per step; lr / lr_width: None =
    the per-task table; kl_weight, kl_width: the KL weight's log-linear sweep; forget: the warm start's weight of
    the new prior; temperature: Gumbel-softmax; process: star or markov; truncation: the star step's nucleus;
    likelihood: "norm" (the official ||y - A(x)||) or "gaussian" (||y - A(x)||^2 / (2 std^2), the noise's std);
    prompt (None: the model's default), negative_prompt, guidance (None: default_guidance)."""

    steps: int = 100
    inner_steps: int = 30
    lr: float | None = None
    lr_width: float | None = None
    kl_weight: float = 3e-4
    kl_width: float = 2.0
    forget: float = 0.3
    temperature: float = 1.0
    process: str = "star"
    truncation: float = 0.95
    likelihood: str = "norm"
    default_guidance: float = 5.0

    rules: ClassVar[dict[str, Rule]] = {
        **SolverConfig.rules, **PromptSettings.rules, "inner_steps": integer(1), "lr": positive(optional=True),
        "lr_width": non_negative(optional=True), "kl_weight": non_negative(), "kl_width": non_negative(),
        "forget": fraction(), "temperature": positive(), "process": one_of(*G2D2_PROCESSES),
        "truncation": fraction(low_open=True), "likelihood": one_of(*LIKELIHOODS),
    }


def timesteps_for(steps: int, train_steps: int) -> list[int]:
    """round(linspace(T, 0, steps + 1))[1:]: T-1, ..., 0 with steps = T (the official grid), evenly strided else."""
    if steps < 1 or steps > train_steps:
        raise UsageError(f"g2d2 takes 1 to {train_steps} steps with this model, got {steps}")
    return [int(v) for v in torch.linspace(train_steps, 0, steps + 1, dtype=torch.float64)[1:].round()]


def log_linear(value: float, width: float, steps: int) -> list[float]:
    """value x 10^(linspace(+width/2, -width/2, steps)): the official per-step schedules."""
    return [value * 10.0 ** float(e) for e in torch.linspace(width / 2, -width / 2, steps, dtype=torch.float64)]


def mask_counts(gamma_bar: torch.Tensor, timesteps: list[int], length: int) -> list[int]:
    """The star step's mask count after each step: int(L gamma_bar) at the next timestep of the grid, 0 after
    the last."""
    return [int(length * float(gamma_bar[t])) for t in timesteps[1:]] + [0]


class G2D2(PromptConditioned, Solver):
    name: ClassVar[str] = "g2d2"
    prior_kind: ClassVar[str] = "discrete"
    config_class: ClassVar[type[SolverConfig]] = G2D2Config
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 100, "inner_steps": 30},
        "fast": {"steps": 25, "inner_steps": 20, "default_guidance": 1.0},
    }

    def prepare(self, prior: DiscretePrior) -> None:
        """The prompt, and the settings that depend on the model's timestep count, before any image."""
        super().prepare(prior)
        self.check_steps(prior)

    def check_steps(self, prior: DiscretePrior) -> list[int]:
        """The grid's timesteps for this model; UsageError for more steps than it has, or a markov process that
        would skip some."""
        cfg = self.config
        timesteps = timesteps_for(int(cfg.steps), int(prior.num_steps))
        if cfg.process == "markov" and len(timesteps) != prior.num_steps:
            raise UsageError(f"g2d2 --g2d2-process markov walks every timestep: give --steps {prior.num_steps}",
                             hint="or use the star process, which takes any number of steps")
        return timesteps

    def lr_sweep(self, operator: object) -> tuple[float, float]:
        """The RAdam lr and the log10 width of its sweep: the config's, else the task's official row."""
        lr, width = by_kind(LR_TABLE, operator, _DEFAULT_LR)  # type: ignore[arg-type,misc]
        cfg = self.config
        return (float(cfg.lr) if cfg.lr is not None else lr, float(cfg.lr_width) if cfg.lr_width is not None else width)

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """The process and likelihood, the grid's first and last timesteps on this model, the token grid and the
        guidance; with the problem, the lr sweep (first lr and width) of its task."""
        timesteps = self.check_steps(prior)
        out: dict[str, Any] = {"process": self.config.process, "likelihood": self.config.likelihood,
                               "timesteps": [timesteps[0], timesteps[-1]],
                               "token_grid": list(prior.token_grid(tuple(x_shape))), **self.resolved_prompt(prior)}
        if problem is not None:
            out["lr"], out["lr_width"] = self.lr_sweep(problem.operator)
        return out

    def optimise(self, prior: DiscretePrior, problem: Problem, y: torch.Tensor, a: torch.Tensor,
                 prior_logp: torch.Tensor, lr: float, kl: float, generator: Generators,
                 y_size: tuple[int, int]) -> torch.Tensor:
        """RAdam on the logits a (N, K, L) against data_term + kl KL(q || p), per image: the optimum's normalised
        logits."""
        cfg = self.config
        with torch.enable_grad():
            logits = a.detach().clone().requires_grad_(True)
            adam = torch.optim.RAdam([logits], lr=float(lr), foreach=False)
            for _ in range(int(cfg.inner_steps)):
                log_q = logits.log_softmax(dim=1)
                divergence = (log_q.exp() * (log_q - prior_logp)).sum(dim=(1, 2))
                loss = self.data_term(prior, problem, y, logits, generator, y_size) + float(kl) * divergence
                adam.zero_grad()
                loss.sum().backward()  # a sum of per-image losses: images do not interact
                adam.step()
                with torch.no_grad():
                    logits -= torch.logsumexp(logits, dim=1, keepdim=True)
        return logits.detach()

    def data_term(self, prior: DiscretePrior, problem: Problem, y: torch.Tensor, logits: torch.Tensor,
                  generator: Generators, y_size: tuple[int, int]) -> torch.Tensor:
        """Per image (N,): the likelihood term at one Gumbel-softmax relaxed draw of z0 ~ Cat(logits), decoded as
        a soft mix of code vectors. (A single-sample estimate of E_q[loss]: biased at temperature 1, see
        tests/solvers/test_g2d2_closed_form.py, but it needs one decoder pass, and the decoder is the cost.)"""
        weights = gumbel_softmax(logits, float(self.config.temperature), generator)
        x = prior.decode_soft(weights.transpose(1, 2))[..., : y_size[0], : y_size[1]]
        return self.likelihood(problem, y, problem.operator(x))

    def likelihood(self, problem: Problem, y: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        """``norm``: ||y - A(x)|| (official); ``gaussian``: ||y - A(x)||^2 / (2 std^2), the exact Gaussian
        log-likelihood (std: the problem's noise, tensor units). Per image; Poisson residuals are weighted."""
        norms = residual_norms(problem, y, ax)
        if self.config.likelihood == "norm":
            return norms
        std = likelihood_std(problem, None)
        return norms.square() / (2.0 * std * std)

    def _sample(self, prior: DiscretePrior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        cfg = self.config
        timesteps = self.check_steps(prior)
        batch = shape[0]
        cond = self.conditioning(prior)
        gh, gw = prior.token_grid(shape[1:])
        length = gh * gw
        lrs = log_linear(*self.lr_sweep(problem.operator), len(timesteps))
        kls = log_linear(float(cfg.kl_weight), float(cfg.kl_width), len(timesteps))
        counts = mask_counts(prior.schedule()["gamma_bar"], timesteps, length)
        generators = [generator] * batch if isinstance(generator, torch.Generator) else list(generator)
        z = torch.full((batch, length), int(prior.mask_id), dtype=torch.long, device=torch.device(prior.device))
        a_prev: torch.Tensor | None = None
        for i, t in enumerate(timesteps):
            logp = prior.log_p0(z, t, cond).clamp_min(-70.0).log_softmax(dim=1)
            start = logp if a_prev is None else (cfg.forget * logp + (1.0 - cfg.forget) * a_prev).log_softmax(dim=1)
            a = self.optimise(prior, problem, y, start, logp, lrs[i], kls[i], generator, shape[-2:])
            a_prev = a
            if cfg.process == "star":
                z = star_step(a, counts[i], int(prior.mask_id), generator, truncation=float(cfg.truncation))
            else:
                z = torch.cat([prior.scheduler.step(a[k : k + 1], t, z[k : k + 1], generator=generators[k],
                                                    return_dict=False)[0] for k in range(batch)])
            progress(i + 1, len(timesteps), self.name)
        return prior.decode_tokens(z)[..., : shape[-2], : shape[-1]]


__all__ = ["G2D2", "LR_TABLE", "G2D2Config", "log_linear", "mask_counts", "timesteps_for"]
