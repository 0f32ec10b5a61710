"""Every family loads through the code path real checkpoints take: tiny models, local folders, fake-hub downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from diffrestore import registry as reg
from diffrestore.errors import ModelError
from diffrestore.priors import loaders


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "DIFFRESTORE_TRUST_UNVERIFIED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))

    def no_hub(*args: object, **kwargs: object) -> str:
        raise AssertionError("no hub call expected")

    monkeypatch.setattr(reg, "HUB_DOWNLOAD", no_hub)


@pytest.fixture(scope="module")
def shipped() -> reg.Registry:
    return reg.load_registry()


@pytest.mark.parametrize("name", ["tiny-pixel", "tiny-adm"])
def test_tiny_pixel_priors_denoise(name: str, shipped: reg.Registry) -> None:
    prior = reg.resolve_prior(name, device="cpu", dtype=torch.float32, offline=True)
    size = shipped.get(name).resolution
    assert prior.channels == 3 and prior.native_size == (size, size)
    assert 0 < prior.sigma_min < 0.02 and prior.sigma_max > 100
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = prior.denoise(x, torch.tensor([0.5, 5.0]))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    # denoise is differentiable in x (solvers backpropagate through it)
    x.requires_grad_(True)
    prior.denoise(x, 1.0).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_tiny_models_are_seeded_and_leave_the_global_rng_alone(shipped: reg.Registry) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = reg.resolve_prior("tiny-pixel")
    assert torch.equal(torch.rand(1), expected_next)
    b = reg.resolve_prior("tiny-pixel")
    for (key, pa), pb in zip(a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key


def test_tiny_latent_kl_components() -> None:
    c = reg.resolve_components("tiny-latent-kl", offline=True)
    assert isinstance(c, loaders.LatentComponents) and c.family == "latent-kl"
    assert c.latent_scale == pytest.approx(0.18215)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = c.encode(x)
        assert z.shape == (1, 4, 16, 16)
        assert c.decode(z).shape == (1, 3, 32, 32)
        embeddings = torch.randn(1, 77, c.unet.config.cross_attention_dim)  # prompts are fed as embeddings
        eps = c.unet(z, 10, encoder_hidden_states=embeddings).sample
    assert eps.shape == z.shape
    assert hasattr(c.scheduler, "alphas_cumprod") and c.prompt
    if c.tokenizer is None:
        with pytest.raises(ModelError, match="cannot encode a prompt"):
            c.encode_prompt()


def test_tiny_latent_vq_components_use_scale_one() -> None:
    c = reg.resolve_components("tiny-latent-vq", offline=True)
    # VQModel's config carries diffusers' default scaling_factor 0.18215: the registry value must win
    assert c.autoencoder.config.scaling_factor == pytest.approx(0.18215)
    assert c.latent_scale == 1.0
    with torch.no_grad():
        z = c.encode(torch.zeros(1, 3, 32, 32))
        assert z.shape == (1, 3, 16, 16)
        assert c.unet(z, 5).sample.shape == z.shape
        assert c.decode(z).shape == (1, 3, 32, 32)


def test_tiny_discrete_components() -> None:
    c = reg.resolve_components("tiny-discrete-vq", offline=True)
    assert isinstance(c, loaders.DiscreteComponents)
    assert c.codebook_size == 12 and c.token_grid == (8, 8)
    assert c.cfg_embeddings is not None and c.cfg_embeddings.shape == (77, 32)
    ids = torch.randint(0, 12, (2, 64))
    with torch.no_grad():
        images = c.decode_tokens(ids)
        logits = c.transformer(
            ids, encoder_hidden_states=c.cfg_embeddings[None].expand(2, -1, -1), timestep=torch.tensor(3)
        ).sample  # one t per call, as in VQ-Diffusion
    assert images.shape == (2, 3, 16, 16)
    assert logits.shape == (2, 12, 64)  # log p(z0 | z_t) over the codebook (the mask class is never predicted)
    assert hasattr(c.scheduler, "num_embed")


def test_latent_models_are_not_pixel_priors() -> None:
    with pytest.raises(ModelError, match=r"'tiny-latent-kl' is a latent-kl model.*latentdaps"):
        reg.resolve_prior("tiny-latent-kl")
    with pytest.raises(ModelError, match="load it with resolve_prior"):
        reg.resolve_components("tiny-adm")


def test_local_diffusers_unet_folder_and_pipeline_folder(tmp_path: Path, shipped: reg.Registry) -> None:
    flat = loaders.build_tiny(shipped.get("tiny-pixel"), tmp_path / "flat")  # google/ddpm-* layout
    prior = reg.resolve_prior(str(flat))
    assert prior.native_size == (8, 8)
    pipeline = tmp_path / "pipe"
    loaders.build_tiny(shipped.get("tiny-pixel"), pipeline / "unet")
    (pipeline / "scheduler").mkdir()
    (pipeline / "unet" / "scheduler_config.json").rename(pipeline / "scheduler" / "scheduler_config.json")
    (pipeline / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}')
    other = reg.resolve_prior(str(pipeline))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prior.denoise(x, 2.0), other.denoise(x, 2.0), atol=1e-6)


def test_local_latent_pipeline_folder_gives_components(tmp_path: Path, shipped: reg.Registry) -> None:
    folder = loaders.build_tiny(shipped.get("tiny-latent-vq"), tmp_path / "ldm")
    with pytest.raises(ModelError, match="latent-vq pipeline, not a pixel-space prior"):
        reg.resolve_prior(str(folder))
    c = reg.resolve_components(str(folder))
    assert c.family == "latent-vq" and c.latent_scale == 1.0  # VQ folders: never the 0.18215 default


def test_local_builtin_model_folder(tmp_path: Path) -> None:
    from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet, UNetConfig, save_model_dir

    torch.manual_seed(0)
    save_model_dir(DenoiserUNet(UNetConfig(base_channels=8, channel_mults=(1, 2))), tmp_path / "mine")
    prior = reg.resolve_prior(str(tmp_path / "mine"))
    assert isinstance(prior, BuiltinPrior)


def test_not_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="is not a model folder"):
        reg.resolve_prior(str(tmp_path / "junk"))
    with pytest.raises(ModelError, match="does not exist"):
        reg.resolve_prior(str(tmp_path / "nowhere"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["pixel", "adm", "latent-vq"])
def test_registry_entry_downloads_through_the_hub_then_loads(
    tmp_path: Path, shipped: reg.Registry, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    """A real-style entry (pinned files, hf source) whose repo is a tiny model served by a fake hub."""
    tiny = {"pixel": "tiny-pixel", "adm": "tiny-adm", "latent-vq": "tiny-latent-vq"}[family]
    repo = loaders.build_tiny(shipped.get(tiny), tmp_path / "repo")
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    file_tables = "".join(
        f'[[models.real.files]]\npath = "{f}"\nsha256 = "{_sha(repo / f)}"\nsize = {(repo / f).stat().st_size}\n'
        for f in files
    )
    extra = {
        "pixel": "",
        "adm": 'arch = { image_size = 16, num_channels = 32, num_res_blocks = 1, channel_mult = "1,2", '
        'attention_resolutions = "2", num_heads = 2, num_head_channels = 16 }\n',
        "latent-vq": "latent_scale = 1.0\n",
    }[family]
    (tmp_path / "models.toml").write_text(f"""schema_version = 1
