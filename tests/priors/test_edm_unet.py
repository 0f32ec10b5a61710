"""diffrestore.priors.edm_unet: EDM's DhariwalUNet in InverseBench's MRI configuration loads a state dict in the
official naming strictly (names and shapes written down here from the official layout, not taken from our
network), the preconditioning is EDM's, the checkpoint reader takes the EMA weights and never runs pickled code,
and the registry's tiny model loads through the edm family."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from diffrestore.errors import ModelError
from diffrestore.priors.edm_unet import (
    INVERSEBENCH_MRI,
    DhariwalUNet,
    EDMPrecond,
    EDMPrior,
    EDMUNetConfig,
    edm_prior,
    read_state_dict,
)

#: names and shapes of InverseBench's mri-knee network (DhariwalUNet(img_resolution=320, in/out 2, 128 channels,
#: channel_mult [1, 1, 1, 2, 2], num_blocks 1, attn_resolutions [16]) inside EDMPrecond as ``model``), spot checks
#: from every kind of layer: levels 320, 160, 80, 40, 20; 16 never occurs, so only dec 20x20_in0 attends.
OFFICIAL = {
    "model.map_layer0.weight": (512, 128),
    "model.map_layer1.bias": (512,),
    "model.enc.320x320_conv.weight": (128, 2, 3, 3),
    "model.enc.320x320_block0.affine.weight": (256, 512),
    "model.enc.160x160_down.conv0.resample_filter": (1, 1, 2, 2),
    "model.enc.160x160_down.skip.resample_filter": (1, 1, 2, 2),
    "model.enc.40x40_block0.skip.weight": (256, 128, 1, 1),
    "model.enc.20x20_block0.conv1.weight": (256, 256, 3, 3),
    "model.dec.20x20_in0.norm2.weight": (256,),
    "model.dec.20x20_in0.qkv.weight": (768, 256, 1, 1),
    "model.dec.20x20_in0.proj.bias": (256,),
    "model.dec.20x20_in1.norm0.weight": (256,),
    "model.dec.20x20_block0.conv0.weight": (256, 512, 3, 3),
    "model.dec.40x40_up.conv0.resample_filter": (1, 1, 2, 2),
    "model.dec.40x40_block1.skip.weight": (256, 384, 1, 1),
    "model.dec.80x80_block0.conv0.weight": (128, 384, 3, 3),
    "model.dec.320x320_block1.conv0.weight": (128, 256, 3, 3),
    "model.out_norm.weight": (128,),
    "model.out_conv.weight": (2, 128, 3, 3),
}
ABSENT = ("model.dec.40x40_block0.qkv.weight", "model.enc.20x20_block0.qkv.weight", "model.map_noise.freqs",
          "model.enc.320x320_conv.resample_filter", "model.dec.20x20_in0.skip.weight")

TINY = EDMUNetConfig(img_resolution=16, img_channels=2, model_channels=32, channel_mult=(1, 2), num_blocks=1,
                     attn_resolutions=(8,))


def test_the_inversebench_layout_has_the_official_names_and_shapes() -> None:
    with torch.device("meta"):
        state = EDMPrecond(INVERSEBENCH_MRI).state_dict()
    for name, shape in OFFICIAL.items():
        assert name in state, name
        assert tuple(state[name].shape) == shape, name
    for name in ABSENT:
        assert name not in state, name
    weights = sum(v.numel() for k, v in state.items() if not k.endswith("resample_filter"))
    assert 25_000_000 < weights < 27_000_000  # 26.0 M: ~104 MB in float32


def _random_official(config: EDMUNetConfig, seed: int) -> dict[str, torch.Tensor]:
    """A random state dict in the official naming (the box filter buffers keep their fixed value)."""
    gen = torch.Generator().manual_seed(seed)
    state = EDMPrecond(config).state_dict()
    return {k: (v if k.endswith("resample_filter") else 0.2 * torch.randn(v.shape, generator=gen))
            for k, v in state.items()}


def test_a_training_checkpoint_loads_strictly_and_its_ema_is_used(tmp_path) -> None:
    ema = _random_official(TINY, 0)
    path = tmp_path / "ckpt.pt"
    torch.save({"net": _random_official(TINY, 1), "ema": ema, "optimizer": {"state": {}, "param_groups": []}}, path)
    prior = edm_prior(path, TINY, name="t")
    assert isinstance(prior, EDMPrior) and prior.channels == 2 and prior.native_size == (16, 16)
    loaded = prior.net.state_dict()
    for key, value in ema.items():
        torch.testing.assert_close(loaded[key], value, msg=key)
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(2))
    out = prior.denoise(x, torch.tensor([0.3, 5.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    # random weights at a large sigma do not return the input: the network part is live
    assert (out - x).abs().mean() > 1e-3


def test_missing_extra_or_misshapen_names_are_refused(tmp_path) -> None:
    state = _random_official(TINY, 0)
    for change in ("missing", "extra", "shape"):
        broken = dict(state)
        if change == "missing":
            broken.pop("model.out_conv.bias")
        elif change == "extra":
            broken["model.dec.8x8_in0.extra"] = torch.zeros(1)
        else:
            broken["model.out_conv.weight"] = torch.zeros(3, 32, 3, 3)
        path = tmp_path / f"{change}.pt"
        torch.save(broken, path)
        with pytest.raises(ModelError, match="does not match the EDM UNet"):
            edm_prior(path, TINY)


class _Pickled:  # stands for an EDM .pkl snapshot: a pickled object, not tensors
    pass


def test_pickled_modules_are_never_unpickled(tmp_path) -> None:
    path = tmp_path / "network.pkl"
    with path.open("wb") as handle:
        pickle.dump({"ema": _Pickled()}, handle, protocol=2)
    with pytest.raises(ModelError, match="cannot be read as a tensor file"):
        read_state_dict(path)
    torch.save({"ema": "not tensors"}, tmp_path / "odd.pt")
    with pytest.raises(ModelError, match="not an EDM state dict"):
        read_state_dict(tmp_path / "odd.pt")


class _Echo(torch.nn.Module):
    """Stands in for the network: records its inputs and returns a constant map."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.seen.append((x, c_noise))
        return torch.full_like(x, 2.0)


