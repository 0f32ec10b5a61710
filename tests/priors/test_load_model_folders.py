"""Broken model folders (``--model DIR``) fail in one line naming the folder, the file and the fix (ModelError,
exit 3): a config.json that is a JSON list, not JSON, or has impossible values; weights that do not fit their
config (shapes, missing tensors), for our own model folders and for diffusers folders alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffrestore.errors import EXIT_MODEL, ModelError
from diffrestore.priors.builtin import DenoiserUNet, UNetConfig, is_model_dir, load_model_dir, save_model_dir
from diffrestore.priors.load import load_prior, prior_kind
from diffrestore.priors.tiny import build_tiny
from diffrestore.registry import load_registry

SMALL = UNetConfig(base_channels=8, channel_mults=(1, 2), emb_dim=16, groups=4)


def _refusal(folder: Path, *needles: str, loader=load_prior) -> ModelError:
    with pytest.raises(ModelError) as info:
        loader(str(folder))
    text = str(info.value)
    assert "\n" not in text and info.value.exit_code == EXIT_MODEL and info.value.hint
    for needle in (str(folder), *needles):
        assert needle in text, f"{needle!r} not in {text!r}"
    for noise in ("object has no attribute", "Error(s) in loading state_dict", "huggingface.co"):
        assert noise not in text
    return info.value


@pytest.fixture(scope="module")
def builtin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_model_dir(DenoiserUNet(SMALL), tmp_path_factory.mktemp("models") / "small")


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(load_registry().get("tiny-pixel"), tmp_path_factory.mktemp("models") / "pixel")


def _copy(source: Path, tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(source, tmp_path / name))


def _edit_config(folder: Path, file: str = "config.json", **changes) -> None:
    config = json.loads((folder / file).read_text())
    config.update(changes)
    (folder / file).write_text(json.dumps(config))


def test_the_fixtures_load(builtin_dir: Path, diffusers_dir: Path) -> None:
    assert load_model_dir(builtin_dir).channels == 3
    assert prior_kind(str(diffusers_dir)) == "pixel" and load_prior(str(diffusers_dir)) is not None


@pytest.mark.parametrize("layout", ["builtin", "diffusers"])
@pytest.mark.parametrize(("text", "needle"), [("[1, 2]", "holds an array"), ('"x"', "holds a string"),
                                              ("{nope", "is not valid JSON")])
def test_config_that_is_not_a_json_object(builtin_dir: Path, diffusers_dir: Path, tmp_path: Path, layout: str,
                                          text: str, needle: str) -> None:
    folder = _copy(builtin_dir if layout == "builtin" else diffusers_dir, tmp_path)
    (folder / "config.json").write_text(text)
    assert not is_model_dir(folder)  # a yes/no question never raises
    for loader in (load_prior, prior_kind):
        _refusal(folder, "config.json", needle, "re-download", loader=loader)
    if layout == "builtin":
        _refusal(folder, "config.json", needle, loader=load_model_dir)


def test_builtin_weights_that_do_not_match_the_config(builtin_dir: Path, tmp_path: Path) -> None:
    folder = _copy(builtin_dir, tmp_path)
    _edit_config(folder, base_channels=16)
    error = _refusal(folder, "the weights in model.safetensors do not match its config.json", "differ in shape",
                     "'conv_in.weight' is 8x3x3x3 in the weights, 16x3x3x3 for the config", "diffrestore train")
    assert "tensor(s)" in str(error)
    folder = _copy(builtin_dir, tmp_path, "fewer")
    state = load_file(str(folder / "model.safetensors"))
    del state["conv_out.bias"]
    save_file(state, str(folder / "model.safetensors"))
    _refusal(folder, "1 tensor(s) the config needs are not in the weights (first: 'conv_out.bias')")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"base_channels": 0}, "'base_channels' must be a whole number >= 1, got 0"),
        ({"channel_mults": None}, "'channel_mults' must be a non-empty list"),
        ({"channel_mults": ["a"]}, "'channel_mults' must be a non-empty list"),
        ({"channels": 4}, "'channels' must be 1 (gray), 2 (complex) or 3 (RGB)"),
        ({"groups": 2.5}, "'groups' must be a whole number"),
        ({"padding_mode": "mirror"}, "'padding_mode' must be one of"),
        ({"sigma_min": 100.0}, "'sigma_min' (100.0) must be below 'sigma_max'"),
        ({"sigma_data": "0.5"}, "'sigma_data' must be a number > 0"),
        ({"recommended": []}, "'recommended' must be a table"),
        ({"recommended": {"dps_zeta": "1"}}, "'recommended.dps_zeta' must be a number > 0"),
        ({"recommended": {"dps_zeta": {"superres": -2}}}, "'recommended.dps_zeta' must be a number > 0"),
        ({"recommended": {"dps_zeta": 1.0, "dps_zeta_pixels": 0}}, "'recommended.dps_zeta_pixels' must be a number"),
        ({"recommended": {"dps_zeta_pixels": 196608}}, "'recommended.dps_zeta_pixels' needs the 'dps_zeta'"),
    ],
)
def test_builtin_config_with_impossible_values(builtin_dir: Path, tmp_path: Path, changes: dict, needle: str) -> None:
    folder = _copy(builtin_dir, tmp_path)
    _edit_config(folder, **changes)
    _refusal(folder, "invalid config.json", needle)


def test_builtin_weights_that_are_not_safetensors(builtin_dir: Path, tmp_path: Path) -> None:
    folder = _copy(builtin_dir, tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    _refusal(folder, "cannot read model.safetensors")


def test_diffusers_weights_that_do_not_match_the_config(diffusers_dir: Path, tmp_path: Path) -> None:
    folder = _copy(diffusers_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    _edit_config(folder, block_out_channels=[2 * c for c in config["block_out_channels"]])
    _refusal(folder, "the weights do not match config.json", "differ in shape",
             "'conv_in.weight' is 4x3x3x3 in the weights, 8x3x3x3 for the config")


def test_diffusers_weights_with_a_missing_tensor_are_not_filled_with_noise(diffusers_dir: Path,
                                                                           tmp_path: Path) -> None:
    # diffusers would initialise the missing tensor at random and only log a warning
    folder = _copy(diffusers_dir, tmp_path)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["conv_in.bias"]
    save_file(state, str(weights))
    _refusal(folder, "the config needs are not in the weights (first: 'conv_in.bias')")


def test_diffusers_scheduler_config_that_is_a_list_never_reaches_the_network(diffusers_dir: Path,
                                                                             tmp_path: Path) -> None:
    folder = _copy(diffusers_dir, tmp_path)
    (folder / "scheduler_config.json").write_text("[1]")
    _refusal(folder, "scheduler_config.json holds an array")
    (folder / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler",
                                                              "beta_schedule": "no-such-schedule"}))
    _refusal(folder, "scheduler_config.json does not describe a DDPMScheduler")


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    from diffrestore.priors.builtin import DenoiserUNet, UNetConfig, load_model_dir, save_model_dir

    torch.manual_seed(0)
    net = DenoiserUNet(UNetConfig(base_channels=8, channel_mults=(1, 2)))
    with torch.no_grad():  # a fresh network's output layer is zero: give every weight a value to round
        for p in net.parameters():
            p.normal_(0.0, 0.1)
    full = save_model_dir(net, tmp_path / "fp32")
    half = save_model_dir(net, tmp_path / "fp16", dtype=torch.float16)
    size32, size16 = ((p / "model.safetensors").stat().st_size for p in (full, half))
    assert size16 < 0.55 * size32
    a, b = load_model_dir(full), load_model_dir(half)
    assert next(b.net.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        da, db = a.denoise(x, 0.5), b.denoise(x, 0.5)
    assert not torch.equal(da, db)  # the weights were rounded ...
    torch.testing.assert_close(db, da, rtol=0, atol=2e-3)  # ... by fp16's 11 bits only
