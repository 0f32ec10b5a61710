"""bkse's learned nonlinear blur (operators/bkse.py): the checkpoint's names and shapes, strict loading, the fixed
kernel code, sizes that are not multiples of 128, the clamp, gradients, the papers' solver settings, and
``deblur --blur bkse`` end to end with random weights in a cache of the test's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import make_tiny_model, run_main, write_image
from operator_cases import tiny_bkse_generator

from diffrestore.errors import ModelError, UsageError
from diffrestore.operators import OperatorKind, build_operator
from diffrestore.operators.bkse import (
    KERNEL_ENCODER_SHAPES,
    BkseBlur,
    BkseGenerator,
    _mirror_pad,
    check_bkse_state,
    code_shape,
)

# ---------------------------------------------------------------- the checkpoint's layout, as data
# Derived by hand from bkse's models/kernel_encoding/kernel_wizard.py, models/backbones/unet_parts.py and
# models/backbones/resnet.py with options/generate_blur/default.yml (nf 64, front_RBs 10, back_RBs 20, input_nc 3,
# kernel_dim 512, use_vae true, norms "none"), independently of our modules.
_RB = (64, 64, 3, 3)


def _blocks(prefix: str, indices: range) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{i}.{conv}.{p}": (_RB if p == "weight" else (64,)) for i in indices
            for conv in ("conv1", "conv2") for p in ("weight", "bias")}


_UNET = "adapter.model"
OFFICIAL_GENERATOR: dict[str, tuple[int, ...]] = {
    "feature_extractor.0.weight": (64, 3, 3, 3), "feature_extractor.0.bias": (64,),
    "feature_extractor.2.weight": _RB, "feature_extractor.2.bias": (64,),
    "feature_extractor.4.weight": _RB, "feature_extractor.4.bias": (64,),
    **_blocks("feature_extractor", range(6, 16)),
    f"{_UNET}.down.0.weight": (64, 64, 4, 4),
    f"{_UNET}.up.1.weight": (128, 64, 4, 4), f"{_UNET}.up.1.bias": (64,),
    f"{_UNET}.submodule.down.1.weight": (128, 64, 4, 4),
    f"{_UNET}.submodule.up.1.weight": (256, 64, 4, 4),
    f"{_UNET}.submodule.submodule.down.1.weight": (256, 128, 4, 4),
    f"{_UNET}.submodule.submodule.up.1.weight": (512, 128, 4, 4),
    f"{_UNET}.submodule.submodule.submodule.down.1.weight": (512, 256, 4, 4),
    f"{_UNET}.submodule.submodule.submodule.up.1.weight": (1024, 256, 4, 4),
    f"{_UNET}.submodule.submodule.submodule.submodule.down.1.weight": (512, 512, 4, 4),
    f"{_UNET}.submodule.submodule.submodule.submodule.up.1.weight": (1024, 512, 4, 4),
    **_blocks("recon_trunk", range(20)),
    "recon_trunk.20.weight": (256, 64, 3, 3), "recon_trunk.20.bias": (256,),
    "recon_trunk.23.weight": (256, 64, 3, 3), "recon_trunk.23.bias": (256,),
    "recon_trunk.26.weight": _RB, "recon_trunk.26.bias": (64,),
    "recon_trunk.28.weight": (3, 64, 3, 3), "recon_trunk.28.bias": (3,),
}
_WIDE = (1024, 1024, 3, 3)
OFFICIAL_ENCODER: dict[str, tuple[int, ...]] = {
    "kernel_extractor.model.1.weight": (64, 128, 7, 7),
    "kernel_extractor.model.4.weight": (128, 64, 3, 3),
    "kernel_extractor.model.7.weight": (256, 128, 3, 3),
    "kernel_extractor.model.10.weight": (512, 256, 3, 3),
    "kernel_extractor.model.13.weight": (1024, 512, 3, 3),
    "kernel_extractor.model.16.weight": _WIDE,
    **{f"kernel_extractor.model.{i}.conv_block.{c}.weight": _WIDE for i in range(19, 23) for c in (1, 5)},
}


def _shapes_only() -> dict[str, torch.Tensor]:
    """A state dict with the official names and shapes, every tensor a stride-0 view of one zero (no memory)."""
    return {k: torch.zeros(()).expand(s) for k, s in {**OFFICIAL_GENERATOR, **OFFICIAL_ENCODER}.items()}


def _random_checkpoint(seed: int = 0) -> dict[str, torch.Tensor]:
    """The official layout with our module's random initialisation (the encoder: zeros, never used)."""
    torch.manual_seed(seed)
    return {**BkseGenerator().state_dict(), **{k: torch.zeros(()).expand(s) for k, s in OFFICIAL_ENCODER.items()}}


