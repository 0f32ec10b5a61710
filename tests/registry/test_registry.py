"""diffrestore.registry as a package: the shipped models.toml keeps its promises (families, kinds, pinned
hashes, sources), a model's kind follows its family, and the registry imports neither torch nor the priors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diffrestore import registry as reg
from diffrestore.errors import ModelError

ROOT = Path(__file__).resolve().parents[2]


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


#: the prior kind of each family, as the architecture defines it (a tiny model: the kind of its family `of`)
EXPECTED_KIND = {"builtin": "pixel", "pixel": "pixel", "adm": "pixel", "latent-kl": "latent", "latent-vq": "latent",
                 "score-sde": "pixel", "edm": "pixel", "discrete-vq": "discrete", "metric": "metric",
                 "operator": "operator"}


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


@pytest.mark.parametrize(
    ("family", "of"), [(family, "") for family in EXPECTED_KIND] + [("tiny", of) for of in reg.DOWNLOADED_FAMILIES]
)
def test_kind_follows_the_family_and_a_tiny_model_its_target(family: str, of: str) -> None:
    entry = reg.ModelEntry(name="m", family=family, of=of, description="d", licence="L", resolution=0,
                           tasks=["any"], verified=True)
    assert entry.kind == EXPECTED_KIND[of or family]


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


def test_the_ct_prior_ships_inside_the_package(shipped: reg.Registry) -> None:
    import json

    entry = shipped.get("ct-phantom")
    assert entry.family == "builtin" and list(entry.tasks) == ["ct"]
    folder = entry.builtin_dir()
    assert folder == reg.PACKAGE_DIR / "weights" / "ct"
    assert (folder / "model.safetensors").is_file() and (folder / "MODEL_CARD.md").is_file()
    assert json.loads((folder / "config.json").read_text())["channels"] == 1  # a CT slice has one
    assert reg.cache_state(entry) == "built-in"
