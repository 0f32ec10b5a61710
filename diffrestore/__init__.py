"""diffrestore: restore degraded images by posterior sampling with diffusion-model priors.

Heavy dependencies (torch, diffusers) are imported lazily inside functions, so importing this package and
running ``diffrestore --help`` stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffrestore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