def test_our_module_has_the_checkpoints_names_and_shapes() -> None:
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in BkseGenerator().state_dict().items()}
    assert ours == OFFICIAL_GENERATOR
    assert KERNEL_ENCODER_SHAPES == OFFICIAL_ENCODER
    assert sum(torch.Size(s).numel() for s in OFFICIAL_GENERATOR.values()) == 23_662_531


def test_an_official_state_dict_loads_strictly_and_drops_the_encoder() -> None:
    kept = check_bkse_state(_shapes_only(), "x.pth")
    assert set(kept) == set(OFFICIAL_GENERATOR)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("recon_trunk.28.bias"), "lack the key 'recon_trunk.28.bias'"),
        (lambda s: s.pop("kernel_extractor.model.16.weight"), "lack the key 'kernel_extractor.model.16.weight'"),
        (lambda s: s.update({"module.extra": torch.zeros(1)}), "unexpected keys (module.extra)"),
        (lambda s: s.update({"feature_extractor.0.weight": torch.zeros(64, 1, 3, 3)}),
         "key 'feature_extractor.0.weight' has shape (64, 1, 3, 3), expected (64, 3, 3, 3)"),
        (lambda s: s.update({"kernel_extractor.model.13.weight": torch.zeros(()).expand(512, 512, 3, 3)}),
         "trained without the VAE"),
    ],
    ids=["missing", "missing-encoder", "extra", "shape", "wovae"],
)
def test_a_wrong_state_dict_is_one_line_naming_the_key(change, message: str) -> None:
    state = _shapes_only()
    change(state)
    with pytest.raises(ModelError) as error:
        check_bkse_state(state, "x.pth")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 3


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path: Path) -> None:
    page = tmp_path / "GOPRO_wVAE.pth"
    page.write_text("<html>Google Drive can't scan this file for viruses</html>")  # what Drive may send
    with pytest.raises(ModelError, match="cannot be read as a tensor file") as error:
        BkseBlur((3, 8, 8), page)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match="missing"):
        BkseBlur((3, 8, 8), tmp_path / "absent.pth")


# --------------------------------------------------------------------------------------- the operator


def _zero_generator() -> BkseGenerator:
    network = tiny_bkse_generator()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
    return network  # G(x01) = x01: the operator is the identity on [-1, 1]


def test_sizes_off_the_grid_come_back_at_their_size() -> None:
    x = torch.rand(2, 3, 100, 130) * 2 - 1
    op = BkseBlur((3, 100, 130), tiny_bkse_generator())
    assert op(x).shape == (2, 3, 100, 130)
    assert op.code.shape == code_shape(100, 130, 32) == (1, 32, 1, 2)
    # With G = identity, padding and cropping must put every pixel back where it was.
    assert torch.equal(BkseBlur((3, 100, 130), _zero_generator())(x), x)


def test_wide_reflect_padding_mirrors_again_and_again() -> None:
    x = torch.arange(5.0).view(1, 1, 1, 5)
    padded = _mirror_pad(x, 0, 0, 0, 11)
    assert padded.flatten().tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]
    assert _mirror_pad(torch.ones(1, 1, 1, 1), 3, 4, 5, 6).shape == (1, 1, 8, 12)


