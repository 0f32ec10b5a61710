"""``--model NAME|DIR`` -> a prior of any kind: the one resolver.

``prior_kind`` tells the kind before anything downloads (from the registry family, or from a local folder's
layout), so the engine can refuse a method/model mismatch at once. ``load_prior`` finds the files (registry:
downloaded and sha256-verified once, then cached; local folders: as they are) and builds the prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..registry import FAMILY_KINDS, Registry, ensure_local, load_registry

if TYPE_CHECKING:
    import torch

    from ..registry import Echo


def prior_kind(name_or_dir: str, *, registry: Registry | None = None) -> str | None:
    """"pixel", "latent" or "discrete" for a registry name or a local model folder, without loading or
    downloading anything; None when it is neither (``load_prior`` then says precisely what is wrong, after the
    inputs were checked)."""
    registry = registry if registry is not None else load_registry()
    plain_name = "/" not in name_or_dir and "\\" not in name_or_dir
    if plain_name and name_or_dir in registry:
        return registry.get(name_or_dir).kind
    folder = Path(name_or_dir).expanduser()
    if folder.is_dir():
        # Only a folder needs these (builtin imports torch): a registry name keeps the flag checks torch-free.
        from .builtin import is_model_dir
        from .files import detect_family

        if is_model_dir(folder):
            return "pixel"
        family = detect_family(folder)
        if family is not None:
            return FAMILY_KINDS[family]
    return None


def load_prior(
    name_or_dir: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    offline: bool | None = None,
    registry: Registry | None = None,
    trust_unverified: bool | None = None,
    echo: Echo | None = None,
) -> Any:
    """The prior for a registry name (downloaded and verified once) or a local folder: a pixel ``Prior``, a
    ``LatentPrior`` or a ``DiscretePrior`` (priors/base.py), as the family says.

    Local folders: a diffrestore model folder (config.json + model.safetensors), a diffusers UNet2DModel folder
    (config.json + diffusion_pytorch_model.*; scheduler_config.json optional) or a diffusers pipeline folder
    (model_index.json + its parts: pixel, Stable Diffusion, LDM or VQ-Diffusion).
    """
    from .loaders import load_entry, load_folder

    entry, folder = ensure_local(
        name_or_dir, offline=offline, registry=registry, trust_unverified=trust_unverified, echo=echo
    )
    if entry is None:
        if folder is None:
            raise ModelError("no model given")
        return load_folder(folder, device=device, dtype=dtype)
    return load_entry(entry, folder, device=device, dtype=dtype)
