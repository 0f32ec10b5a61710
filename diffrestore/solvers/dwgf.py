"""DWGF: posterior sampling as a regularised Wasserstein gradient flow of KL in the latent space of a latent
diffusion model ("Diffusion-regularised Wasserstein gradient flow", arXiv 2509.19276, and the official code's
``DWGF.sample``, isomorphicdude/DWGF @d9724d8).

N particles z^1..z^N of latents (one image's samples, ``-n``) start at N(0, I) and are moved by one Adam
optimiser over a DDIM time grid t = T-1 > ... > 1, one step per timestep. At step t, with ab = alpha_bar_t and
for each particle i (its own eps and decoder noise n):

    z_t^i      = sqrt(ab) z^i + sqrt(1 - ab) eps^i                                    (a noised copy)
    s_model^i  = -eps_theta(z_t^i, t) / sqrt(1 - ab)                                    (UNet, no gradient)
    s_kde^i    = grad log (1/N) sum_j N(z_t^i; sqrt(ab) z^j, (1 - ab) I)                 (the particle cloud)
    prior      = lambda_t (s_kde^i - s_model^i) / P,    lambda_t = w_t (1 - ab) / sqrt(ab)
    data       = J_D(z^i)^T grad_x ||y - A(x^i + n)||^2 / (2 M)          x^i = D(z^i), decoder noise n ~ 0.01 N(0, I)
    consistency= a_w J_D(z^i)^T (x^i - D(E(x^i + n))) / Q                (autoencoder fixed point, no gradient in E)
    z^i       <- Adam(z^i, prior + data + consistency)

The prior term is the flow's velocity -(grad log mu_t - grad log p_t) at the particles (the KDE score of the
cloud is grad log mu_t): the interaction that makes the particles one flow and not N runs. Their kernel weights
push crowded particles apart. With one particle s_kde = -eps / sqrt(1 - ab) exactly, so the prior term is
w_t sqrt((1 - ab)/ab) (eps_theta - eps) / P: DWGF with ``-n 1`` is RED-diff (Mardani et al., arXiv 2305.04391)
in latent space. In the diffusion's VE units (sigma^2 = (1 - ab)/ab) the prior term is
(w_t / P) (sum_j w_ij z^j - D_theta(z^i + sigma eps^i, sigma)): the kernel-weighted mean of the cloud minus the
denoised particle, which is how the denoiser-based priors of this package compute it.

Normalisation (decided here, stated because it sets the balance of the three terms):
- The official code takes means over the whole particle batch: P = N x latent size, M = N x measured entries,
  Q = N x pixels. The N cancels between the terms, so it only scales the gradient Adam sees (Adam undoes scale,
  up to its eps). We take the same means per particle: the same balance as the official code for every N, and a
  particle's gradient that does not depend on how many particles or images share the batch (bitwise
  batch-independence on the CPU).
- M counts the measured entries: for inpainting the known pixels (the official DDRM-style operator keeps only
  those; ours returns the image with zeros in the hole, which would otherwise dilute the data term by the hole's
  area), for other operators all of y.
- Means make the balance independent of the image size (every term scales alike). They do not weight the data
  term by the noise level: the official code uses mean squared residuals whatever the noise (its settings were
  tuned at noise 0.001). ``data_weight`` scales it for noisy measurements.
- The data term sees a crop of the decoded canvas (images of any size: the canvas is the next multiple of the
  latent grid, as LatentDAPS), the consistency term the whole canvas.

Presets: ``paper`` = the official settings: the 999-point DDIM grid (999, 998, ..., 1; one Adam step per
timestep but the last: 998 steps), w_t 0.15, Adam lr 1.0 (betas 0.9, 0.999), consistency weight 0.1, decoder
noise 0.01, 4 particles (``-n 4``), empty prompt, no guidance. ``fast`` = a CPU budget measured on the trained
latent digits fixture (docs/benchmarks.md, "DWGF").

Deviations from the official code: the encoder takes the mean of the latent distribution (the official code
samples it; SD's encoder std is tiny and a deterministic E keeps the consistency term's only noise the decoder
noise); y is shared by the particles (the official code draws a different simulated noise per particle); the
output is the decode of the final latents (the official code returns the decode made before the last Adam step);
the autoencoder stays frozen in eval mode with no parameter gradients (the official code puts it in train mode
and accumulates parameter gradients for nothing), and no decoded image is kept per step (the official code piles
up about 12.5 GB on the GPU over 998 steps); grids with fewer steps are evenly spaced integer timesteps from T-1
to 1 (the official 'leading' DDIM spacing differs by a few timesteps).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import DiffrestoreError, UsageError
from .base import Generators, ProgressCallback, Solver, SolverConfig, data_gradient, randn
from .prompted import PromptConditioned, PromptSettings
from .rules import Rule, flag, non_negative, pair_of_fractions, positive

if TYPE_CHECKING:
    from ..operators import Problem
    from ..priors.base import Conditioning, LatentPrior


@dataclasses.dataclass
class DWGFConfig(PromptSettings, SolverConfig):
    """steps: Adam steps = network calls (one per timestep of the grid but the last); weight: w_t; lr, betas,
    adam_eps: the Adam optimiser; ae_weight: the autoencoder-consistency weight; decoder_std: the noise added to
    the decoded image in the data and consistency terms; data_weight: multiplies the data term; interact: False
    drops the particle interaction (N independent RED-diff runs); prompt (None: the model's default, "" the
    official empty prompt), negative_prompt, guidance (None: ``default_guidance``)."""

    steps: int = 998
    weight: float = 0.15
    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    ae_weight: float = 0.1
    decoder_std: float = 0.01
    data_weight: float = 1.0
    interact: bool = True
    prompt: str | None = ""

    rules: ClassVar[dict[str, Rule]] = {
        **SolverConfig.rules, **PromptSettings.rules, "weight": non_negative(), "lr": positive(),
        "betas": pair_of_fractions(high_open=True), "adam_eps": positive(), "ae_weight": non_negative(),
        "decoder_std": non_negative(), "data_weight": non_negative(), "interact": flag(),
    }


def flow_timesteps(steps: int, train_steps: int) -> list[int]:
    """The timesteps of the ``steps`` Adam steps: ``steps + 1`` evenly spaced integers from T-1 down to 1, the last
    dropped (as the official loop over timesteps[:-1]); with steps = T - 2 that is T-1, T-2, ..., 2 exactly."""
    if steps < 1 or steps > train_steps - 2:
        raise UsageError(f"dwgf takes 1 to {train_steps - 2} steps with this model ({train_steps} timesteps), "
                         f"got {steps}")
    grid = torch.linspace(train_steps - 1, 1, steps + 1, dtype=torch.float64).round().long()
    return [int(t) for t in grid[:-1]]


def kde_score(points: torch.Tensor, centers: torch.Tensor, scale: float, var: float) -> torch.Tensor:
    """grad_x log (1/N) sum_j N(x; scale * c_j, var I) at each point x = points[i], in the points' dtype.

    = -sum_j w_ij (x_i - scale c_j) / var with w_ij = softmax_j(-||x_i - scale c_j||^2 / (2 var)). One point at a
    time, so memory is N x latent size, not N^2. The softmax subtracts its largest exponent, so float32 keeps the
    weights exact to rounding however small var is (no float64: some accelerators have none)."""
    x = points.flatten(1)
    c = scale * centers.to(points.dtype).flatten(1)
    rows = []
    for i in range(x.shape[0]):
        diff = x[i : i + 1] - c  # (N, D)
        w = torch.softmax(-diff.square().sum(dim=1) / (2.0 * var), dim=0)
        rows.append(-(w[:, None] * diff).sum(dim=0) / var)
    return torch.stack(rows).reshape(points.shape)


def measured_entries(problem: Problem, shape: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
    """Entries of y each item's image actually reaches, shape (N,): the nonzero outputs of A at a positive
    probe image (inpainting: the known pixels; other operators: all of y). The data term's mean divides by it."""
    g = torch.Generator().manual_seed(0)
    probe = (0.5 + 0.25 * torch.rand(shape, generator=g)).to(device)
    out = problem.operator(probe)
    return (out != 0).flatten(1).sum(dim=1).clamp_min(1).to(torch.float32)


