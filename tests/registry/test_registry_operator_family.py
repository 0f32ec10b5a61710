"""The "operator" family: the weights of a learned measurement operator (bkse's blur) are downloaded and cached
like a prior's, but they are no prior (kind "operator", no method) and no tiny model imitates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import RegistryError
from diffrestore.solvers.methods import methods_for_kind

ENTRY = '''schema_version = 1

[models.blur-a]
family = "operator"
description = "d"
licence = "unknown"
resolution = 0
tasks = ["deblur"]
verified = false
notes = "UNVERIFIED"
{extra}
'''
FILES = '''[[models.blur-a.files]]
path = "a.pth"
sha256 = ""
size = 0

[[models.blur-a.sources]]
type = "url"
url = "https://example.invalid/a.pth"
file = "a.pth"
'''


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


def _load(tmp_path: Path, text: str) -> reg.Registry:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return reg.load_registry(path)


def test_an_operator_entry_is_downloaded_and_cached_but_no_prior(tmp_path: Path) -> None:
    entry = _load(tmp_path, ENTRY.format(extra=FILES)).get("blur-a")
    assert entry.downloadable and entry.kind == "operator" and "operator" not in reg.DOWNLOADED_FAMILIES
    assert methods_for_kind("operator") == ()
    assert reg.cache_state(entry) == "no"
    reg.model_dir(entry).mkdir(parents=True)
    (reg.model_dir(entry) / "a.pth").write_bytes(b"x")
    assert reg.cache_state(entry) == "yes"
    assert reg.ensure_local("blur-a", offline=True, registry=_load(tmp_path, ENTRY.format(extra=FILES)))[1] == \
        reg.model_dir(entry)


def test_an_operator_entry_needs_files_and_no_tiny_model_imitates_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="key 'files': missing"):
        _load(tmp_path, ENTRY.format(extra=""))
    text = ENTRY.replace('family = "operator"', 'family = "tiny"\nof = "operator"\nseed = 0').format(extra="")
    with pytest.raises(RegistryError, match="key 'of'"):
        _load(tmp_path, text)


def test_the_shipped_bkse_entry_says_what_is_unknown() -> None:
    entry = reg.load_registry().get("bkse-gopro-wvae")
    assert entry.family == "operator" and entry.kind == "operator" and not entry.verified
    assert [(f.path, f.sha256, f.size) for f in entry.files] == [("GOPRO_wVAE.pth", "", 0)]
    assert "UNVERIFIED" in entry.notes and "1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy" in entry.notes
    assert all("1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy" in s.url for s in entry.sources)
    assert entry.licence == "unknown" and "not stated" in entry.licence_note
