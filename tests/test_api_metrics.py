"""Scores from Python: ``diffrestore.restore(..., simulate=True, metrics=...)`` scores as ``--metrics`` does,
``diffrestore.score`` scores one pair of images given as the API takes images (paths, PIL images, arrays,
tensors), and ``diffrestore.score_folders`` is ``diffrestore eval --restored --reference``. Bad inputs raise the
package's own errors. The networks run on seeded random weights in a registry cache of this module's own, so the
values test plumbing and algebra, not quality."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_tiny_model, write_image
from PIL import Image

import diffrestore
from diffrestore.errors import DiffrestoreError, InputError, SizeMismatchError, UsageError
from diffrestore.metrics import pixel

SIZE = (40, 32)  # above LPIPS's AlexNet minimum (31), small enough to be quick
FAST = {"steps": 1, "method": "dps", "device": "cpu"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A models.toml of the metric networks with random files in a cache set for this module only."""
    from diffrestore.metrics.catalogue import required_models
    from diffrestore.metrics.random_weights import write_random_cache, write_random_registry

    root = tmp_path_factory.mktemp("metric-weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIFFRESTORE_CACHE", str(root / "cache"))
        write_random_cache(root / "cache", required_models(["lpips", "fid"]))
        yield write_random_registry(root / "models.toml")


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    from diffrestore.run.engine import load_prior

    model = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
    return load_prior(str(model), device=torch.device("cpu"), dtype=torch.float32)


