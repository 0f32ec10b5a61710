"""Every family loads through the code path real checkpoints take: tiny models, local folders, fake-hub downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from diffrestore import registry as reg
from diffrestore.errors import ModelError, UsageError
from diffrestore.priors import files
from diffrestore.priors.base import Conditioning, DiscretePrior, LatentPrior, Prior
from diffrestore.priors.load import load_prior, prior_kind
from diffrestore.priors.tiny import build_tiny


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "DIFFRESTORE_OFFLINE", "DIFFRESTORE_REGISTRY", "DIFFRESTORE_TRUST_UNVERIFIED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DIFFRESTORE_CACHE", str(tmp_path / "cache"))

    def no_hub(*args: object, **kwargs: object) -> str:
        raise AssertionError("no hub call expected")

    monkeypatch.setattr(reg.download, "HUB_DOWNLOAD", no_hub)


@pytest.fixture(scope="module")
def shipped() -> reg.Registry:
    return reg.load_registry()


@pytest.mark.parametrize("name", ["tiny-pixel", "tiny-adm"])
def test_tiny_pixel_priors_denoise(name: str, shipped: reg.Registry) -> None:
    prior = load_prior(name, device="cpu", dtype=torch.float32, offline=True)
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
    a = load_prior("tiny-pixel")
    assert torch.equal(torch.rand(1), expected_next)
    b = load_prior("tiny-pixel")
    for (key, pa), pb in zip(a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key


def test_tiny_latent_kl_prior() -> None:
    prior = load_prior("tiny-latent-kl", offline=True)
    assert isinstance(prior, LatentPrior) and prior.kind == "latent" and prior.conditional
    assert prior.latent_scale == pytest.approx(0.18215) and prior.native_size == (32, 32)
    assert prior.latent_shape((3, 32, 48)) == (4, 16, 24)
    with pytest.raises(UsageError, match="divisible by 4"):
        prior.latent_shape((3, 30, 32))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    embeddings = torch.randn(1, 77, prior.unet.config.cross_attention_dim)  # prompts can be fed as embeddings
    cond = Conditioning(embeddings=embeddings)
    with torch.no_grad():
        z = prior.encode(x)
        assert z.shape == (1, 4, 16, 16)
        assert prior.decode(z).shape == (1, 3, 32, 32)
        z0 = prior.denoise(z, 2.0, cond)
        # the one VP conversion, by hand: eps at the table timestep of sigma, x0 = z - sigma eps
        t = prior.vp.timestep(torch.tensor([2.0]))
        eps = prior.unet(z / 5**0.5, t, encoder_hidden_states=embeddings).sample
    assert torch.allclose(z0, z - 2.0 * eps, atol=1e-5)
    # classifier-free guidance: negative + g (cond - negative), in eps space
    negative = torch.zeros_like(embeddings)
    with torch.no_grad():
        guided = prior.denoise(z, 2.0, Conditioning(embeddings=embeddings, negative=negative, guidance=3.0))
        z0_neg = prior.denoise(z, 2.0, Conditioning(embeddings=negative))
    assert torch.allclose(guided, z0_neg + 3.0 * (z0 - z0_neg), atol=1e-5)
    # decode is differentiable in z (the data term of latent solvers goes through it)
    zg = z.clone().requires_grad_(True)
    prior.decode(zg).square().sum().backward()
    assert zg.grad is not None and torch.isfinite(zg.grad).all() and zg.grad.abs().sum() > 0
    if prior.tokenizer is None:  # no tokenizer in the tiny model: a prompt cannot be encoded, and we say why
        with pytest.raises(ModelError, match=r"cannot encode a prompt.*diffrestore\[text\]"):
            prior.condition("a photo")


def test_tiny_latent_vq_prior_uses_scale_one_and_its_own_alpha_bar() -> None:
    prior = load_prior("tiny-latent-vq", offline=True)
    # VQModel's config carries diffusers' default scaling_factor 0.18215: the registry value must win
    assert prior.autoencoder.config.scaling_factor == pytest.approx(0.18215)
    assert prior.latent_scale == 1.0 and not prior.conditional
    # sigma -> t through the model's own (scaled-linear 0.0015..0.0195) table: LDM at sigma 0.1 is t ~ 6, not the
    # t ~ 27 of the DDPM-linear table the official LatentDAPS code uses
    t = float(prior.vp.timestep(torch.tensor([0.1]))[0])
    assert 5.0 < t < 7.5
    with torch.no_grad():
        z = prior.encode(torch.zeros(1, 3, 32, 32))
        assert z.shape == (1, 3, 16, 16)
        assert prior.denoise(z, 1.0).shape == z.shape
        assert prior.decode(z).shape == (1, 3, 32, 32)
    with pytest.raises(UsageError, match="unconditional"):
        prior.condition("a face")


def test_tiny_discrete_prior() -> None:
    prior = load_prior("tiny-discrete-vq", offline=True)
    assert isinstance(prior, DiscretePrior) and prior.kind == "discrete"
    assert prior.codebook_size == 12 and prior.mask_id == 12 and prior.num_steps == 12
    assert prior.token_grid((3, 16, 16)) == (8, 8) and prior.native_size == (16, 16)
    with pytest.raises(UsageError, match="native size 16x16"):
        prior.token_grid((3, 32, 32))
    assert prior.token_grid((3, 12, 14)) == (8, 8)  # smaller: the top-left of the native canvas
    assert prior.cfg_embeddings is not None and prior.cfg_embeddings.shape == (77, 32)
    ids = torch.randint(0, 13, (2, 64))  # some tokens masked
    cond = Conditioning(embeddings=torch.randn(1, 77, 32), negative=prior.cfg_embeddings[None], guidance=5.0)
    with torch.no_grad():
        log_p = prior.log_p0(ids, 3, cond)
    assert log_p.shape == (2, 12, 64)  # over the codebook (the mask class is never predicted)
    assert torch.allclose(log_p.exp().sum(dim=1), torch.ones(2, 64), atol=1e-5)
    with pytest.raises(UsageError, match=r"outside the model's 0\.\.11"):
        prior.log_p0(ids, 12, cond)
    schedule = prior.schedule()
    gamma = schedule["gamma_bar"]
    assert gamma.shape == (12,) and bool((gamma[1:] > gamma[:-1]).all()) and gamma[-1] > 0.99
    total = schedule["alpha_bar"] + prior.codebook_size * schedule["beta_bar"] + gamma
    assert torch.allclose(total, torch.ones(12), atol=1e-5)  # keep + resample uniformly + mask = 1
    # soft codes: one-hot weights decode exactly as the codebook lookup; the soft path is differentiable
    tokens = torch.randint(0, 12, (2, 64))
    with torch.no_grad():
        lookup = prior.decode_tokens(tokens)
        soft = prior.decode_soft(torch.nn.functional.one_hot(tokens, 12).float())
    assert lookup.shape == (2, 3, 16, 16) and torch.allclose(soft, lookup, atol=1e-6)
    weights = torch.softmax(torch.randn(1, 64, 12), dim=-1).requires_grad_(True)
    prior.decode_soft(weights).sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    assert prior.codebook().shape == (12, 3)


def test_kinds_before_loading(tmp_path: Path, shipped: reg.Registry) -> None:
    assert prior_kind("builtin") == "pixel" and prior_kind("tiny-adm") == "pixel"
    assert prior_kind("tiny-latent-kl") == prior_kind("sd15") == "latent"
    assert prior_kind("tiny-discrete-vq") == "discrete"
    folder = build_tiny(shipped.get("tiny-latent-vq"), tmp_path / "ldm")
    assert prior_kind(str(folder)) == "latent"
    assert prior_kind(str(tmp_path / "nowhere")) is None  # the loader reports it, after the inputs are checked
    assert not (tmp_path / "cache").exists()  # nothing downloaded, nothing built in the cache


def test_local_diffusers_unet_folder_and_pipeline_folder(tmp_path: Path, shipped: reg.Registry) -> None:
    flat = build_tiny(shipped.get("tiny-pixel"), tmp_path / "flat")  # google/ddpm-* layout
    prior = load_prior(str(flat))
    assert prior.native_size == (8, 8)
    pipeline = tmp_path / "pipe"
    build_tiny(shipped.get("tiny-pixel"), pipeline / "unet")
    (pipeline / "scheduler").mkdir()
    (pipeline / "unet" / "scheduler_config.json").rename(pipeline / "scheduler" / "scheduler_config.json")
    (pipeline / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}')
    other = load_prior(str(pipeline))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prior.denoise(x, 2.0), other.denoise(x, 2.0), atol=1e-6)


def test_local_latent_pipeline_folder_gives_a_latent_prior(tmp_path: Path, shipped: reg.Registry) -> None:
    folder = build_tiny(shipped.get("tiny-latent-vq"), tmp_path / "ldm")
    prior = load_prior(str(folder))
    assert isinstance(prior, LatentPrior) and prior.latent_scale == 1.0  # VQ folders: never the 0.18215 default
    assert files.detect_family(folder) == "latent-vq"


def test_local_builtin_model_folder(tmp_path: Path) -> None:
    from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet, UNetConfig, save_model_dir

    torch.manual_seed(0)
    save_model_dir(DenoiserUNet(UNetConfig(base_channels=8, channel_mults=(1, 2))), tmp_path / "mine")
    prior = load_prior(str(tmp_path / "mine"))
    assert isinstance(prior, BuiltinPrior)


def test_not_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="is not a model folder"):
        load_prior(str(tmp_path / "junk"))
    with pytest.raises(ModelError, match="does not exist"):
        load_prior(str(tmp_path / "nowhere"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["pixel", "adm", "latent-vq"])
def test_registry_entry_downloads_through_the_hub_then_loads(
    tmp_path: Path, shipped: reg.Registry, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    """A real-style entry (pinned files, hf source) whose repo is a tiny model served by a fake hub."""
    tiny = {"pixel": "tiny-pixel", "adm": "tiny-adm", "latent-vq": "tiny-latent-vq"}[family]
    repo = build_tiny(shipped.get(tiny), tmp_path / "repo")
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

    monkeypatch.setattr(reg.download, "HUB_DOWNLOAD", fake_hub)
    registry = reg.load_registry(tmp_path / "models.toml")
    messages: list[str] = []
    loaded = load_prior("real", registry=registry, echo=messages.append)
    assert loaded.channels == 3 and loaded.name == "real"
    assert isinstance(loaded, LatentPrior if family == "latent-vq" else Prior)
    assert sorted(calls) == files
    assert messages[0].startswith("real: licence: L")
    # second time: from the cache, no hub call, even offline
    load_prior("real", registry=registry, offline=True)
    assert sorted(calls) == files


def test_registry_name_wins_over_a_same_named_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny-adm").mkdir()  # e.g. a results folder the user happens to be next to
    monkeypatch.chdir(tmp_path)
    assert load_prior("tiny-adm").native_size == (16, 16)
    with pytest.raises(ModelError, match="is not a model folder"):
        load_prior("./tiny-adm")


def test_builtin_entry_loads_the_folder_inside_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffrestore.priors.builtin import BuiltinPrior, DenoiserUNet, UNetConfig, save_model_dir

    save_model_dir(DenoiserUNet(UNetConfig(base_channels=8, channel_mults=(1, 2))), tmp_path / "weights" / "default")
    monkeypatch.setattr(reg.schema, "PACKAGE_DIR", tmp_path)  # stands in for the installed package folder
    for name in ("builtin", "default"):
        prior = load_prior(name, offline=True)
        assert isinstance(prior, BuiltinPrior) and prior.name == "builtin"
