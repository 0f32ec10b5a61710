"""diffrestore.registry.cache: where the cache lives (DIFFRESTORE_CACHE, XDG_CACHE_HOME, HOME) and the
offline switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore import registry as reg


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------- cache dir ----
def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert reg.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DIFFRESTORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert reg.cache_dir() == tmp_path / "xdg" / "diffrestore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert reg.cache_dir() == tmp_path / "home" / ".cache" / "diffrestore"
    assert not reg.cache_dir().resolve().is_relative_to(reg.PACKAGE_DIR)


def test_offline_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reg.is_offline() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert reg.is_offline() is True
    assert reg.is_offline(False) is False  # an explicit argument wins
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("DIFFRESTORE_OFFLINE", "yes")
    assert reg.is_offline() is True
