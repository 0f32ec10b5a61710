"""The smallest image each metric network takes, computed from the layer arithmetic (``networks.smallest_side``)
and checked on the networks themselves: at the minimum every layer has an output, one pixel less (on either
side) stops the network, as "Output size is too small" did for LPIPS on a 24 x 20 image after its restoration."""

from __future__ import annotations

import pytest
import torch

from diffrestore.errors import UsageError
from diffrestore.metrics import catalogue, inception, lpips, networks


def _runs(module: torch.nn.Module, width: int, height: int) -> bool:
    """Whether ``module`` gives a non-empty output at every tap for an image of width x height."""
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 3, height, width))
    except RuntimeError:
        return False
    return all(t.numel() > 0 for t in (out if isinstance(out, list) else [out]))


def test_the_step_arithmetic() -> None:
    assert networks.smallest_side([]) == 1
    assert networks.smallest_side([(3, 1, 1)]) == 1  # a padded 3x3 keeps any size
    assert networks.smallest_side([(2, 2, 0)] * 4) == 16
    assert networks.smallest_side([(11, 4, 2)]) == 7  # (7 + 4 - 11) / 4 + 1 = 1


@pytest.mark.parametrize("name", ["lpips", "lpips-vgg", "lpips-piq"])
def test_each_lpips_trunk_takes_exactly_its_min_side(name) -> None:
    side = catalogue.describe(name).min_side
    assert side == {"lpips": 31, "lpips-vgg": 16, "lpips-piq": 16}[name]  # AlexNet / VGG16, worked by hand
    trunk = lpips.build_trunk(lpips.VARIANTS[name]["trunk"]).eval()
    assert _runs(trunk, side, side)
    assert not _runs(trunk, side - 1, side)
    assert not _runs(trunk, side, side - 1)


def test_inception_takes_exactly_its_min_side() -> None:
    assert inception.MIN_SIDE == 75  # the value pytorch-fid and torchvision state for Inception-v3
    network = inception.inception_features("fid").eval()
    assert _runs(network, 75, 75)
    assert not _runs(network, 74, 75) and not _runs(network, 75, 74)


def test_fid_without_resizing_needs_the_network_side_and_with_resizing_any() -> None:
    assert catalogue.min_side("fid") == 1 and catalogue.min_side("kid", fid_resize="tf1") == 1
    assert catalogue.min_side("fid", fid_resize="none") == inception.MIN_SIDE
    assert catalogue.describe("psnr").min_side == catalogue.describe("ssim").min_side == 1


def test_too_small_names_the_first_metric_that_cannot_take_the_size() -> None:
    assert catalogue.too_small(["psnr", "lpips-vgg", "lpips"], (24, 20)) == ("lpips", 31)
    assert catalogue.too_small(["psnr", "lpips-vgg", "lpips"], (15, 40)) == ("lpips-vgg", 16)
    assert catalogue.too_small(["psnr", "ssim", "lpips"], (31, 31)) is None
    with pytest.raises(UsageError) as error:
        catalogue.check_image_size(["psnr", "lpips"], (24, 20), "photo.png")
    message = str(error.value)
    assert "photo.png is 24 x 20 pixels: too small for the metric lpips" in message and "31" in message
    assert error.value.exit_code == 2 and "\n" not in message


def test_the_scorer_refuses_a_small_image_instead_of_crashing(tmp_path, monkeypatch) -> None:
    from diffrestore.metrics.random_weights import write_random_cache, write_random_registry
    from diffrestore.registry import load_registry

    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))
    write_random_cache(tmp_path / "cache", catalogue.required_models(["lpips"]))
    scorer = catalogue.Scorer(["psnr", "lpips"], registry=load_registry(write_random_registry(tmp_path / "m.toml")))
    with pytest.raises(UsageError, match="24 x 20 pixels: too small for the metric lpips"):
        scorer.score_images(torch.zeros(1, 3, 20, 24), torch.zeros(1, 3, 20, 24))
    assert set(scorer.score_images(torch.zeros(1, 3, 31, 31), torch.zeros(1, 3, 31, 31))) == {"psnr", "lpips"}
