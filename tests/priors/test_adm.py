"""Our ADM (guided-diffusion UNet) definition: official key names, strict loading, shapes, the prior wiring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from diffrestore.errors import ModelError
from diffrestore.priors.adm import ADMConfig, ADMNet, AttentionBlock, adm_prior, load_adm_network

TINY = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    attention_resolutions="8",
    num_heads=2,
    num_head_channels=16,
    learn_sigma=True,
    use_scale_shift_norm=True,
    resblock_updown=True,
)
FFHQ = dict(
    image_size=256,
    num_channels=128,
    num_res_blocks=1,
    channel_mult="",
    attention_resolutions="16",
    num_heads=4,
    num_head_channels=64,
    num_heads_upsample=-1,
    learn_sigma=True,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=False,
    dropout=0.0,
)
IMAGENET = dict(FFHQ, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8")


def _meta_net(flags: dict) -> ADMNet:
    with torch.device("meta"):  # shapes only: no memory, no time
        return ADMNet(ADMConfig.from_flags(flags))


@pytest.mark.parametrize(("flags", "file_size"), [(FFHQ, 374_417_833), (IMAGENET, 2_211_383_297)])
def test_architecture_matches_the_released_checkpoint_sizes(flags: dict, file_size: int) -> None:
    """float32 parameters account for the published .pt sizes up to pickle overhead (< 1 MB of names/records)."""
    params = sum(p.numel() for p in _meta_net(flags).parameters())
    overhead = file_size - 4 * params
    assert 0 < overhead < 1_000_000, overhead


def test_official_parameter_names_and_shapes() -> None:
    """Names as in guided-diffusion's checkpoints (ffhq_10m.pt layout: 6 levels, 1 res block, attention at 16x16)."""
    state = _meta_net(FFHQ).state_dict()
    expected = {
        "time_embed.0.weight": (512, 128),
        "time_embed.2.weight": (512, 512),
        "input_blocks.0.0.weight": (128, 3, 3, 3),
        "input_blocks.1.0.in_layers.0.weight": (128,),
        "input_blocks.1.0.emb_layers.1.weight": (256, 512),  # scale and shift: 2 x out channels
        "input_blocks.1.0.out_layers.3.weight": (128, 128, 3, 3),
        "input_blocks.2.0.in_layers.2.weight": (128, 128, 3, 3),  # the down-sampling ResBlock
        "input_blocks.5.0.skip_connection.weight": (256, 128, 1, 1),  # level 2: 128 -> 256 channels
        "input_blocks.9.1.norm.weight": (512,),  # level 4 (16x16): attention after the ResBlock
        "input_blocks.9.1.qkv.weight": (1536, 512, 1),
        "input_blocks.9.1.proj_out.weight": (512, 512, 1),
        "middle_block.0.in_layers.2.weight": (512, 512, 3, 3),
        "middle_block.1.qkv.bias": (1536,),
        "middle_block.2.out_layers.3.bias": (512,),
        "output_blocks.0.0.in_layers.0.weight": (1024,),  # concat of 512 + skip 512
        "output_blocks.0.0.skip_connection.weight": (512, 1024, 1, 1),
        "output_blocks.1.1.in_layers.2.weight": (512, 512, 3, 3),  # up-sampling ResBlock ending level 5
        "output_blocks.3.1.qkv.weight": (1536, 512, 1),
        "output_blocks.3.2.emb_layers.1.weight": (1024, 512),  # up-sampling ResBlock after attention
        "output_blocks.11.0.in_layers.0.weight": (256,),
        "out.0.weight": (128,),
        "out.2.weight": (6, 128, 3, 3),  # learned sigma: eps and variance
    }
    for key, shape in expected.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("label_emb") for k in state)
    assert len([k for k in state if k.startswith("output_blocks.") and k.endswith(".qkv.weight")]) == 2
    assert max(int(k.split(".")[1]) for k in state if k.startswith("output_blocks.")) == 11


