"""diffrestore.registry.parse: models.toml schema validation with precise errors (entry and key named, exit 3),
and which file is read (--registry, DIFFRESTORE_REGISTRY)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffrestore import registry as reg
from diffrestore.cli.models import models_app
from diffrestore.errors import RegistryError


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------------------- validation ----
GOOD = """schema_version = 1
[models.m]
family = "pixel"
description = "d"
licence = "L"
resolution = 8
tasks = ["any"]
verified = false
[[models.m.files]]
path = "config.json"
sha256 = ""
size = 0
[[models.m.sources]]
type = "hf"
repo = "owner/repo"
revision = "0123456789abcdef0123456789abcdef01234567"
"""


def _load(tmp_path: Path, text: str) -> reg.Registry:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return reg.load_registry(path)


def test_minimal_registry_loads(tmp_path: Path) -> None:
    entry = _load(tmp_path, GOOD).get("m")
    assert entry.sources[0].revision.startswith("0123") and entry.files[0].path == "config.json"


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        (
            'revision = "0123456789abcdef0123456789abcdef01234567"',
            'revision = "main"',
            "sources[0].revision",
            "40-character",
        ),
        ('licence = "L"\n', "", "licence", "missing"),
        ('family = "pixel"', 'family = "pixels"', "family", "unknown family"),
        ('sha256 = ""', 'sha256 = "ABC"', "files[0].sha256", "64 lower-case hex"),
        ('path = "config.json"', 'path = "../config.json"', "files[0].path", "plain relative path"),
        ("resolution = 8", 'resolution = "8"', "resolution", "must be int"),
        ('tasks = ["any"]', 'tasks = ["any"]\nlicense = "typo"', "license", "unknown key"),
        ('type = "hf"', 'type = "s3"', "sources[0].type", "'hf' or 'url'"),
        ('repo = "owner/repo"', 'repo = "just-a-name"', "sources[0].repo", "owner/name"),
        ("size = 0", "size = -1", "files[0].size", ">= 0"),
        ("verified = false", 'verified = "no"', "verified", "must be bool"),
    ],
)
def test_malformed_entry_names_entry_and_key(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    assert old in GOOD
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, GOOD.replace(old, new, 1))
    message = str(info.value)
    assert "entry 'm'" in message and f"key '{key}'" in message and problem in message, message
    assert info.value.exit_code == 3


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        (
            '[[models.m.sources]]\ntype = "url"\nurl = "http://example.com/x"\nfile = "config.json"\n',
            "sources[1].url",
            "https",
        ),
        (
            '[[models.m.sources]]\ntype = "url"\nurl = "https://example.com/x"\nfile = "other.bin"\n',
            "sources[1].file",
            "not one of this model's files",
        ),
    ],
)
def test_bad_url_sources_are_rejected(tmp_path: Path, extra: str, key: str, problem: str) -> None:
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, GOOD + extra)
    assert f"key '{key}'" in str(info.value) and problem in str(info.value)


def test_family_specific_requirements(tmp_path: Path) -> None:
    latent = GOOD.replace('family = "pixel"', 'family = "latent-kl"')
    with pytest.raises(RegistryError, match=r"entry 'm': key 'prompt': missing"):
        _load(tmp_path, latent)
    with pytest.raises(RegistryError, match=r"entry 'm': key 'latent_scale': missing"):
        _load(tmp_path, latent.replace("verified = false", 'verified = false\nprompt = "p"'))
    adm = GOOD.replace('family = "pixel"', 'family = "adm"')
    with pytest.raises(RegistryError, match=r"entry 'm': key 'arch': missing"):
        _load(tmp_path, adm)
    with pytest.raises(RegistryError, match=r"entry 'm': key 'arch.num_chanels': unknown key"):
        _load(
            tmp_path, adm + "[models.m.arch]\nimage_size = 8\nnum_channels = 8\nnum_res_blocks = 1\nnum_chanels = 3\n"
        )
    tiny = GOOD.split("[[models.m.files]]")[0].replace('family = "pixel"', 'family = "tiny"')
    with pytest.raises(RegistryError, match=r"entry 'm': key 'of'"):
        _load(tmp_path, tiny)
    no_sources = GOOD.split("[[models.m.sources]]")[0]
    with pytest.raises(RegistryError, match=r"entry 'm': key 'sources': missing"):
        _load(tmp_path, no_sources)


def test_tiny_entry_parsed_from_toml_has_the_kind_of_its_target(tmp_path: Path) -> None:
    tiny = GOOD.split("[[models.m.files]]")[0].replace('family = "pixel"', 'family = "tiny"\nof = "latent-vq"')
    entry = _load(tmp_path, tiny + "latent_scale = 1.0\n[models.m.config]\nunet = { sample_size = 8 }\n").get("m")
    assert entry.kind == "latent" and "kind" not in vars(entry)  # derived, never stored


def test_retired_solvers_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, GOOD.replace('tasks = ["any"]', 'solvers = ["dps", "psld"]\ntasks = ["any"]', 1))
    message = str(info.value)
    assert "\n" not in message and "entry 'm'" in message and "key 'solvers'" in message, message
    assert "no longer part of the schema" in message and "remove this key" in message, message
    assert info.value.exit_code == 3


def test_broken_toml_and_wrong_schema_version(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not valid TOML"):
        _load(tmp_path, GOOD + "[models.m\n")
    with pytest.raises(RegistryError, match="schema_version"):
        _load(tmp_path, GOOD.replace("schema_version = 1", "schema_version = 2"))
    with pytest.raises(RegistryError, match="cannot read model registry"):
        reg.load_registry(tmp_path / "missing.toml")


def test_registry_option_and_env_select_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD.replace("[models.m]", "[models.mine]").replace("models.m.", "models.mine."))
    runner = CliRunner()
    listed = runner.invoke(models_app, ["--registry", str(path), "list", "--json"]).stdout
    assert [r["name"] for r in json.loads(listed)] == ["mine"]
    monkeypatch.setenv("DIFFRESTORE_REGISTRY", str(path))
    assert [r["name"] for r in json.loads(runner.invoke(models_app, ["list", "--json"]).stdout)] == ["mine"]
    assert reg.load_registry().names() == ["mine"]


def test_alias_clashing_with_a_model_name_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace('verified = false', 'verified = false\naliases = ["m"]', 1)
    with pytest.raises(RegistryError, match=r"entry 'm': key 'aliases': 'm' is already a model name or alias"):
        _load(tmp_path, text)


# ------------------------------------------------- values that used to pass (before the 2026-12-07 hardening) ----
ADM = GOOD.replace('family = "pixel"', 'family = "adm"') + (
    "[models.m.arch]\nimage_size = 8\nnum_channels = 8\nnum_res_blocks = 1\n")
LATENT = GOOD.replace('family = "pixel"', 'family = "latent-kl"').replace(
    "verified = false", 'verified = false\nprompt = "p"\nlatent_scale = 0.18')
URL = GOOD + '[[models.m.sources]]\ntype = "url"\nurl = "https://example.com/x"\nfile = "config.json"\n'


@pytest.mark.parametrize(
    ("text", "old", "new", "key", "problem"),
    [
        (LATENT, "latent_scale = 0.18", "latent_scale = nan", "latent_scale", "finite number > 0"),
        (LATENT, "latent_scale = 0.18", "latent_scale = inf", "latent_scale", "finite number > 0"),
        (ADM, "num_res_blocks = 1\n", "num_res_blocks = 1\ndropout = nan\n", "arch.dropout", "[0, 1)"),
        (ADM, "num_channels = 8", "num_channels = -3", "arch.num_channels", ">= 1"),
        (GOOD, 'path = "config.json"', 'path = "config\\u0000.json"', "files[0].path", "control characters"),
        (URL, "https://example.com/x", "https://exa mple.com/x", "sources[1].url", "white space"),
        (URL, "https://example.com/x", "https://example.com/\\u0000", "sources[1].url", "control character"),
        (URL, "https://example.com/x", "https:///x", "sources[1].url", "names no host"),
        (URL, "https://example.com/x", "https://example.com:99999/x", "sources[1].url", "out of range"),
    ],
)
def test_values_that_fail_later_are_refused_when_read(tmp_path: Path, text: str, old: str, new: str, key: str,
                                                      problem: str) -> None:
    assert old in text
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, text.replace(old, new, 1))
    message = str(info.value)
    assert "bad.toml" in message and f"key '{key}'" in message and problem in message, message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("schema_version = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (GOOD.replace("schema_version = 1", "schema_version = 1.0"), "must be 1, got 1.0"),
        (GOOD.replace("schema_version = 1", "schema_version = true"), "must be 1, got True"),
        (GOOD.replace("[models.m]", "[models.m"), "not valid TOML"),
    ],
)
def test_file_level_mistakes_name_the_file_and_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.toml")) and problem in message, message
    assert message.endswith(")") and ("models.toml" in message.rsplit("(", 1)[1]
                                      or "schema_version = 1" in message), message


def test_a_folder_as_registry_names_the_setting_to_fix(tmp_path: Path) -> None:
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(RegistryError) as info:
        reg.load_registry(tmp_path / "folder.toml")
    assert "folder.toml" in str(info.value) and "DIFFRESTORE_REGISTRY" in str(info.value)


def test_a_byte_order_mark_is_read_as_utf8(tmp_path: Path) -> None:
    assert _load(tmp_path, "\ufeff" + GOOD).get("m").files[0].path == "config.json"
