"""metrics.lpips: the distance's properties, its formula against a direct 1x1-convolution computation, the
scaling layer against ImageNet mean/std, grey input, and the heads files' layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from diffrestore.errors import ModelError, UsageError
from diffrestore.metrics import lpips
from diffrestore.metrics.networks import alexnet_features


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    trunk = alexnet_features()
    heads = [torch.rand(c) for c in trunk.channels]
    return lpips.make_lpips(trunk, heads)


def _images(seed: int, n: int = 2, c: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_distance_to_itself_is_zero_and_symmetric_and_positive(model: torch.nn.Module) -> None:
    x, y = _images(1), _images(2)
    with torch.no_grad():
        assert torch.equal(model(x, x), torch.zeros(2))
        d_xy, d_yx = model(x, y), model(y, x)
    assert d_xy.shape == (2,) and bool((d_xy > 0).all())
    assert torch.allclose(d_xy, d_yx, rtol=1e-6)


def test_closer_images_are_closer(model: torch.nn.Module) -> None:
    x = _images(3)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        near, far = model(x, (x + 0.05 * noise).clamp(-1, 1)), model(x, (x + 0.5 * noise).clamp(-1, 1))
    assert bool((near < far).all())


def test_formula_equals_the_reference_layout_of_1x1_convolutions(model: torch.nn.Module) -> None:
    """The official code: scaling layer, unit-normalise, squared difference, conv1x1 (no bias), spatial mean,
    sum over layers. Recomputed here step by step from the trunk's taps."""
    x, y = _images(5), _images(6)
    shift = torch.tensor(lpips.OFFICIAL_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(lpips.OFFICIAL_SCALE).view(1, 3, 1, 1)
    with torch.no_grad():
        fx, fy = model.trunk((x - shift) / scale), model.trunk((y - shift) / scale)
        total = torch.zeros(2)
        for a, b, w in zip(fx, fy, model.heads(), strict=True):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += F.conv2d((a - b) ** 2, w.view(1, -1, 1, 1)).mean(dim=(1, 2, 3))
        assert torch.allclose(model(x, y), total, rtol=1e-5)


def test_scaling_layer_is_imagenet_mean_std_on_unit_range() -> None:
    shift, scale = lpips.input_affine("imagenet")
    # (x + 1) / 2 normalised by ImageNet = (x - (2m - 1)) / 2s; the official constants are those, rounded
    assert shift == pytest.approx(lpips.OFFICIAL_SHIFT, abs=5e-4)
    assert scale == pytest.approx(lpips.OFFICIAL_SCALE, abs=5e-4)
    x = _images(7)
    unit = (x + 1) / 2
    mean, std = torch.tensor(lpips.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(lpips.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose((x - torch.tensor(shift).view(1, 3, 1, 1)) / torch.tensor(scale).view(1, 3, 1, 1),
                          (unit - mean) / std, atol=1e-5)


def test_grey_counts_as_repeated_rgb_and_two_channels_are_refused(model: torch.nn.Module) -> None:
    x, y = _images(8, c=1), _images(9, c=1)
    with torch.no_grad():
        assert torch.allclose(model(x, y), model(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))
        with pytest.raises(UsageError, match="2 channels"):
            model(_images(1, c=2), _images(2, c=2))


def test_inputs_are_clamped_like_saved_images(model: torch.nn.Module) -> None:
    x, y = _images(10), _images(11)
    with torch.no_grad():
        clamped = model((x * 3).clamp(-1, 1), y)
        assert torch.allclose(model(x * 3, y), clamped)
        assert not torch.allclose(clamped, model(x, y))  # the scaling did change the image


def test_piq_variant_differs_from_the_official_vgg_on_the_same_weights() -> None:
    torch.manual_seed(0)
    official = lpips.build_trunk("vgg16")
    piq = lpips.build_trunk("vgg16-avg")
    piq.load_state_dict(official.state_dict())
    heads = [torch.rand(c) for c in official.channels]
    x, y = _images(12, size=32), _images(13, size=32)
    with torch.no_grad():
        a = lpips.make_lpips(official, heads)(x, y)
        b = lpips.make_lpips(piq, heads, "imagenet")(x, y)
    assert not torch.allclose(a, b, rtol=1e-3)


# ------------------------------------------------------------------------------------------ heads files ----
def test_official_heads_layout_is_checked() -> None:
    channels = (64, 192, 384, 256, 256)
    good = {f"lin{k}.model.1.weight": torch.ones(1, c, 1, 1) for k, c in enumerate(channels)}
    heads = lpips.heads_from_state(good, "alex.pth", channels, "official")
    assert [h.shape for h in heads] == [(c,) for c in channels]
    bad = dict(good)
    bad["lin2.model.1.weight"] = torch.ones(1, 128, 1, 1)
    with pytest.raises(ModelError, match=r"alex\.pth.*lin2\.model\.1\.weight.*shape"):
        lpips.heads_from_state(bad, "alex.pth", channels, "official")
    with pytest.raises(ModelError, match="unexpected key 'lin5"):
        lpips.heads_from_state(good | {"lin5.model.1.weight": torch.ones(1)}, "alex.pth", channels, "official")
    missing = {k: v for k, v in good.items() if not k.startswith("lin0")}
    with pytest.raises(ModelError, match="missing key 'lin0"):
        lpips.heads_from_state(missing, "alex.pth", channels, "official")


def test_piq_heads_are_a_list_of_five_per_channel_vectors() -> None:
    channels = (64, 128, 256, 512, 512)
    heads = lpips.heads_from_state([torch.ones(1, c, 1, 1) for c in channels], "w.pt", channels, "list")
    assert [h.numel() for h in heads] == list(channels)
    with pytest.raises(ModelError, match="list of 5"):
        lpips.heads_from_state({"a": torch.ones(1)}, "w.pt", channels, "list")
    with pytest.raises(ModelError, match="entry 4"):
        lpips.heads_from_state([torch.ones(c) for c in channels[:4]] + [torch.ones(3)], "w.pt", channels, "list")


def test_load_lpips_reads_the_registry_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffrestore.metrics.random_weights import random_file_content, write_random_cache, write_random_registry
    from diffrestore.registry import load_registry

    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(cache))
    write_random_cache(cache, ("alexnet-imagenet", "lpips-heads"), seed=3)
    registry = load_registry(write_random_registry(tmp_path / "models.toml"))
    net = lpips.load_lpips("lpips", registry=registry)
    expected = random_file_content("lpips-heads", "alex.pth", seed=3)["lin1.model.1.weight"].flatten()
    assert torch.equal(net.heads()[1].flatten(), expected)
    assert torch.equal(net.trunk.state_dict()["features.0.weight"],
                       random_file_content("alexnet-imagenet", "alexnet-owt-7be5be79.pth", seed=3)["features.0.weight"])
