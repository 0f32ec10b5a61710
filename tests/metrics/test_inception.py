"""metrics.inception: the FID and torchvision Inception-v3 graphs in torchvision's key layout, their pool3
output, the TF pooling quirks that tell them apart, and loading the published files' layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffrestore.errors import ModelError
from diffrestore.metrics import inception
from diffrestore.metrics.networks import load_checked
from diffrestore.metrics.random_weights import random_file_content

#: a sample of torchvision Inception3 parameter names and shapes (models/inception.py), written out by hand
EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
}


@pytest.mark.parametrize("variant", inception.VARIANTS)
def test_keys_follow_torchvision_inception3(variant: str) -> None:
    state = inception.inception_features(variant).state_dict()
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    convs = [k for k in state if k.endswith("conv.weight")]
    assert len(convs) == 94  # torchvision's Inception3 without its aux head has 94 BasicConv2d
    assert not any(k.startswith(("fc.", "AuxLogits.")) for k in state)
    assert all(not k.endswith("conv.bias") for k in state)  # bias-free convolutions, as in TF


def test_batchnorm_uses_tf_epsilon() -> None:
    net = inception.inception_features("fid")
    assert {m.eps for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.001}


def test_pool3_output_and_the_variants_differ_only_by_pooling() -> None:
    state = random_file_content("inception-fid", "pt_inception-2015-12-05-6726825d.pth", seed=1)
    fid_net = load_checked(inception.inception_features("fid"), state, "fid.pth", unused=("fc.",))
    tv_net = load_checked(inception.inception_features("torchvision"), state, "tv.pth", unused=("fc.",))
    x = torch.rand(2, 3, 75, 75, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = fid_net(x), tv_net(x)
    assert a.shape == (2, 2048) and bool((a >= 0).all()) and float(a.abs().max()) > 0
    assert not torch.allclose(a, b, rtol=1e-3)  # count_include_pad and the last block's max pool


def test_the_published_layouts_load_and_others_do_not() -> None:
    fid_state = random_file_content("inception-fid", "pt_inception-2015-12-05-6726825d.pth")
    tv_state = random_file_content("inception-v3-imagenet", "inception_v3_google-0cc3c7bd.pth")
    load_checked(inception.inception_features("fid"), fid_state, "f.pth", unused=inception.UNUSED_KEYS["fid"])
    load_checked(inception.inception_features("torchvision"), tv_state, "t.pth",
                 unused=inception.UNUSED_KEYS["torchvision"])
    # torchvision's file has an auxiliary head that the FID file lacks: loading it as FID weights is refused
    with pytest.raises(ModelError, match=r"t\.pth' hold unexpected keys \(AuxLogits"):
        load_checked(inception.inception_features("fid"), tv_state, "t.pth", unused=inception.UNUSED_KEYS["fid"])


def test_files_without_batchnorm_counters_load(tmp_path: Path) -> None:
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked."""
    state = random_file_content("inception-fid", "pt_inception-2015-12-05-6726825d.pth")
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net = load_checked(inception.inception_features("fid"), state, tmp_path / "old.pth", unused=("fc.",))
    assert torch.equal(net.state_dict()["Mixed_6b.branch1x1.bn.running_mean"],
                       state["Mixed_6b.branch1x1.bn.running_mean"])


def test_torchvision_transform_input_turns_imagenet_normalisation_into_2x_minus_1() -> None:
    """Why the torchvision variant is fed 2x - 1: DAPS normalises [0, 1] images by ImageNet mean/std and
    torchvision's pretrained Inception3 then applies transform_input (x * std / 0.5 + (mean - 0.5) / 0.5)."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    normalised = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    transformed = normalised * (std / 0.5).view(1, 3, 1, 1) + ((mean - 0.5) / 0.5).view(1, 3, 1, 1)
    assert torch.allclose(transformed, 2 * x - 1, atol=1e-6)


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        inception.inception_features("tf2")
