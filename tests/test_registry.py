"""models.toml: the shipped registry's promises, schema validation with precise errors, cache location, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffrestore import registry as reg
from diffrestore.cli.models import models_app
from diffrestore.errors import DownloadError, ModelError, RegistryError
from diffrestore.solvers.methods import METHOD_KINDS, methods_for_kind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def shipped() -> reg.Registry:
    return reg.load_registry()


# ---------------------------------------------------------------------------------- shipped registry ----
def test_top_level_models_toml_is_the_package_one() -> None:
    assert (ROOT / "models.toml").resolve() == reg.DEFAULT_REGISTRY.resolve()


def test_issue_entries_exist_with_their_families(shipped: reg.Registry) -> None:
    expected = {
        "builtin": "builtin",
        "ffhq-256": "adm",
        "imagenet-256": "adm",
        "celebahq-256": "pixel",
        "church-256": "pixel",
        "bedroom-256": "pixel",
        "cat-256": "pixel",
        "sd15": "latent-kl",
        "sd21-base": "latent-kl",
        "ldm-celebahq-256": "latent-vq",
        "vq-diffusion-ithq": "discrete-vq",
    }
    for name, family in expected.items():
        assert shipped.get(name).family == family
    tiny_targets = {e.of for e in shipped if e.family == "tiny"}
    assert tiny_targets == set(reg.DOWNLOADED_FAMILIES)  # a tiny model of every downloaded family


#: the prior kind of each family, as the issue defines it (a tiny model: the kind of its family `of`)
EXPECTED_KIND = {"builtin": "pixel", "pixel": "pixel", "adm": "pixel", "latent-kl": "latent", "latent-vq": "latent",
                 "discrete-vq": "discrete"}


def test_every_shipped_entry_has_the_kind_of_its_family(shipped: reg.Registry) -> None:
    for entry in shipped:
        assert entry.kind == EXPECTED_KIND[entry.of if entry.family == "tiny" else entry.family], entry.name
    assert shipped.get("tiny-adm").kind == "pixel" and shipped.get("tiny-latent-vq").kind == "latent"
    assert shipped.get("tiny-discrete-vq").kind == "discrete"


def test_verified_flag_is_honest(shipped: reg.Registry) -> None:
    """verified = true only where every file has a pinned sha256 and size and every hf source a commit."""
    for entry in shipped:
        if not entry.downloadable:
            continue
        complete = all(f.sha256 and f.size for f in entry.files) and all(
            s.revision for s in entry.sources if s.type == "hf"
        )
        if entry.verified:
            assert complete, f"{entry.name} claims verified but has unpinned files or revisions"
        else:
            assert "UNVERIFIED" in entry.notes or "UNRESOLVED" in entry.notes, entry.name


def test_adm_entries_try_the_hf_mirror_first_then_the_original_url(shipped: reg.Registry) -> None:
    for name in ("ffhq-256", "imagenet-256"):
        kinds = [s.type for s in shipped.get(name).sources]
        assert kinds == ["hf", "url"], name
        assert shipped.get(name).diffusion["noise_schedule"] == "linear"
        assert shipped.get(name).arch["learn_sigma"] is True


def test_stable_diffusion_entries_fetch_fp16_safetensors_only(shipped: reg.Registry) -> None:
    for name in ("sd15", "sd21-base"):
        entry = shipped.get(name)
        weights = [f.path for f in entry.files if not f.path.endswith((".json", ".txt"))]
        assert weights and all(p.endswith(".fp16.safetensors") for p in weights), weights
        assert entry.variant == "fp16" and entry.prompt


def test_ldm_latent_scale_is_forced_to_one(shipped: reg.Registry) -> None:
    assert shipped.get("ldm-celebahq-256").latent_scale == 1.0


def test_builtin_default_points_into_the_package(shipped: reg.Registry) -> None:
    entry = shipped.get("builtin")
    assert shipped.get("default") is entry and "default" in shipped  # the alias
    assert entry.builtin_dir() == reg.PACKAGE_DIR / "weights" / "default"
    assert reg.cache_state(entry) == "built-in" and reg.human_size(entry) == "-"


def test_unknown_name_suggests_close_ones(shipped: reg.Registry) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'ffhq256'.*did you mean ffhq-256"):
        shipped.get("ffhq256")


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


@pytest.mark.parametrize(
    ("family", "of"), [(family, "") for family in EXPECTED_KIND] + [("tiny", of) for of in reg.DOWNLOADED_FAMILIES]
)
def test_kind_follows_the_family_and_a_tiny_model_its_target(family: str, of: str) -> None:
    entry = reg.ModelEntry(name="m", family=family, of=of, description="d", licence="L", resolution=0,
                           tasks=["any"], verified=True)
    assert entry.kind == EXPECTED_KIND[of or family]


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


# ------------------------------------------------------------------------------------------------- CLI ----
def test_list_plain_and_json() -> None:
    runner = CliRunner()
    plain = runner.invoke(models_app, ["list"])
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["name", "family", "size", "cached", "licence"]
    ffhq = next(line for line in lines if line.startswith("ffhq-256 "))
    assert "adm" in ffhq and "374.4 MB" in ffhq and " no " in ffhq
    rows = json.loads(runner.invoke(models_app, ["list", "--json"]).stdout)
    by_name = {row["name"]: row for row in rows}
    assert by_name["sd15"]["cached"] == "no" and by_name["tiny-adm"]["cached"] == "built-in"
    assert by_name["imagenet-256"]["files"][0]["sha256"].startswith("a37c32ff")


def test_list_json_shows_kind_and_fitting_methods_instead_of_solvers() -> None:
    rows = json.loads(CliRunner().invoke(models_app, ["list", "--json"]).stdout)
    by_name = {row["name"]: row for row in rows}
    assert all("solvers" not in row for row in rows)
    assert by_name["ffhq-256"]["kind"] == "pixel"
    assert by_name["ffhq-256"]["methods"] == ["daps", "dps", "mcg", "mmse"]
    assert by_name["tiny-adm"]["kind"] == "pixel" and by_name["tiny-adm"]["methods"] == ["daps", "dps", "mcg", "mmse"]
    assert by_name["sd15"]["kind"] == "latent" and by_name["sd15"]["methods"] == ["dwgf", "latent-daps"]
    assert by_name["vq-diffusion-ithq"]["kind"] == "discrete"


def test_info_shows_kind_and_methods() -> None:
    runner = CliRunner()
    pixel = runner.invoke(models_app, ["info", "ffhq-256"]).stdout
    assert "  kind        pixel" in pixel and "  methods     daps, dps, mcg, mmse" in pixel and "solvers" not in pixel
    latent = runner.invoke(models_app, ["info", "sd15"]).stdout
    assert "  kind        latent" in latent and "methods     dwgf, latent-daps" in latent
    info = json.loads(runner.invoke(models_app, ["info", "tiny-latent-kl", "--json"]).stdout)
    assert info["kind"] == "latent" and info["methods"] == ["dwgf", "latent-daps"] and "solvers" not in info
    discrete = runner.invoke(models_app, ["info", "vq-diffusion-ithq"]).stdout
    assert "  kind        discrete" in discrete and "methods     g2d2" in discrete


def test_info_marks_unverified_hashes() -> None:
    out = CliRunner().invoke(models_app, ["info", "celebahq-256"]).stdout
    assert "diffusion_pytorch_model.bin" in out and "UNVERIFIED" in out
    assert "verified    NO" in out
    assert "hf://google/ddpm-celebahq-256@cd5c944777ea2668051904ead6cc120739b86c4d" in out


def test_path_of_a_model_not_downloaded_names_the_command() -> None:
    result = CliRunner().invoke(models_app, ["path", "ffhq-256"])
    assert isinstance(result.exception, DownloadError)
    assert "diffrestore models download ffhq-256" in str(result.exception)


def test_registry_option_and_env_select_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD.replace("[models.m]", "[models.mine]").replace("models.m.", "models.mine."))
    runner = CliRunner()
    listed = runner.invoke(models_app, ["--registry", str(path), "list", "--json"]).stdout
    assert [r["name"] for r in json.loads(listed)] == ["mine"]
    monkeypatch.setenv("DIFFRESTORE_REGISTRY", str(path))
    assert [r["name"] for r in json.loads(runner.invoke(models_app, ["list", "--json"]).stdout)] == ["mine"]
    assert reg.load_registry().names() == ["mine"]


def test_verify_with_nothing_cached_says_so() -> None:
    result = CliRunner().invoke(models_app, ["verify"])
    assert result.exit_code == 0
    assert "no downloaded models" in result.output


def test_registry_and_cli_models_do_not_import_torch() -> None:
    code = (
        "import sys, diffrestore.registry, diffrestore.cli.models; "
        "sys.exit(1 if 'torch' in sys.modules or 'diffusers' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_registry_never_imports_the_priors() -> None:
    """The registry handles files only; the priors package builds networks from what it returns."""
    code = "import sys, diffrestore.registry; sys.exit(1 if 'diffrestore.priors' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    for source in sorted((reg.PACKAGE_DIR / "registry").glob("*.py")):  # not even inside a function
        text = source.read_text(encoding="utf-8")
        assert "priors import" not in text and "from ..priors" not in text and "import diffrestore.priors" not in text
    assert not hasattr(reg, "resolve_prior") and not hasattr(reg, "resolve_components")


def test_methods_for_kind() -> None:
    assert methods_for_kind("pixel") == ("daps", "dps", "mcg", "mmse")
    assert methods_for_kind("latent") == ("dwgf", "latent-daps") and methods_for_kind("discrete") == ("g2d2",)
    assert methods_for_kind("no-such-kind") == ()
    assert set(METHOD_KINDS.values()) <= set(reg.FAMILY_KINDS.values())  # every method fits some family


def test_alias_clashing_with_a_model_name_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace('verified = false', 'verified = false\naliases = ["m"]', 1)
    with pytest.raises(RegistryError, match=r"entry 'm': key 'aliases': 'm' is already a model name or alias"):
        _load(tmp_path, text)