[models.real]
family = "{family}"
description = "d"
licence = "L"
resolution = 16
solvers = ["dps"]
tasks = ["any"]
verified = true
{extra}{file_tables}
[[models.real.sources]]
type = "hf"
repo = "org/real"
revision = "{"b" * 40}"
""")
    calls: list[str] = []

    def fake_hub(repo_id: str, filename: str, *, revision: str, local_dir: str) -> str:
        calls.append(filename)
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((repo / filename).read_bytes())
        return str(target)

    monkeypatch.setattr(reg, "HUB_DOWNLOAD", fake_hub)
    registry = reg.load_registry(tmp_path / "models.toml")
    messages: list[str] = []
    if family == "latent-vq":
        loaded = reg.resolve_components("real", registry=registry, echo=messages.append)
        assert loaded.latent_scale == 1.0
    else:
        loaded = reg.resolve_prior("real", registry=registry, echo=messages.append)
        assert loaded.channels == 3
    assert sorted(calls) == files
    assert messages[0].startswith("real: licence: L")
    # second time: from the cache, no hub call, even offline
    reg.resolve_prior("real", registry=registry, offline=True) if family != "latent-vq" else reg.resolve_components(
        "real", registry=registry, offline=True
    )
    assert sorted(calls) == files


def test_registry_name_wins_over_a_same_named_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny-adm").mkdir()  # e.g. a results folder the user happens to be next to
    monkeypatch.chdir(tmp_path)
    assert reg.resolve_prior("tiny-adm").native_size == (16, 16)
    with pytest.raises(ModelError, match="is not a model folder"):
        reg.resolve_prior("./tiny-adm")


def test_builtin_entry_loads_the_folder_inside_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet, UNetConfig, save_model_dir

    save_model_dir(DenoiserUNet(UNetConfig(base_channels=8, channel_mults=(1, 2))), tmp_path / "weights" / "default")
    monkeypatch.setattr(reg, "PACKAGE_DIR", tmp_path)  # stands in for the installed package folder
    for name in ("builtin", "default"):
        prior = reg.resolve_prior(name, offline=True)
        assert isinstance(prior, BuiltinPrior) and prior.name == "builtin"
