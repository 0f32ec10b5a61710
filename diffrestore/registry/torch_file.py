"""One safe reader for the published PyTorch weight files (``.pt`` / ``.pth``: ADM, score-SDE, the metrics'
networks, bkse), so every family says the same thing when a file is missing or damaged.

``torch.load(weights_only=True)``: only tensors and plain containers are unpickled, no code from the file ever
runs; ``map_location="cpu"``: some files were saved from a GPU and would otherwise need CUDA to open. Torch is
imported inside the function (the registry stays importable without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = ["read_torch_file"]


def read_torch_file(path: str | Path, what: str, *, model: str | None = None) -> Any:
    """The unpickled content of ``path`` (tensors and containers only). ``what`` names the file in messages
    ("ADM checkpoint"); ``model``, the registry name a download fixes. ModelError, one line, when the file is
    missing or is no readable tensor file (pickle, zip and torch errors alike)."""
    import torch

    path = Path(path)
    again = f"`diffrestore models download {model} --force`" if model else "download the file again"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fetch = f"run `diffrestore models download {model}`" if model else "check the path"
        raise ModelError(f"{what} '{path}' is missing", hint=fetch) from None
    except Exception as exc:  # pickle, zip and torch errors come in many types; say which, briefly
        reason = " ".join(str(exc).split())[:200] or "no detail"
        raise ModelError(f"{what} '{path}' cannot be read as a tensor file ({type(exc).__name__}: {reason})",
                         hint=f"the download may be damaged: {again}") from None
