"""Families of weights that are no prior: "metric" (LPIPS / FID networks) and "operator" (bkse's learned blur).
Their files are downloaded and cached like a prior's, but no method uses them (kind = the family) and no tiny
model imitates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import RegistryError
from diffrestore.solvers.methods import methods_for_kind

ENTRY = '''schema_version = 1

[models.weights-a]
family = "{family}"
description = "d"
licence = "MIT"
resolution = 0
tasks = ["t"]
verified = false
notes = "UNVERIFIED"
{extra}
'''
FILES = '''[[models.weights-a.files]]
path = "a-0123abcd.pth"
sha256 = ""
size = 0

[[models.weights-a.sources]]
type = "url"
url = "https://example.invalid/a-0123abcd.pth"
file = "a-0123abcd.pth"
'''
FAMILIES = ("metric", "operator")


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


def _load(tmp_path: Path, text: str) -> reg.Registry:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return reg.load_registry(path)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_weights_entry_is_downloaded_and_cached_but_no_prior(tmp_path: Path, family: str) -> None:
    registry = _load(tmp_path, ENTRY.format(family=family, extra=FILES))
    entry = registry.get("weights-a")
    assert entry.downloadable and entry.kind == family and family not in reg.DOWNLOADED_FAMILIES
    assert methods_for_kind(family) == ()
    assert reg.cache_state(entry) == "no"
    reg.model_dir(entry).mkdir(parents=True)
    (reg.model_dir(entry) / "a-0123abcd.pth").write_bytes(b"x")
    assert reg.cache_state(entry) == "yes"
    assert reg.ensure_local("weights-a", offline=True, registry=registry)[1] == reg.model_dir(entry)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_weights_entry_needs_files_and_no_tiny_model_imitates_it(tmp_path: Path, family: str) -> None:
    with pytest.raises(RegistryError, match="key 'files': missing"):
        _load(tmp_path, ENTRY.format(family=family, extra=""))
    text = ENTRY.replace('family = "{family}"', f'family = "tiny"\nof = "{family}"\nseed = 0').format(extra="")
    with pytest.raises(RegistryError, match="key 'of'"):
        _load(tmp_path, text)


def test_the_shipped_metric_entries_pin_what_is_known() -> None:
    shipped = reg.load_registry()
    metric = [e for e in shipped if e.family == "metric"]
    assert {e.name for e in metric} >= {"alexnet-imagenet", "vgg16-imagenet", "lpips-heads", "lpips-piq-heads",
                                        "inception-fid", "inception-v3-imagenet"}
    heads = shipped.get("lpips-heads")
    assert heads.verified and {f.path: f.sha256[:8] for f in heads.files} == {"alex.pth": "df73285e",
                                                                             "vgg.pth": "a78928a0"}
    for entry in metric:
        for spec in entry.files:
            prefix = spec.path.rsplit("-", 1)[-1].split(".")[0] if "-" in spec.path else ""
            if spec.sha256 and len(prefix) == 8:
                assert spec.sha256.startswith(prefix), spec.path  # torch.hub names carry the hash's start


def test_the_shipped_bkse_entry_says_what_is_unknown() -> None:
    entry = reg.load_registry().get("bkse-gopro-wvae")
    assert entry.family == "operator" and entry.kind == "operator" and not entry.verified
    assert [(f.path, f.sha256, f.size) for f in entry.files] == [("GOPRO_wVAE.pth", "", 0)]
    assert "UNVERIFIED" in entry.notes and "1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy" in entry.notes
    assert all("1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy" in s.url for s in entry.sources)
    assert entry.licence == "unknown" and "not stated" in entry.licence_note