def _random_checkpoint(tmp_path: Path, flags: dict, seed: int = 0) -> tuple[Path, dict]:
    """An ADM-shaped state dict with random values (not the init: zero-initialised layers would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in _meta_net(flags).state_dict().items()}
    path = tmp_path / "adm.pt"
    torch.save(state, path)
    return path, state


def test_random_official_state_dict_loads_strictly_and_keeps_values(tmp_path: Path) -> None:
    path, state = _random_checkpoint(tmp_path, TINY)
    net = load_adm_network(path, TINY)
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.tensor([10.0, 500.0]))
    assert out.shape == (2, 6, 16, 16)
    assert torch.isfinite(out).all()


def test_mismatched_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    path, state = _random_checkpoint(tmp_path, TINY)
    del state["out.2.weight"]
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"does not match its architecture flags.*out\.2\.weight"):
        load_adm_network(path, TINY)


class _NotATensor:
    pass


def test_pickles_with_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"out.2.weight": _NotATensor()}, path)
    with pytest.raises(ModelError, match=r"ADM checkpoint .* cannot be read as a tensor file"):
        load_adm_network(path, TINY)


def _linear_alpha_bar(t: int) -> float:
    """guided-diffusion's linear schedule: betas = linspace(1e-4, 0.02, 1000); alpha_bar_t = prod(1 - beta)."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return float(torch.cumprod(1 - betas, 0)[t])


@pytest.mark.parametrize("t", [0, 37, 420, 999])
def test_prior_is_the_epsilon_network_in_the_ve_convention(tmp_path: Path, t: int) -> None:
    """denoise(x, sigma_t) = x - sigma_t * eps(x * sqrt(alpha_bar_t), t)[:, :3] with the variance half dropped."""
    path, _ = _random_checkpoint(tmp_path, TINY, seed=1)
    prior = adm_prior(path, TINY, {"steps": 1000, "noise_schedule": "linear"})
    assert prior.channels == 3 and prior.native_size == (16, 16)
    net = load_adm_network(path, TINY)
    alpha_bar = _linear_alpha_bar(t)
    sigma = math.sqrt((1 - alpha_bar) / alpha_bar)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * sigma
    with torch.no_grad():
        eps = net(x * math.sqrt(alpha_bar), torch.full((2,), float(t)))[:, :3]
        got = prior.denoise(x, torch.full((2,), sigma))
    expected = x - sigma * eps
    assert got.shape == (2, 3, 16, 16) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-4 * max(1.0, sigma), rtol=1e-4)
    assert prior.sigma_min == pytest.approx(math.sqrt((1 - _linear_alpha_bar(0)) / _linear_alpha_bar(0)), rel=1e-4)
    assert prior.sigma_max == pytest.approx(math.sqrt((1 - _linear_alpha_bar(999)) / _linear_alpha_bar(999)), rel=1e-3)


def _reference_attention(block: AttentionBlock, x: torch.Tensor, legacy: bool) -> torch.Tensor:
    """The paper code's formulation, written out with einsum (independent of the fused kernel we use)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, -1)
    qkv = block.qkv(block.norm(flat))
    heads = block.num_heads
    ch = c // heads
    if legacy:
        q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
    else:
        q, k, v = (t.reshape(b * heads, ch, -1) for t in qkv.chunk(3, dim=1))
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    out = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
    return (flat + block.proj_out(out)).reshape(b, c, h, w)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_matches_the_reference_formulation(new_order: bool) -> None:
    torch.manual_seed(0)
    block = AttentionBlock(64, num_heads=4, num_head_channels=16, new_order=new_order)
    torch.nn.init.normal_(block.proj_out.weight, std=0.1)
    x = torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        assert torch.allclose(block(x), _reference_attention(block, x, legacy=not new_order), atol=1e-5)
        other = _reference_attention(block, x, legacy=new_order)
    assert not torch.allclose(block(x), other, atol=1e-3)  # the two qkv layouts really differ


def test_bfloat16_network_stays_close_and_returns_float32(tmp_path: Path) -> None:
    path, _ = _random_checkpoint(tmp_path, TINY, seed=3)
    full = adm_prior(path, TINY)
    half = adm_prior(path, TINY, dtype=torch.bfloat16)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a, b = full.denoise(x, 0.5), half.denoise(x, 0.5)
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.1 * a.abs().max()