def _picture(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _refused(error: pytest.ExceptionInfo, kind: type[DiffrestoreError], *parts: str) -> None:
    assert isinstance(error.value, kind), type(error.value)
    message = str(error.value)
    assert error.value.exit_code == 2 and "\n" not in message
    for part in parts:
        assert part in message, message


# ------------------------------------------------------------------------------------- restore(metrics=...)


def test_restore_scores_the_metrics_asked_for(prior, registry) -> None:
    result = diffrestore.restore(_picture(0), task="inpaint", box="8,8,12,10", simulate=True, prior=prior,
                                 metrics="psnr,lpips", registry=registry, offline=True, **FAST)
    assert list(result.metrics) == ["psnr", "lpips"]
    assert result.metrics["psnr"] == pytest.approx(float(pixel.psnr(result.image, result.reference)[0]))
    assert math.isfinite(result.metrics["lpips"]) and result.metrics["lpips"] > 0
    only = diffrestore.restore(_picture(0), task="inpaint", box="8,8,12,10", simulate=True, prior=prior,
                               metrics=["ssim"], **FAST)
    assert list(only.metrics) == ["ssim"]
    default = diffrestore.restore(_picture(0), task="inpaint", box="8,8,12,10", simulate=True, prior=prior, **FAST)
    assert list(default.metrics) == ["psnr", "ssim"] and default.metrics["psnr"] == result.metrics["psnr"]


def test_restore_refuses_an_image_too_small_for_a_metric_before_the_prior_loads(tmp_path, registry) -> None:
    # no such model folder: loading the prior would be a ModelError (exit 3)
    with pytest.raises(DiffrestoreError) as error:
        diffrestore.restore(_picture(0, (24, 20)), task="inpaint", box="4,4,8,6", simulate=True,
                            model=str(tmp_path / "no-such-model"), metrics="psnr,lpips", registry=registry,
                            offline=True, **FAST)
    _refused(error, UsageError, "the image is 24 x 20 pixels: too small for the metric lpips", "31")


@pytest.mark.parametrize(("options", "expected"), [
    ({"metrics": "psnr,fid", "simulate": True}, "computed over a set of images"),
    ({"metrics": "psnr"}, "--metrics needs --simulate"),
    ({"metrics": ["psnr", "sharpness"], "simulate": True}, "unknown metric 'sharpness'"),
])
def test_restore_refuses_metrics_it_cannot_give(prior, options, expected) -> None:
    with pytest.raises(DiffrestoreError) as error:
        diffrestore.restore(_picture(0), task="inpaint", box="8,8,12,10", prior=prior, **FAST, **options)
    _refused(error, UsageError, expected)


# ----------------------------------------------------------------------------------------------- score(...)


def test_score_reads_images_as_restore_does(tmp_path, registry) -> None:
    a, b = _picture(1), _picture(2)
    expected = float(pixel.psnr(torch.from_numpy(a).permute(2, 0, 1)[None] / 127.5 - 1,
                                torch.from_numpy(b).permute(2, 0, 1)[None] / 127.5 - 1)[0])
    Image.fromarray(b).save(tmp_path / "b.png")
    as_tensor = torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1  # float tensors are in [-1, 1]
    for restored, reference in [(a, b), (Image.fromarray(a), tmp_path / "b.png"), (as_tensor, str(tmp_path / "b.png"))]:
        scores = diffrestore.score(restored, reference, metrics=("psnr", "ssim", "lpips"), registry=registry,
                                   offline=True)
        assert list(scores) == ["psnr", "ssim", "lpips"]
        assert scores["psnr"] == pytest.approx(expected, abs=1e-4)
    same = diffrestore.score(a, a, metrics="psnr,ssim,lpips", registry=registry, offline=True)
    assert same["psnr"] == math.inf and same["ssim"] == pytest.approx(1.0) and same["lpips"] == pytest.approx(0.0)
    gray = diffrestore.score(np.asarray(Image.fromarray(b).convert("L")), b, metrics="psnr")  # on the luminance
    assert gray["psnr"] > 35


def test_score_refuses_bad_inputs_with_the_packages_errors(registry) -> None:
    a = _picture(1)
    cases = [
        (lambda: diffrestore.score(a, _picture(2, (48, 32))), SizeMismatchError, "40 x 32 but the reference is 48"),
        (lambda: diffrestore.score(a.astype(np.float32) * 2, a), InputError, "outside [0, 1]"),
        (lambda: diffrestore.score(a, a, metrics="psnr,blur"), UsageError, "unknown metric 'blur'"),
        (lambda: diffrestore.score(a, a, metrics="kid"), UsageError, "score_folders"),
        (lambda: diffrestore.score("missing.png", a), InputError, "missing.png"),
        (lambda: diffrestore.score(_picture(3, (24, 20)), _picture(4, (24, 20)), metrics="lpips", registry=registry,
                                   offline=True), UsageError, "24 x 20 pixels: too small for the metric lpips"),
    ]
    for call, kind, part in cases:
        with pytest.raises(DiffrestoreError) as error:
            call()
        _refused(error, kind, part)


# ---------------------------------------------------------------------------------------- score_folders(...)


def test_score_folders_is_eval_on_folders(tmp_path, registry) -> None:
    for i in range(3):
        write_image(tmp_path / "clean" / f"p{i}.png", seed=i, size=SIZE)
        write_image(tmp_path / "restored" / f"p{i}_inpaint.png", seed=10 + i, size=SIZE)
    doc = diffrestore.score_folders(tmp_path / "restored", tmp_path / "clean", metrics="psnr,lpips,fid,kid",
                                    registry=registry, offline=True, device="cpu", output=tmp_path / "report")
    assert doc["methods"] == ["restored"]
    row = doc["aggregate"]["restored"]
    assert row["n"] == 3 and row["fid"]["n"] == 3 and row["fid"]["value"] > 0 and "warning" in row["fid"]
    assert row["kid"]["subset_size"] == 3
    first = next(i for i in doc["images"] if i["image"].endswith("p0.png"))
    pair = diffrestore.score(tmp_path / "restored" / "p0_inpaint.png", tmp_path / "clean" / "p0.png",
                             metrics="psnr,lpips", registry=registry, offline=True)
    assert first["psnr"] == pytest.approx(pair["psnr"]) and first["lpips"] == pytest.approx(pair["lpips"], abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "contact_sheet.png", "results.csv", "results.json", "table.md"]
    with pytest.raises(DiffrestoreError) as error:
        diffrestore.score_folders([tmp_path / "restored"], tmp_path / "nowhere")
    _refused(error, UsageError, "--reference", "no such folder")
