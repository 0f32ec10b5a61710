"""Our NCSN++ (score_sde, VE) definition: official key names, strict loading of score_sde checkpoints (EMA
weights), the [0, 1] -> [-1, 1] conversion of the denoiser, the registry wiring and a solver run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from diffrestore.errors import ModelError
from diffrestore.operators import GaussianNoise, Problem, build_operator
from diffrestore.priors.ncsnpp import (
    AAPM_256,
    NCSNpp,
    NCSNppConfig,
    NCSNppPrior,
    fir_downsample,
    fir_upsample,
    load_ncsnpp_network,
    trainable_names,
    write_tiny_checkpoint,
)
from diffrestore.solvers import get_solver

TINY = dict(image_size=32, num_channels=1, nf=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16])


def _meta_net(config: NCSNppConfig) -> NCSNpp:
    with torch.device("meta"):  # shapes only
        return NCSNpp(config)


def test_tiny_config_has_the_official_parameter_names_and_shapes() -> None:
    """Names and shapes that score_sde's NCSNpp builds for this config (read off its module list: conv_in = 3,
    level 0 block = 4, its down block = 5, the residual input pyramid = 6, attention at 16 px = 8, 10, 14, the up
    block = 15, the head = 18, 19)."""
    state = _meta_net(NCSNppConfig.from_dict(TINY)).state_dict()
    expected = {
        "all_modules.0.W": (8,),
        "all_modules.1.weight": (32, 16),
        "all_modules.2.weight": (32, 32),
        "all_modules.3.weight": (8, 1, 3, 3),
        "all_modules.4.Dense_0.weight": (8, 32),
        "all_modules.5.Conv_2.weight": (8, 8, 1, 1),
        "all_modules.6.Conv2d_0.weight": (8, 1, 3, 3),
        "all_modules.6.Conv2d_0.bias": (8,),
        "all_modules.7.Conv_2.weight": (16, 8, 1, 1),
        "all_modules.8.NIN_0.W": (16, 16),
        "all_modules.8.NIN_3.b": (16,),
        "all_modules.13.GroupNorm_0.weight": (24,),
        "all_modules.15.Conv_2.weight": (16, 16, 1, 1),
        "all_modules.16.Conv_0.weight": (8, 24, 3, 3),
        "all_modules.18.weight": (8,),
        "all_modules.19.weight": (1, 8, 3, 3),
    }
    for name, shape in expected.items():
        assert tuple(state[name].shape) == shape, name
    assert "all_modules.4.Conv_2.weight" not in state  # no skip conv when channels stay and nothing resamples
    assert "sigmas" not in state  # the discrete schedule buffer is dropped on load (unused when continuous)
    assert len(state) == 157


def test_aapm_config_matches_the_official_parameter_count() -> None:
    """61,433,601 parameters, 521 tensors in 54 modules: what score_sde's NCSNpp builds for MCG's AAPM config."""
    net = _meta_net(AAPM_256)
    assert sum(p.numel() for p in net.parameters()) == 61_433_601
    assert len(net.state_dict()) == 521 and len(net.all_modules) == 54
    assert trainable_names(net)[0] == "all_modules.1.weight"  # the fixed Fourier W has no EMA copy


def _tiny_folder(tmp_path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return write_tiny_checkpoint(TINY, tmp_path)


def test_official_checkpoint_layout_loads_strictly_with_the_ema_weights(tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path)
    raw = torch.load(folder / "model.pt", weights_only=True)
    net = load_ncsnpp_network(folder / "model.pt", NCSNppConfig.from_dict(TINY))
    names = trainable_names(net)
    params = dict(net.named_parameters())
    for name, shadow in zip(names, raw["ema"]["shadow_params"], strict=True):
        assert torch.equal(params[name], shadow), name  # the raw weights in "model" are NaN
    assert torch.equal(params["all_modules.0.W"], raw["model"]["module.all_modules.0.W"])  # not in the EMA


def test_a_plain_state_dict_loads_too(tmp_path: Path) -> None:
    net = NCSNpp(NCSNppConfig.from_dict(TINY))
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    loaded = load_ncsnpp_network(tmp_path / "plain.pt", net.config)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True))


@pytest.mark.parametrize(("edit", "word"), [("drop", "Missing"), ("add", "Unexpected")])
def test_missing_or_extra_key_is_a_one_line_error(tmp_path: Path, edit: str, word: str) -> None:
    state = NCSNpp(NCSNppConfig.from_dict(TINY)).state_dict()
    if edit == "drop":
        state.pop("all_modules.8.NIN_0.W")
    else:
        state["all_modules.99.weight"] = torch.zeros(1)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=word) as info:
        load_ncsnpp_network(tmp_path / "bad.pth", NCSNppConfig.from_dict(TINY))
    assert "\n" not in str(info.value)


def test_ema_of_another_architecture_is_refused(tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path)
    other = NCSNppConfig.from_dict({**TINY, "nf": 16})
    with pytest.raises(ModelError, match="EMA weights"):
        load_ncsnpp_network(folder / "model.pt", other)


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match=r"score-SDE checkpoint .* cannot be read as a tensor file"):
        load_ncsnpp_network(tmp_path / "x.pth", AAPM_256)


@pytest.mark.parametrize("option", [{"progressive": "residual"}, {"embedding_type": "positional"},
                                    {"resblock_type": "ddpm"}, {"fir": False}, {"nonlinearity": "elu"}])
def test_unsupported_options_are_refused_in_one_line(option: dict) -> None:
    with pytest.raises(ModelError, match="not supported") as info:
        NCSNppConfig.from_dict({**TINY, **option})
    assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="unknown NCSN"):
        NCSNppConfig.from_dict({**TINY, "n_f": 8})


class _GaussianScore(nn.Module):
    """The exact score of data ~ N(mean, var) (data units) under VE noise: -(x - mean) / (var + s^2). It records
    what it was called with, so the test can check the units the prior feeds it."""

    def __init__(self, config: NCSNppConfig, mean: float, var: float) -> None:
        super().__init__()
        self.config = config
        self.dummy = nn.Parameter(torch.zeros(1))  # freeze_network reads device and dtype off a parameter
        self.mean, self.var = mean, var
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), sigma.clone()))
        return -(x - self.mean) / (self.var + sigma.reshape(-1, 1, 1, 1) ** 2)


def test_denoiser_converts_between_01_data_and_our_units() -> None:
    """[0, 1] data N(m, v) is N(2m - 1, 4v) in our units; the prior's D must be that Gaussian's posterior mean."""
    mean, var = 0.3, 0.02
    toy = _GaussianScore(NCSNppConfig.from_dict(TINY), mean, var)
    prior = NCSNppPrior(toy)  # type: ignore[arg-type]
    assert (prior.sigma_min, prior.sigma_max) == pytest.approx((0.02, 756.0))
    x = torch.linspace(-3, 3, 2 * 32 * 32).reshape(2, 1, 32, 32)
    sigma = torch.tensor([0.1, 5.0])
    d = prior.denoise(x, sigma)
    fed_x, fed_sigma = toy.calls[-1]
    torch.testing.assert_close(fed_x, (x + 1) / 2)
    torch.testing.assert_close(fed_sigma, sigma / 2)
    mu, v = 2 * mean - 1, 4 * var
    expected = mu + v / (v + sigma.reshape(-1, 1, 1, 1) ** 2) * (x - mu)
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-5)


def test_centered_models_need_no_conversion() -> None:
    toy = _GaussianScore(NCSNppConfig.from_dict({**TINY, "centered": True}), 0.0, 0.25)
    prior = NCSNppPrior(toy)  # type: ignore[arg-type]
    assert (prior.sigma_min, prior.sigma_max) == pytest.approx((0.01, 378.0))
    x = torch.randn(1, 1, 32, 32)
    d = prior.denoise(x, 0.5)
    torch.testing.assert_close(toy.calls[-1][0], x)
    torch.testing.assert_close(d, 0.25 / (0.25 + 0.25) * x)


def test_random_network_denoises_with_gradients_per_item_sigmas(tmp_path: Path) -> None:
    prior = NCSNppPrior(load_ncsnpp_network(_tiny_folder(tmp_path) / "model.pt", NCSNppConfig.from_dict(TINY)))
    assert prior.native_size == (32, 32) and prior.channels == 1 and prior.size_multiple == 2
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_(True)
    d = prior.denoise(x, torch.tensor([0.05, 20.0]))
    assert d.shape == x.shape and d.dtype == torch.float32 and torch.isfinite(d).all()
    d.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    one = prior.denoise(x[1:].detach(), 20.0)
    torch.testing.assert_close(one, d[1:].detach(), rtol=1e-4, atol=1e-4)


def test_fir_resampling_keeps_constants_and_halves_or_doubles_the_size() -> None:
    x = torch.full((1, 2, 8, 8), 3.0)
    up, down = fir_upsample(x, (1, 3, 3, 1)), fir_downsample(x, (1, 3, 3, 1))
    assert up.shape[-2:] == (16, 16) and down.shape[-2:] == (4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))


def test_registry_tiny_model_and_a_dps_run_on_a_ct_sized_grayscale_image() -> None:
    from diffrestore.priors.load import load_prior

    prior = load_prior("tiny-score-sde")
    assert isinstance(prior, NCSNppPrior) and prior.name == "tiny-score-sde" and prior.kind == "pixel"
    op = build_operator("sr", (1, 32, 32), factor=2)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    problem = Problem(op, GaussianNoise(0.05), op(x))
    out = get_solver("dps", "fast", steps=2).run(prior, problem, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()