def test_the_preconditioning_is_edms() -> None:
    net = EDMPrecond(TINY)
    net.model = _Echo()
    x = torch.full((2, 2, 4, 4), 3.0)
    sigma = torch.tensor([0.5, 4.0])
    out = net(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        sd = 0.5
        c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / math.sqrt(s**2 + sd**2), 1 / math.sqrt(s**2 + sd**2)
        torch.testing.assert_close(out[i], torch.full((2, 4, 4), c_skip * 3.0 + c_out * 2.0))
        torch.testing.assert_close(net.model.seen[0][0][i], torch.full((2, 4, 4), c_in * 3.0))
        assert net.model.seen[0][1][i].item() == pytest.approx(math.log(s) / 4)


def test_the_resampling_is_a_box_filter_and_the_embedding_is_cos_then_sin() -> None:
    net = DhariwalUNet(TINY)
    down = net.enc["8x8_down"].conv0
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(1, 32, 1, 1)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    down_only = type(down)(32, 32, 0, down=True)
    torch.testing.assert_close(down_only(x), pooled)
    up_only = type(down)(32, 32, 0, up=True)
    torch.testing.assert_close(up_only(pooled), pooled.repeat_interleave(2, -1).repeat_interleave(2, -2))
    c = torch.tensor([0.7])
    half = 16
    freqs = [(1 / 10000) ** (i / half) for i in range(half)]
    expected = torch.tensor([[math.cos(0.7 * f) for f in freqs] + [math.sin(0.7 * f) for f in freqs]])
    silu = torch.nn.functional.silu
    torch.testing.assert_close(net.embed(c), silu(net.map_layer1(silu(net.map_layer0(expected)))))


def test_the_registry_tiny_model_loads_through_the_edm_family() -> None:
    from diffrestore.priors.load import load_prior

    prior = load_prior("tiny-edm")
    assert isinstance(prior, EDMPrior) and prior.name == "tiny-edm" and prior.kind == "pixel"
    assert prior.net.model.dec["8x8_in0"].heads == 1  # the tiny layout still attends
    out = prior.denoise(torch.zeros(1, 2, 16, 16), 1.0)
    assert out.shape == (1, 2, 16, 16) and torch.isfinite(out).all()
