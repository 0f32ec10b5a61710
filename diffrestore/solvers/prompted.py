"""Prompt conditioning for solvers on text-conditioned latent priors (LatentDAPS, DWGF): the config's prompt,
negative prompt and guidance, encoded once per loaded prior.

The config must have ``prompt`` (None: the model's default prompt), ``negative_prompt``, ``guidance`` (None:
``default_guidance`` on text-conditioned models, no guidance on the others) and ``default_guidance``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from .rules import Rule, positive, text

if TYPE_CHECKING:
    from ..priors.base import Conditioning, LatentPrior


def unwrapped(prior: Any) -> Any:
    """The prior behind the engine's per-item and tiling wrappers (they forward to ``inner``)."""
    while hasattr(prior, "inner"):
        prior = prior.inner
    return prior


@dataclasses.dataclass
class PromptSettings:
    """The config fields of a prompt-conditioned solver (solvers override the defaults they need; their configs
    take these ``rules`` into theirs)."""

    prompt: str | None = None
    negative_prompt: str = ""
    guidance: float | None = None
    default_guidance: float = 1.0

    rules: ClassVar[dict[str, Rule]] = {"prompt": text(optional=True), "negative_prompt": text(),
                                        "guidance": positive(optional=True), "default_guidance": positive()}


class PromptConditioned:
    """Mixin: ``prepare`` encodes the prompt before any image (one-line errors for a prompt on an unconditional
    model or a missing text encoder), ``conditioning`` returns it, cached for the prior it was made for."""

    config: Any
    _conditioning: tuple[Any, Conditioning] | None = None

    def prepare(self, prior: LatentPrior) -> None:
        self.conditioning(prior)

    def conditioning(self, prior: LatentPrior) -> Conditioning:
        cfg = self.config
        key = unwrapped(prior)
        if self._conditioning is None or self._conditioning[0] is not key:
            cond = prior.condition(cfg.prompt, cfg.negative_prompt or None, self.guidance_for(prior))
            self._conditioning = (key, cond)
        return self._conditioning[1]

    def guidance_for(self, prior: Any) -> float:
        """The guidance scale a run uses: ``guidance``, else ``default_guidance`` on a text-conditioned model and
        1 (no guidance, the conditional pass only) on the others."""
        cfg = self.config
        if cfg.guidance is not None:
            return float(cfg.guidance)
        return float(cfg.default_guidance) if bool(getattr(prior, "conditional", False)) else 1.0

    def resolved_prompt(self, prior: Any) -> dict[str, Any]:
        """What the conditioning takes from the prior, for ``Solver.resolved`` (no text encoder runs): whether
        the model reads the prompt, and the guidance scale."""
        return {"conditional": bool(getattr(prior, "conditional", False)),
                "guidance": self.guidance_for(prior)}


__all__ = ["PromptConditioned", "PromptSettings", "unwrapped"]
