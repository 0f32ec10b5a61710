"""metrics.networks: the AlexNet and VGG16 trunks in torchvision's key layout, their LPIPS taps, and strict
loading of weight files (wrong or missing keys are one-line errors naming the file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffrestore.errors import ModelError
from diffrestore.metrics import networks
from diffrestore.metrics.random_weights import write_random_cache, write_random_registry
from diffrestore.registry import load_registry

#: torchvision's AlexNet ``features`` parameters (models/alexnet.py), written out independently of our layout
ALEXNET_SHAPES = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
                  10: (256, 256, 3, 3)}
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def test_alexnet_has_torchvision_keys_and_shapes() -> None:
    state = networks.alexnet_features().state_dict()
    expected = {f"features.{i}.weight": s for i, s in ALEXNET_SHAPES.items()}
    expected |= {f"features.{i}.bias": (s[0],) for i, s in ALEXNET_SHAPES.items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_vgg16_has_torchvision_keys_and_shapes() -> None:
    state = networks.vgg16_features().state_dict()
    c_in = [3, *VGG16_WIDTHS[:-1]]
    expected = {f"features.{i}.weight": (w, c, 3, 3) for i, w, c in zip(VGG16_CONVS, VGG16_WIDTHS, c_in, strict=True)}
    expected |= {f"features.{i}.bias": (w,) for i, w in zip(VGG16_CONVS, VGG16_WIDTHS, strict=True)}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_taps_have_lpips_widths_and_resolutions() -> None:
    x = torch.zeros(1, 3, 64, 64)
    alex = [tuple(f.shape) for f in networks.alexnet_features()(x)]
    assert alex == [(1, 64, 15, 15), (1, 192, 7, 7), (1, 384, 3, 3), (1, 256, 3, 3), (1, 256, 3, 3)]
    vgg = [tuple(f.shape) for f in networks.vgg16_features()(x)]
    assert vgg == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16), (1, 512, 8, 8), (1, 512, 4, 4)]


def test_taps_are_relu_outputs() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        features = networks.vgg16_features()(torch.randn(1, 3, 32, 32))
    for feature in features:
        assert float(feature.min()) >= 0.0 and float(feature.max()) > 0.0


def test_average_pooling_changes_the_features_but_not_the_weights() -> None:
    torch.manual_seed(0)
    max_net = networks.vgg16_features(pooling="max")
    avg_net = networks.vgg16_features(pooling="avg")
    avg_net.load_state_dict(max_net.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(max_net(x)[0], avg_net(x)[0])  # before the first pool: identical
    assert not torch.allclose(max_net(x)[1], avg_net(x)[1])
    with pytest.raises(ValueError, match="pooling"):
        networks.vgg16_features(pooling="min")


# ------------------------------------------------------------------------------------ strict loading ----
def _alexnet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return networks.alexnet_features().state_dict() | {"classifier.1.weight": torch.zeros(2, 2)}


def test_load_checked_accepts_the_layout_and_known_unused_keys(tmp_path: Path) -> None:
    state = _alexnet_state()
    net = networks.load_checked(networks.alexnet_features(), state, tmp_path / "a.pth", unused=("classifier.",))
    assert torch.equal(net.state_dict()["features.3.weight"], state["features.3.weight"])
    assert not any(p.requires_grad for p in net.parameters()) and not net.training


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("features.6.bias"), "lack the key 'features.6.bias'"),
    (lambda s: s.__setitem__("features.0.weight", torch.zeros(64, 3, 3, 3)), "key 'features.0.weight' has shape"),
    (lambda s: s.__setitem__("features.13.weight", torch.zeros(1)), "unexpected keys (features.13.weight)"),
])
def test_a_wrong_file_is_a_one_line_error_naming_it(tmp_path: Path, change, message: str) -> None:
    state = _alexnet_state()
    change(state)
    with pytest.raises(ModelError) as info:
        networks.load_checked(networks.alexnet_features(), state, tmp_path / "wrong.pth", unused=("classifier.",))
    text = str(info.value)
    assert message in text and "wrong.pth" in text and "\n" not in text and info.value.exit_code == 3


def test_classifier_keys_are_refused_where_they_are_not_expected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unexpected keys"):
        networks.load_checked(networks.alexnet_features(), _alexnet_state(), tmp_path / "a.pth")


def test_not_a_state_dict_and_unreadable_files_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a state dict"):
        networks.load_checked(networks.alexnet_features(), [torch.zeros(1)], tmp_path / "list.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"garbage\.pth' cannot be read") as info:
        networks.read_weights(garbage)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="missing"):
        networks.read_weights(tmp_path / "absent.pth")


def test_read_weights_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "code.pth"
    torch.save({"weight": torch.zeros(1), "thing": Path("x")}, path)  # an arbitrary object: not allowed
    with pytest.raises(ModelError, match="cannot be read"):
        networks.read_weights(path)


# ------------------------------------------------------------------------------ files from the registry ----
def test_hub_hash_prefix() -> None:
    assert networks.hub_hash_prefix("alexnet-owt-7be5be79.pth") == "7be5be79"
    assert networks.hub_hash_prefix("pt_inception-2015-12-05-6726825d.pth") == "6726825d"
    assert networks.hub_hash_prefix("alex.pth") == "" and networks.hub_hash_prefix("lpips_weights.pt") == ""


def test_weight_file_checks_the_recorded_hash_against_the_name(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(cache))
    write_random_cache(cache, ("alexnet-imagenet",))
    registry = load_registry(write_random_registry(tmp_path / "models.toml"))
    path = networks.weight_file("alexnet-imagenet", "alexnet-owt-7be5be79.pth", registry=registry)
    assert path == cache / "models" / "alexnet-imagenet" / "alexnet-owt-7be5be79.pth"
    lock = cache / "models" / "alexnet-imagenet" / ".diffrestore-lock.json"
    record = {"files": {"alexnet-owt-7be5be79.pth": {"sha256": "7be5be79" + "0" * 56, "size": 1, "source": "x"}}}
    lock.write_text(json.dumps(record))
    assert networks.weight_file("alexnet-imagenet", "alexnet-owt-7be5be79.pth", registry=registry) == path
    record["files"]["alexnet-owt-7be5be79.pth"]["sha256"] = "deadbeef" + "0" * 56
    lock.write_text(json.dumps(record))
    with pytest.raises(ModelError, match="promises 7be5be79") as info:
        networks.weight_file("alexnet-imagenet", "alexnet-owt-7be5be79.pth", registry=registry)
    assert "models download alexnet-imagenet --force" in str(info.value)