def test_the_code_is_drawn_once_and_kept_for_every_call() -> None:
    x = torch.rand(1, 3, 40, 50) * 2 - 1
    op = BkseBlur((3, 40, 50), tiny_bkse_generator(), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = op(x)  # the measurement
    assert torch.equal(op(x), y)  # a second call: the same blur (DPS's operator would draw a new code here)
    with torch.enable_grad():  # the guidance sees the very blur that made y: zero residual at the truth
        xg = x.clone().requires_grad_(True)
        assert float((op(xg) - y).detach().abs().max()) == 0.0
    again = BkseBlur((3, 40, 50), tiny_bkse_generator(), generator=torch.Generator().manual_seed(3))
    other = BkseBlur((3, 40, 50), tiny_bkse_generator(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(again.code, op.code) and not torch.equal(other.code, op.code)
    assert not torch.equal(other(x), y)


def test_the_code_follows_n_0_1_2_squared() -> None:
    op = BkseBlur((3, 1024, 512), tiny_bkse_generator(), generator=torch.Generator().manual_seed(0))
    assert op.code.shape == (1, 32, 8, 4)
    assert abs(float(op.code.std()) - 1.2) < 0.1 and abs(float(op.code.mean())) < 0.1


def test_a_known_code_is_used_as_given_and_a_wrong_one_refused() -> None:
    daps = (np.random.RandomState(0).randn(1, 512, 2, 2) * 1.2).astype(np.float32)  # DAPS's fixed code
    with torch.device("meta"):
        network = BkseGenerator()
    op = BkseBlur((3, 256, 256), network, code=daps[0])  # (512, h, w) is accepted too
    assert op.code.shape == (1, 512, 2, 2) and torch.equal(op.code, torch.from_numpy(daps))
    with pytest.raises(UsageError, match=r"has shape \(1, 512, 2, 2\), but a 100x300 image needs \(1, 512, 1, 3\)"):
        BkseBlur((3, 100, 300), network, code=daps)
    with pytest.raises(UsageError, match="NaN"):
        BkseBlur((3, 256, 256), network, code=np.full((1, 512, 2, 2), np.nan, np.float32))


def test_the_papers_clamp_and_its_zero_gradient() -> None:
    network = _zero_generator()
    with torch.no_grad():
        network.recon_trunk[-1].bias.fill_(10.0)  # G(x01) = x01 + 10: far above the range
    op = BkseBlur((3, 9, 8), network)
    x = (torch.rand(2, 3, 9, 8) * 2 - 1).requires_grad_(True)
    y = op(x)
    assert torch.equal(y, torch.ones_like(y))
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_the_real_architecture_loads_a_file_and_has_finite_gradients(tmp_path: Path) -> None:
    file = tmp_path / "GOPRO_wVAE.pth"
    torch.save(_random_checkpoint(), file)
    op = BkseBlur((3, 128, 128), file, generator=torch.Generator().manual_seed(0))
    assert op.code.shape == (1, 512, 1, 1)
    x = (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
    y = op(x)
    assert y.shape == x.shape and float(y.detach().abs().max()) <= 1.0
    (grad,) = torch.autograd.grad((y - x.detach()).square().sum(), x)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in op.parameters())  # frozen: solvers differentiate x only


def test_the_factory_builds_it_with_its_kind() -> None:
    op = build_operator("bkse", (3, 20, 24), weights=tiny_bkse_generator(), generator=torch.Generator())
    assert isinstance(op, BkseBlur) and op.kind is OperatorKind.NONLINEAR_BLUR and not op.linear
    with pytest.raises(UsageError, match="weights are required"):
        build_operator("bkse", (3, 20, 24))
    with pytest.raises(UsageError, match="3-channel"):
        build_operator("bkse", (1, 20, 24), weights=tiny_bkse_generator())


def test_the_papers_solver_settings_for_this_kind() -> None:
    from diffrestore.operators import GaussianNoise, Problem
    from diffrestore.solvers.daps import default_lr
    from diffrestore.solvers.dps import DPS, DPSConfig
    from diffrestore.solvers.latent_daps import official_setting

    op = BkseBlur((3, 8, 8), tiny_bkse_generator())
    problem = Problem(op, GaussianNoise(0.025), torch.zeros(1, 3, 8, 8))
    assert DPS(DPSConfig(steps=1000)).guidance_scale(problem) == 0.3  # nonlinear_deblur_config.yaml
    assert default_lr(op) == 1e-5  # DAPS configs/task/nonlinear_blur.yaml, pixel
    assert official_setting(op, "vq").steps == 80 and official_setting(op, "kl").momentum == 0.80


# ------------------------------------------------------------------------------------- the command line

BKSE_DIR = Path("models") / "bkse-gopro-wvae"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("DIFFRESTORE_REGISTRY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIFFRESTORE_OFFLINE", "1")
    return tmp_path / "cache"


@pytest.fixture
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def _run(tmp_path: Path, capsys, model: Path, *flags: object):
    image = write_image(tmp_path / "photo.png")  # 24 x 20: one code cell
    return run_main(["deblur", image, "--blur", "bkse", *flags, "--model", model, "--steps", "1", "--device",
                     "cpu", "--method", "dps", "-o", tmp_path / "out.png"], capsys)


def test_deblur_bkse_simulated_end_to_end(tmp_path: Path, capsys, model: Path, cache: Path) -> None:
    (cache / BKSE_DIR).mkdir(parents=True)
    torch.save(_random_checkpoint(), cache / BKSE_DIR / "GOPRO_wVAE.pth")
    result = _run(tmp_path, capsys, model, "--simulate", "--json")
    assert result.code == 0, result.err
    assert '"blur": "bkse"' in result.out and '"kernel_code": "seed"' in result.out
    assert (tmp_path / "out.png").is_file()


def test_missing_weights_are_exit_3_naming_the_download(tmp_path: Path, capsys, model: Path, cache: Path) -> None:
    result = _run(tmp_path, capsys, model, "--simulate")
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert result.code == 3 and len(errors) == 1, result.err
    assert "diffrestore models download bkse-gopro-wvae" in errors[0]


def test_code_and_flag_mistakes_are_exit_2_before_loading(tmp_path: Path, capsys, model: Path, cache: Path) -> None:
    (cache / BKSE_DIR).mkdir(parents=True)
    (cache / BKSE_DIR / "GOPRO_wVAE.pth").write_bytes(b"not read before the flags are checked")
    wrong_width, wrong_cells = tmp_path / "c1.npy", tmp_path / "c2.npy"
    np.save(wrong_width, np.zeros((1, 256, 1, 1), np.float32))
    np.save(wrong_cells, np.zeros((1, 512, 2, 2), np.float32))
    for flags, message in [
        ((), "add --simulate"),
        (("--kernel-code", wrong_width), "has shape (1, 256, 1, 1)"),
        (("--kernel-code", wrong_cells), "has 2 x 2 cells, but a 24x20 image needs 1 x 1"),
        (("--simulate", "--kernel-size", "5"), "cannot be combined with --kernel-size"),
    ]:
        result = _run(tmp_path, capsys, model, *flags)
        errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
        assert result.code == 2 and len(errors) == 1 and message in errors[0], (flags, result.err)
    assert not (tmp_path / "out.png").exists()


def test_the_weights_are_no_prior(tmp_path: Path, capsys, cache: Path) -> None:
    image = write_image(tmp_path / "photo.png")
    result = run_main(["deblur", image, "--model", "bkse-gopro-wvae", "--device", "cpu"], capsys)
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert result.code == 2 and len(errors) == 1 and "operator" in errors[0], result.err
