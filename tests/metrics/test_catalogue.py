"""metrics.catalogue: metric names and their parsing (one-line usage errors), the models each needs, and the
Scorer end to end on random weights in a temporary registry cache; missing weights offline fail with the
registry's exit-3 error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffrestore.errors import DownloadError, UsageError
from diffrestore.metrics import catalogue, pixel
from diffrestore.metrics.catalogue import METRIC_NAMES, Scorer, describe, parse_metrics, required_models
from diffrestore.metrics.random_weights import write_random_cache, write_random_registry
from diffrestore.registry import load_registry


def test_names_and_descriptions() -> None:
    assert METRIC_NAMES == ("psnr", "ssim", "lpips", "lpips-vgg", "lpips-piq", "fid", "fid-torchvision", "kid")
    for name in METRIC_NAMES:
        info = describe(name)
        assert info.name == name and info.kind in ("image", "set") and info.convention and info.summary
    assert [n for n in METRIC_NAMES if describe(n).kind == "set"] == ["fid", "fid-torchvision", "kid"]
    assert describe("psnr").higher_is_better and not describe("lpips").higher_is_better
    assert describe("psnr").models == () and describe("kid").models == describe("fid").models


def test_every_needed_model_is_a_metric_entry_of_the_shipped_registry() -> None:
    registry = load_registry()
    for model in required_models(METRIC_NAMES):
        assert registry.get(model).family == "metric" and registry.get(model).kind == "metric"


def test_parse_metrics_trims_lowercases_and_dedupes_in_order() -> None:
    assert parse_metrics(" LPIPS,psnr , lpips,fid,psnr") == ("lpips", "psnr", "fid")
    assert required_models(("lpips-vgg", "lpips-piq", "fid", "kid")) == (
        "vgg16-imagenet", "lpips-heads", "lpips-piq-heads", "inception-fid")


@pytest.mark.parametrize(("text", "shown"),
                         [("psnr,lpip", "'lpip'"), ("psnr,,ssim", "an empty name"), ("", "an empty name")])
def test_unknown_names_are_one_line_usage_errors(text: str, shown: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_metrics(text, flag="--score")
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    assert message.startswith("--score: unknown metric " + shown) and ", ".join(METRIC_NAMES) in message
    with pytest.raises(UsageError, match="unknown metric 'nope'"):
        describe("nope")


def test_the_catalogue_imports_no_torch() -> None:
    code = ("import sys, diffrestore.metrics.catalogue as c; c.parse_metrics('fid,lpips'); "
            "c.Scorer(['fid', 'lpips']); sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_scorer_refuses_an_unknown_resize_mode() -> None:
    with pytest.raises(UsageError, match="resize mode 'area'"):
        Scorer(["fid"], fid_resize="area")


# ----------------------------------------------------------------------------------------- end to end ----
@pytest.fixture(scope="module")
def random_registry(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("metric-weights")
    write_random_cache(root / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFRESTORE_CACHE", str(root / "cache"))
        patch.setenv("DIFFRESTORE_OFFLINE", "1")  # everything must come from the cache
        yield load_registry(write_random_registry(root / "models.toml"))


def _pair(seed: int, n: int = 3, c: int = 3, size: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(n, c, size, size, generator=g) * 2 - 1
    return (reference + 0.1 * torch.randn(reference.shape, generator=g)).clamp(-1, 1), reference


def test_scorer_image_metrics(random_registry) -> None:
    scorer = Scorer(["psnr", "ssim", "lpips", "lpips-vgg", "lpips-piq"], registry=random_registry)
    restored, reference = _pair(0)
    scores = scorer.score_images(restored, reference)
    assert list(scores) == ["psnr", "ssim", "lpips", "lpips-vgg", "lpips-piq"]
    assert scores["psnr"] == pytest.approx(pixel.psnr(restored, reference).tolist())
    assert scores["ssim"] == pytest.approx(pixel.ssim(restored, reference).tolist())
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in scores.values())
    same = scorer.score_images(reference, reference)
    assert same["lpips"] == [0.0, 0.0, 0.0] and same["lpips-piq"] == [0.0, 0.0, 0.0]
    assert scorer.set_scores() == {}
    grey = scorer.score_images(restored[:, :1], reference[:, :1])
    assert all(len(v) == 3 for v in grey.values())


def test_scorer_set_metrics_share_features_and_warn_at_small_n(random_registry) -> None:
    scorer = Scorer(["fid", "kid", "fid-torchvision"], registry=random_registry, fid_resize="none")
    for seed in (1, 2):
        restored, reference = _pair(seed)
        assert scorer.score_images(restored, reference) == {}
    assert set(scorer._extractors) == {"inception-fid", "inception-torchvision"}
    assert [len(batches) for batches in scorer._features["inception-fid"]] == [2, 2]  # not twice per batch
    out = scorer.set_scores(kid_subsets=5)
    assert out["fid"]["n"] == 6 and out["fid"]["value"] > 0
    assert "n=6" in out["fid"]["warning"] and "biased" in out["fid"]["warning"]
    assert out["fid-torchvision"]["value"] != pytest.approx(out["fid"]["value"])
    assert out["kid"]["n"] == 6 and out["kid"]["subsets"] == 5 and out["kid"]["subset_size"] == 6
    assert set(out["kid"]) >= {"value", "std", "n"}


def test_fid_of_a_set_against_itself_is_zero_through_the_network(random_registry) -> None:
    scorer = Scorer(["fid"], registry=random_registry, fid_resize="none")
    _, reference = _pair(3, n=3, size=75)
    scorer.score_images(reference, reference)
    assert scorer.set_scores()["fid"]["value"] == pytest.approx(0.0, abs=1e-3)


def test_no_warning_from_2048_images(random_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = Scorer(["fid"], registry=random_registry)
    scorer._features["inception-fid"] = ([torch.randn(2048, 8)], [torch.randn(2048, 8)])
    assert scorer.set_scores()["fid"]["warning"] is None
    monkeypatch.setattr(catalogue, "FID_MIN_IMAGES", 4096)
    assert "n=2048" in scorer.set_scores()["fid"]["warning"]


def test_set_scores_before_any_image_is_an_error(random_registry) -> None:
    with pytest.raises(ValueError, match="no images"):
        Scorer(["kid"], registry=random_registry).set_scores()


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        Scorer(["psnr"]).score_images(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_missing_weights_offline_name_the_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("DIFFRESTORE_OFFLINE", "1")
    scorer = Scorer(["psnr", "lpips"])  # the shipped registry
    with pytest.raises(DownloadError) as info:
        scorer.score_images(*_pair(4, n=1, size=16))
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    assert "diffrestore models download alexnet-imagenet" in str(info.value)