class DWGF(PromptConditioned, Solver):
    name: ClassVar[str] = "dwgf"
    prior_kind: ClassVar[str] = "latent"
    particles_interact: ClassVar[bool] = True
    config_class: ClassVar[type[SolverConfig]] = DWGFConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"steps": 998},
        "fast": {"steps": 100},
    }

    def resolved(self, prior: Any, x_shape: tuple[int, int, int], problem: Problem | None = None) -> dict[str, Any]:
        """The Adam settings as used, the flow's first and last timesteps on this model, the latent shape and the
        guidance (nothing here depends on the task)."""
        timesteps = flow_timesteps(int(self.config.steps), int(prior.alphas_cumprod.numel()))
        return {"lr": float(self.config.lr), "betas": [float(b) for b in self.config.betas],
                "timesteps": [timesteps[0], timesteps[-1]],
                "latent_shape": list(prior.latent_shape(prior.padded_shape(tuple(x_shape)))),
                **self.resolved_prompt(prior)}

    # -------------------------------------------------------------------------------------- the gradient
    def prior_gradient(self, prior: LatentPrior, z: torch.Tensor, t: int, eps: torch.Tensor, cond: Conditioning,
                       group: int) -> torch.Tensor:
        """lambda_t (s_kde - s_model) / P per particle (P: one particle's latent size); groups of ``group``
        consecutive particles form one cloud (``interact`` False: every particle alone)."""
        ab = float(prior.alphas_cumprod[t])
        sigma = math.sqrt((1.0 - ab) / ab)  # the VE sigma of timestep t: z_t / sqrt(ab) = z + sigma eps
        denoised = prior.denoise(z + sigma * eps, sigma, cond)
        eps_theta = eps + (z - denoised) / sigma  # (z_sigma - D) / sigma
        s_model = -eps_theta / math.sqrt(1.0 - ab)
        z_t = math.sqrt(ab) * z + math.sqrt(1.0 - ab) * eps
        size = group if self.config.interact else 1
        if size == 1:  # one particle: its own kernel only, s_kde = -(z_t - sqrt(ab) z) / (1 - ab) = -eps / sqrt(1 - ab)
            s_kde = -eps / math.sqrt(1.0 - ab)
        else:
            s_kde = torch.cat([kde_score(z_t[k : k + size], z[k : k + size], math.sqrt(ab), 1.0 - ab)
                               for k in range(0, z.shape[0], size)])
        lam = float(self.config.weight) * (1.0 - ab) / math.sqrt(ab)
        return lam * (s_kde - s_model) / z[0].numel()

    def pixel_gradient(self, prior: LatentPrior, problem: Problem, y: torch.Tensor, x: torch.Tensor,
                       noise: torch.Tensor, measured: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The data and consistency terms' gradient in image space (the canvas), to pull back through D."""
        cfg = self.config
        h, w = size
        noisy = x + noise
        grad = torch.zeros_like(x)
        if cfg.data_weight:
            data = data_gradient(problem, y, noisy[..., :h, :w], 1.0)  # grad ||y - A||^2 / 2, Poisson-weighted
            grad[..., :h, :w] = float(cfg.data_weight) * data / measured.view(-1, 1, 1, 1)
        if cfg.ae_weight:
            grad += float(cfg.ae_weight) * (x - prior.decode(prior.encode(noisy))) / x[0].numel()
        return grad

    def flow_gradient(self, prior: LatentPrior, problem: Problem, y: torch.Tensor, z: torch.Tensor, t: int,
                      eps: torch.Tensor, noise: torch.Tensor, *, cond: Conditioning, group: int,
                      measured: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The gradient every particle's Adam step takes at timestep t: prior + J_D^T (data + consistency), with
        one decoder forward and backward (no gradient through the UNet or the encoder)."""
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            x = prior.decode(zg)
            pixel = self.pixel_gradient(prior, problem, y, x.detach(), noise, measured, size)
            (through_decoder,) = torch.autograd.grad(x, zg, pixel)
        return self.prior_gradient(prior, z, t, eps, cond, group) + through_decoder

    # ------------------------------------------------------------------------------------------ the loop
    def _sample(self, prior: LatentPrior, problem: Problem, y: torch.Tensor, shape: tuple[int, int, int, int],
                generator: Generators, progress: ProgressCallback) -> torch.Tensor:
        return self._sample_particles(prior, problem, y, shape, generator, progress, 1)

    def _sample_particles(self, prior: LatentPrior, problem: Problem, y: torch.Tensor,
                          shape: tuple[int, int, int, int], generator: Generators, progress: ProgressCallback,
                          group: int) -> torch.Tensor:
        cfg = self.config
        batch, _, h, w = shape
        cond = self.conditioning(prior)
        canvas = prior.padded_shape(shape[1:])
        latent = prior.latent_shape(canvas)
        device = torch.device(prior.device)
        timesteps = flow_timesteps(int(cfg.steps), int(prior.alphas_cumprod.numel()))
        measured = measured_entries(problem, (batch, *shape[1:]), device)
        z0 = randn((batch, *latent), generator, device)
        # one parameter per particle, per-tensor Adam: Adam is elementwise, and this keeps each particle's update
        # its own arithmetic whichever kernels (fused, multi-tensor) a torch version picks for the batch
        particles = [z0[i : i + 1].clone() for i in range(batch)]
        adam = torch.optim.Adam(particles, lr=float(cfg.lr), betas=tuple(cfg.betas), eps=float(cfg.adam_eps),
                                foreach=False)
        for k, t in enumerate(timesteps):
            z = torch.cat(particles)
            eps = randn(z.shape, generator, device)
            noise = float(cfg.decoder_std) * randn((batch, *canvas), generator, device)
            grad = self.flow_gradient(prior, problem, y, z, t, eps, noise, cond=cond, group=group,
                                      measured=measured, size=(h, w))
            for i, p in enumerate(particles):
                p.grad = grad[i : i + 1]
            adam.step()
            if not all(bool(torch.isfinite(p).all()) for p in particles):
                raise DiffrestoreError(f"dwgf diverged at step {k + 1} of {len(timesteps)} (timestep {t})",
                                       hint="lower the learning rate (lr) or the prior weight")
            progress(k + 1, len(timesteps), self.name)
        return prior.decode(torch.cat(particles))[..., :h, :w]


__all__ = ["DWGF", "DWGFConfig", "flow_timesteps", "kde_score", "measured_entries"]
