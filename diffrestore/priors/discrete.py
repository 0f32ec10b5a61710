"""Discrete priors: VQ-Diffusion (VQModel + Transformer2DModel in discrete mode + VQDiffusionScheduler, CLIP text,
learned classifier-free embeddings), seen through the ``DiscretePrior`` contract of priors/base.py.

An image is a grid of codebook ids in 0..K-1; id K is [MASK]. The transformer maps tokens z_t at step t to
log p(z0 | z_t) over the K codes (the "x0-parameterisation" of VQ-Diffusion). Classifier-free guidance mixes the
conditional and unconditional log-probabilities, log p_g = log p_u + g (log p_c - log p_u), renormalised over the
codes, as diffusers' pipeline does; both passes run as one batch of 2N (one transformer call). The unconditional
pass uses the learned "empty prompt" embeddings when the model has them (ITHQ does), else the encoded empty prompt.
Prompt embeddings are normalised per token, as VQ-Diffusion was trained. A transformer without cross-attention
(``cross_attention_dim`` None) is unconditional: it takes no prompt and no guidance (the test fixture
tests/fixtures/discrete_digits16 is one).

Traps handled here (found by running the diffusers VQ-Diffusion pipeline): the transformer refuses timesteps at or
above its ``num_embeds_ada_norm`` (checked at load against the scheduler, refused per call with a one-line error); the
code count, the transformer's vector count and the scheduler's classes must agree (K + 1).
The native size is fixed: the transformer's positional embeddings cover one token grid; smaller images are the
top-left of that canvas (solvers crop the decode), larger ones are refused.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ModelError, UsageError
from .base import Conditioning, DiscretePrior, check_channels, freeze_network
from .files import text_conditioning


class VQDiffusionPrior(DiscretePrior):
    """VQ-Diffusion in the discrete-prior contract. ``cfg_embeddings`` (L, D): learned unconditional embeddings
    or None. ``dtype``: the networks' dtype (None keeps theirs); log-probabilities are returned in float32."""

    def __init__(self, vqvae: torch.nn.Module, transformer: torch.nn.Module, scheduler: Any, *,
                 cfg_embeddings: torch.Tensor | None = None, name: str = "", prompt: str = "",
                 text_encoder: torch.nn.Module | None = None, tokenizer: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        self.device, self.dtype = freeze_network(transformer, dtype)
        freeze_network(vqvae, self.dtype)
        if text_encoder is not None:
            freeze_network(text_encoder, None)
        self.vqvae, self.transformer, self.scheduler = vqvae, transformer, scheduler
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.name, self.prompt = name, prompt
        self.cfg_embeddings = None if cfg_embeddings is None else cfg_embeddings.to(self.device, torch.float32)
        self.codebook_size = int(vqvae.config.num_vq_embeddings)
        self.mask_id = self.codebook_size
        vectors = int(transformer.config.num_vector_embeds)
        classes = int(scheduler.num_embed)
        if vectors != self.codebook_size + 1 or classes != vectors:
            raise ModelError(f"model '{name}': {self.codebook_size} codes, but the transformer has {vectors} "
                             f"vector embeddings and the scheduler {classes} classes (both must be codes + 1)")
        steps = int(scheduler.config.num_train_timesteps)
        ada_norm = int(getattr(transformer.config, "num_embeds_ada_norm", steps) or steps)
        if steps > ada_norm:
            raise ModelError(f"model '{name}': the scheduler has {steps} steps but the transformer embeds only "
                             f"{ada_norm} timesteps")
        self.num_steps = steps
        self.grid = (int(transformer.config.sample_size), int(transformer.config.sample_size))
        self.downscale = 2 ** max(len(vqvae.config.block_out_channels) - 1, 0)
        self.channels = int(vqvae.config.in_channels)
        self.native_size = (self.grid[0] * self.downscale, self.grid[1] * self.downscale)
        self.code_dim = int(vqvae.config.vq_embed_dim or vqvae.config.latent_channels)
        self.conditional = getattr(transformer.config, "cross_attention_dim", None) is not None

    # ------------------------------------------------------------------------------------------------ prior
    def log_p0(self, tokens: torch.Tensor, t: int, cond: Conditioning | None = None) -> torch.Tensor:
        t = int(t)
        if not 0 <= t < self.num_steps:
            raise UsageError(f"step {t} is outside the model's 0..{self.num_steps - 1}")
        cond = cond if cond is not None else self.condition()
        tokens = tokens.to(self.device).long()
        n = tokens.shape[0]
        timestep = torch.tensor(t, device=self.device)  # one t per call: the ada-norm takes a scalar step
        if not self.conditional:  # no prompt, so nothing to guide: the negative pass would be this same pass
            return self.transformer(tokens, timestep=timestep, return_dict=False)[0].float()

        def embed(embeddings: torch.Tensor | None) -> torch.Tensor:
            if embeddings is None:
                raise UsageError(f"model '{self.name}' is text-conditioned: give prompt embeddings")
            e = embeddings.to(self.device, self.dtype)
            return (e if e.dim() == 3 else e[None]).expand(n, -1, -1)

        if not cond.guided:
            out = self.transformer(tokens, encoder_hidden_states=embed(cond.embeddings), timestep=timestep,
                                   return_dict=False)[0]
            return out.float()
        # classifier-free guidance: the negative and the conditional pass as one batch of 2N (one transformer call,
        # as the latent prior does); the rows are independent, so this equals two passes to float rounding
        both = self.transformer(torch.cat([tokens, tokens]), timestep=timestep, return_dict=False,
                                encoder_hidden_states=torch.cat([embed(cond.negative), embed(cond.embeddings)]))[0]
        negative, conditional = both.float().chunk(2)
        out = negative + cond.guidance * (conditional - negative)  # as base.guide
        return out - torch.logsumexp(out, dim=1, keepdim=True)

    def schedule(self) -> dict[str, torch.Tensor]:
        s, steps = self.scheduler, self.num_steps
        return {
            "alpha_bar": s.log_cumprod_at[:steps].exp().float(),
            "beta_bar": s.log_cumprod_bt[:steps].exp().float(),
            "gamma_bar": s.log_cumprod_ct[:steps].exp().float(),
        }

    def condition(self, prompt: str | None = None, negative_prompt: str | None = None,
                  guidance: float = 1.0) -> Conditioning:
        # VQ-Diffusion was trained on unit-norm token vectors, with learned embeddings for the empty prompt
        return text_conditioning(self, prompt, negative_prompt, guidance, normalise=True,
                                 learned_negative=self.cfg_embeddings)

    # ------------------------------------------------------------------------------------------ decoder
    def codebook(self) -> torch.Tensor:
        return self.vqvae.quantize.embedding.weight.float()

    def decode_soft(self, weights: torch.Tensor) -> torch.Tensor:
        n, length, k = weights.shape
        h, w = self.grid
        if length != h * w or k != self.codebook_size:
            raise UsageError(f"soft codes of shape {tuple(weights.shape)} do not fit "
                             f"({n}, {h * w}, {self.codebook_size})")
        codes = weights.to(self.device, torch.float32) @ self.codebook()  # (N, L, D): a mix of code vectors
        codes = codes.view(n, h, w, self.code_dim).permute(0, 3, 1, 2).contiguous()
        return self.vqvae.decode(codes.to(self.dtype), force_not_quantize=True).sample.float()

    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, L) or (N, h, w) -> images: the codebook lookup (no mask ids allowed)."""
        n = ids.shape[0]
        h, w = self.grid
        codes = self.vqvae.quantize.get_codebook_entry(ids.reshape(n, h * w).to(self.device), (n, h, w, self.code_dim))
        return self.vqvae.decode(codes.to(self.dtype), force_not_quantize=True).sample.float()

    def token_grid(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        c, h, w = (int(v) for v in image_shape)
        check_channels(int(self.channels), c)
        nh, nw = self.native_size
        if h > nh or w > nw:
            raise UsageError(f"the discrete prior works up to its native size {nw}x{nh} but the image is {w}x{h}",
                             hint=f"crop or resize the image to at most {nw}x{nh}")
        return self.grid  # smaller images: the top-left of the native canvas (solvers crop the decode)
