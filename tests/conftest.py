"""Shared test settings.

Tests use tiny tensors, where torch's intra-op threads cost more than they gain (measured 10-25x slower CG loops
on a loaded 2-core machine), so the suite runs torch single-threaded.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def without_pydicom(monkeypatch):
    """Imports of pydicom fail from here on, as on an install without the ``dicom`` extra."""
    import builtins

    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError("No module named 'pydicom'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
