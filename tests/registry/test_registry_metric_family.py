"""The "metric" family: weights of metric networks are downloaded and cached like a prior's, but they are no
prior (kind "metric", no method) and no tiny model imitates them."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import RegistryError

ENTRY = '''schema_version = 1

[models.weights-a]
family = "metric"
description = "d"
licence = "MIT"
resolution = 0
tasks = ["metrics"]
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


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


def _load(tmp_path: Path, text: str) -> reg.Registry:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return reg.load_registry(path)


def test_a_metric_entry_is_downloaded_and_cached_but_no_prior(tmp_path: Path) -> None:
    entry = _load(tmp_path, ENTRY.format(extra=FILES)).get("weights-a")
    assert entry.downloadable and entry.kind == "metric" and "metric" not in reg.DOWNLOADED_FAMILIES
    assert reg.cache_state(entry) == "no"
    (reg.model_dir(entry)).mkdir(parents=True)
    (reg.model_dir(entry) / "a-0123abcd.pth").write_bytes(b"x")
    assert reg.cache_state(entry) == "yes"


def test_a_metric_entry_needs_files_and_sources(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="key 'files': missing"):
        _load(tmp_path, ENTRY.format(extra=""))


def test_no_tiny_model_imitates_metric_weights(tmp_path: Path) -> None:
    text = ENTRY.replace('family = "metric"', 'family = "tiny"\nof = "metric"\nseed = 0').format(extra="")
    with pytest.raises(RegistryError, match="key 'of'"):
        _load(tmp_path, text)


def test_the_shipped_metric_entries_pin_what_is_known(tmp_path: Path) -> None:
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
