"""The ``--method`` names and the prior kind each one needs ("pixel", "latent" or "discrete").

A model's kind follows from its family (``ModelEntry.kind`` in the registry), so this table is the one place
that decides which methods fit which models; listing methods per entry in models.toml went stale. Kept free of
torch so ``diffrestore models`` can show it at start-up.
"""

from __future__ import annotations

#: method -> the prior kind it works with; every method today denoises in pixel space
METHOD_KINDS: dict[str, str] = {"dps": "pixel", "mcg": "pixel", "daps": "pixel", "mmse": "pixel"}
#: the --preset names every method accepts (each solver's ``presets`` table has exactly these keys)
PRESET_NAMES: tuple[str, ...] = ("paper", "fast")


def methods_for_kind(kind: str) -> tuple[str, ...]:
    """The methods that can use a prior of ``kind``, sorted; empty when none does (yet)."""
    return tuple(sorted(name for name, needs in METHOD_KINDS.items() if needs == kind))


__all__ = ["METHOD_KINDS", "PRESET_NAMES", "methods_for_kind"]
