"""diffrestore.cli.models: ``diffrestore models list / info / path / verify`` on the shipped registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffrestore.cli.models import models_app
from diffrestore.errors import DownloadError


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))


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


def test_metric_weights_say_which_metric_they_serve() -> None:
    """A metric network's entry is not a prior without methods "yet": list, info and --json name its metrics."""
    runner = CliRunner()
    info = runner.invoke(models_app, ["info", "alexnet-imagenet"]).stdout
    assert "  methods     none: weights for the lpips metric" in info and "none yet" not in info, info
    both = runner.invoke(models_app, ["info", "inception-fid"]).stdout
    assert "weights for the fid and kid metrics" in both
    rows = {row["name"]: row for row in json.loads(runner.invoke(models_app, ["list", "--json"]).stdout)}
    assert rows["vgg16-imagenet"]["metrics"] == ["lpips-vgg", "lpips-piq"] and rows["vgg16-imagenet"]["methods"] == []
    assert "metrics" not in rows["ffhq-256"]
    listed = runner.invoke(models_app, ["list"]).stdout.splitlines()
    assert "metric (lpips)" in next(line for line in listed if line.startswith("alexnet-imagenet "))


def test_a_metric_entry_as_model_is_refused_as_metric_weights() -> None:
    from diffrestore.errors import UsageError
    from diffrestore.run.preflight import check_prior_kind

    with pytest.raises(UsageError) as error:
        check_prior_kind("daps", "lpips-heads")
    message = str(error.value)
    assert "model 'lpips-heads' holds the weights for the lpips and lpips-vgg metrics, not a diffusion prior" in message
    assert "metric prior" not in message and "\n" not in message and error.value.exit_code == 2


def test_info_marks_unverified_hashes() -> None:
    out = CliRunner().invoke(models_app, ["info", "celebahq-256"]).stdout
    assert "diffusion_pytorch_model.bin" in out and "UNVERIFIED" in out
    assert "verified    NO" in out
    assert "hf://google/ddpm-celebahq-256@cd5c944777ea2668051904ead6cc120739b86c4d" in out


def test_path_of_a_model_not_downloaded_names_the_command() -> None:
    result = CliRunner().invoke(models_app, ["path", "ffhq-256"])
    assert isinstance(result.exception, DownloadError)
    assert "diffrestore models download ffhq-256" in str(result.exception)


def test_verify_with_nothing_cached_says_so() -> None:
    result = CliRunner().invoke(models_app, ["verify"])
    assert result.exit_code == 0
    assert "no downloaded models" in result.output


def test_list_on_a_terminal_shows_registry_text_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffrestore.cli import models

    registry = tmp_path / "models.toml"
    registry.write_text("""schema_version = 1
[models.m]
family = "pixel"
description = "d"
licence = "[bold]MIT[/bold]"
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
""", encoding="utf-8")
    monkeypatch.setattr(models, "_fancy", lambda: True)
    out = CliRunner().invoke(models_app, ["--registry", str(registry), "list"]).stdout
    assert "[bold]MIT[/bold]" in out  # rich markup in a registry file is not interpreted
