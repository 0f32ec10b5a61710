"""diffrestore: restore degraded images by posterior sampling with diffusion-model priors.

Heavy dependencies (torch, diffusers) are imported lazily inside functions, so importing this package and
running ``diffrestore --help`` stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffrestore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Restoration", "__version__", "restore", "score", "score_folders"]


def __getattr__(name: str):
    # restore() and score() live in api.py, which pulls in the engine; load it on first use so `import diffrestore`
    # stays light.
    if name in ("restore", "Restoration", "score", "score_folders"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffrestore' has no attribute {name!r}")
