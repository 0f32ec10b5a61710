"""Turn a registry entry (or a local folder) into something the solvers can use.

family        -> what you get
builtin       -> ``BuiltinPrior`` (priors/builtin.py)
pixel         -> ``DiffusersPixelPrior`` over a diffusers ``UNet2DModel`` + its DDPM-style scheduler
adm           -> ``DiffusersPixelPrior`` over our ADM network (priors/adm.py) + the linear/cosine DDPM schedule
latent-kl/-vq -> ``LatentComponents``: UNet, autoencoder (AutoencoderKL / VQModel), scheduler, latent scale,
                 text encoder + tokenizer when present (for the latent solvers that follow)
discrete-vq   -> ``DiscreteComponents``: VQModel, Transformer2DModel, VQDiffusionScheduler, classifier-free
                 embeddings, text encoder + tokenizer when present (for the discrete solvers that follow)
tiny          -> built in code from the entry's config with a fixed seed, written to a temporary folder in the
                 real layout of family ``of``, and loaded by that family's loader: tests run the real code path

Everything loads from local folders only (the registry downloaded and verified the files first), so no call
here can wait on a network. The CLIP text encoder needs the optional ``transformers`` package: without it the
components carry ``text_encoder=None`` and ``encode_prompt`` says how to install it; prompt embeddings can
always be passed directly.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelError
from ..registry import LATENT_FAMILIES, ModelEntry

if TYPE_CHECKING:
    from torch import nn

#: diffusers' SD default when a VAE config has no scaling_factor; LDM VQ latents need 1.0 (diffusers #6725)
KL_DEFAULT_SCALE = 0.18215
VQ_DEFAULT_SCALE = 1.0
CFG_EMBEDDINGS = "learned_classifier_free_sampling_embeddings"


# -------------------------------------------------------------------------------------- components ----
@dataclass
class LatentComponents:
    """A latent diffusion model in parts. ``encode``/``decode`` map [-1, 1] images to diffusion latents."""

    name: str
    family: str  # "latent-kl" or "latent-vq"
    unet: nn.Module
    autoencoder: nn.Module
    scheduler: Any
    latent_scale: float
    prompt: str = ""
    resolution: int = 0
    text_encoder: nn.Module | None = None
    tokenizer: Any | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] -> latents (float32), already multiplied by ``latent_scale``."""
        out = self.autoencoder.encode(x.to(self.device, self.dtype))
        z = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents  # VQ: pre-quantisation latents
        return z.float() * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [-1, 1] (float32); differentiable (no clamping)."""
        return self.autoencoder.decode((z / self.latent_scale).to(self.dtype)).sample.float()

    def encode_prompt(self, prompt: str | None = None) -> torch.Tensor:
        """(1, L, D) text embeddings of ``prompt`` (default: the model's prompt) for the UNet's cross-attention."""
        return _encode_prompt(self.name, self.text_encoder, self.tokenizer, prompt or self.prompt, self.device)


@dataclass
class DiscreteComponents:
    """VQ-Diffusion in parts: token logits come from ``transformer``, images from ``decode_tokens``."""

    name: str
    vqvae: nn.Module
    transformer: nn.Module
    scheduler: Any
    cfg_embeddings: torch.Tensor | None
    prompt: str = ""
    resolution: int = 0
    text_encoder: nn.Module | None = None
    tokenizer: Any | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @property
    def codebook_size(self) -> int:
        return int(self.vqvae.config.num_vq_embeddings)

    @property
    def token_grid(self) -> tuple[int, int]:
        cfg = self.transformer.config
        return int(cfg.sample_size), int(cfg.sample_size)

    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, H*W) or (N, H, W) -> images in [-1, 1] (float32)."""
        h, w = self.token_grid
        n = ids.shape[0]
        channels = int(self.vqvae.config.vq_embed_dim or self.vqvae.config.latent_channels)
        codes = self.vqvae.quantize.get_codebook_entry(ids.reshape(n, h * w).to(self.device), (n, h, w, channels))
        return self.vqvae.decode(codes.to(self.dtype), force_not_quantize=True).sample.float()

    def encode_prompt(self, prompt: str | None = None) -> torch.Tensor:
        return _encode_prompt(self.name, self.text_encoder, self.tokenizer, prompt or self.prompt, self.device)


def _encode_prompt(name: str, text_encoder: Any, tokenizer: Any, prompt: str, device: torch.device) -> torch.Tensor:
    if text_encoder is None or tokenizer is None:
        raise ModelError(
            f"model '{name}' has no text encoder/tokenizer loaded, so it cannot encode a prompt",
            hint="pip install transformers (and download the model), or pass prompt embeddings directly",
        )
    tokens = tokenizer([prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device))[0].float()


# ----------------------------------------------------------------------------------- small helpers ----
def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    return dtype or torch.float32


def _transformers_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read '{path}': {exc}") from None
    return data if isinstance(data, dict) else {}


def _pretrained(cls: Any, folder: Path, *, variant: str = "", dtype: torch.dtype | None = None) -> Any:
    """``cls.from_pretrained`` on a local folder, with a one-line error instead of diffusers' traceback."""
    # low_cpu_mem_usage=False: the same path diffusers takes without `accelerate`, minus its warning per load
    kwargs: dict[str, Any] = {"torch_dtype": _dtype(dtype), "low_cpu_mem_usage": False}
    if variant:
        kwargs["variant"] = variant
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers/transformers raise OSError, ValueError, EnvironmentError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {cls.__name__} from '{folder}': {first}") from None


def _scheduler(folder: Path, fallback: str = "DDPMScheduler") -> Any:
    """The scheduler named in ``scheduler_config.json`` (any diffusers scheduler class), else ``fallback``."""
    import diffusers

    config_file = folder / "scheduler_config.json"
    name = _read_json(config_file).get("_class_name", fallback) if config_file.is_file() else fallback
    cls = getattr(diffusers, str(name), None)
    if cls is None or not str(name).endswith("Scheduler"):
        cls = getattr(diffusers, fallback)
    if not config_file.is_file():
        return cls()
    return cls.from_pretrained(str(folder))


def _sub(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).is_dir() else folder


# ------------------------------------------------------------------------------------ pixel priors ----
def load_pixel_prior(folder: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                     variant: str = "") -> Any:
    """A diffusers UNet2DModel folder (or pipeline folder with unet/ and scheduler/) as a Prior.

    Without a scheduler config the DDPM default (linear 1e-4..0.02, 1000 steps, epsilon) is assumed: that is
    what every google/ddpm-* model and most UNet2DModel checkpoints were trained with.
    """
    from diffusers import UNet2DModel

    from .diffusers_pixel import DiffusersPixelPrior

    unet = _pretrained(UNet2DModel, _sub(folder, "unet"), variant=variant, dtype=torch.float32)
    scheduler = _scheduler(_sub(folder, "scheduler"))
    return DiffusersPixelPrior(unet.to(device), scheduler, dtype=_dtype(dtype))


def _adm_file(entry: ModelEntry, folder: Path) -> Path:
    weights = [f.path for f in entry.files if f.path.endswith((".pt", ".pth", ".bin"))] or ["model.pt"]
    return folder / weights[0]


def load_prior(entry: ModelEntry, folder: Path | None, *, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> Any:
    """The Prior of a registry entry whose files are in ``folder`` (None for tiny models: built here)."""
    family = entry.loader_family
    if family not in ("builtin", "pixel", "adm"):
        raise ModelError(
            f"model '{entry.name}' is a {family} model: it serves the solvers {', '.join(entry.solvers)}, "
            "not the pixel-space ones",
            hint="pick a pixel model (see `diffrestore models list`)",
        )
    if entry.family == "tiny":
        with tempfile.TemporaryDirectory(prefix="diffrestore-tiny-", ignore_cleanup_errors=True) as tmp:
            build_tiny(entry, Path(tmp))
            return load_prior(_as_real(entry), Path(tmp), device=device, dtype=dtype)
    if folder is None:
        raise ModelError(f"model '{entry.name}' has no local files")
    if family == "builtin":
        from .builtin import load_model_dir

        prior = load_model_dir(folder, device=device, dtype=dtype)
        prior.name = entry.name
        return prior
    if family == "pixel":
        return load_pixel_prior(folder, device=device, dtype=dtype, variant=entry.variant)
    from .adm import adm_prior

    return adm_prior(_adm_file(entry, folder), entry.arch, entry.diffusion, device=device, dtype=_dtype(dtype))


def load_local_prior(folder: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """A Prior from a folder: diffrestore model folder, diffusers UNet2DModel folder or pixel pipeline folder."""
    from .builtin import is_model_dir, load_model_dir

    folder = Path(folder)
    if is_model_dir(folder):
        return load_model_dir(folder, device=device, dtype=dtype)
    family = detect_family(folder)
    if family == "pixel":
        return load_pixel_prior(folder, device=device, dtype=dtype)
    if family in ("latent-kl", "latent-vq", "discrete-vq"):
        raise ModelError(
            f"'{folder}' holds a {family} pipeline, not a pixel-space prior",
            hint="the dps/mcg/daps solvers need a pixel model (see `diffrestore models list`)",
        )
    raise ModelError(
        f"'{folder}' is not a model folder",
        hint="expected config.json + model.safetensors (diffrestore train), config.json + "
        "diffusion_pytorch_model.* (diffusers UNet2DModel) or model_index.json with unet/ and scheduler/",
    )


def detect_family(folder: Path) -> str | None:
    """Which family a local diffusers folder belongs to, from its file layout and config class names."""
    if (folder / "model_index.json").is_file():
        if (folder / "transformer").is_dir() and (folder / "vqvae").is_dir():
            return "discrete-vq"
        if (folder / "vae").is_dir():
            return "latent-kl"
        if (folder / "vqvae").is_dir():
            return "latent-vq"
        if (folder / "unet").is_dir():
            return "pixel"
        return None
    config = folder / "config.json"
    if config.is_file() and _read_json(config).get("_class_name") == "UNet2DModel":
        return "pixel"
    return None


# -------------------------------------------------------------------------------------- components ----
def load_latent_components(folder: Path, *, family: str, name: str = "", prompt: str = "",
                           latent_scale: float | None = None, resolution: int = 0, variant: str = "",
                           device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> LatentComponents:
    """UNet + autoencoder + scheduler (+ text encoder/tokenizer) from a diffusers pipeline folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel, VQModel

    device = torch.device(device)
    kl = family == "latent-kl"
    unet = _pretrained(UNet2DConditionModel if kl else UNet2DModel, folder / "unet", variant=variant, dtype=dtype)
    ae_dir = folder / ("vae" if kl else "vqvae")
    autoencoder = _pretrained(AutoencoderKL if kl else VQModel, ae_dir, variant=variant, dtype=dtype)
    if latent_scale is None:  # local folder: trust a config value for KL only (VQ configs lack it: #6725)
        factor = getattr(autoencoder.config, "scaling_factor", None)
        latent_scale = float(factor) if kl and factor else (KL_DEFAULT_SCALE if kl else VQ_DEFAULT_SCALE)
    text_encoder, tokenizer = _text_parts(folder, variant=variant, dtype=dtype) if kl else (None, None)
    for module in (unet, autoencoder, text_encoder):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    return LatentComponents(
        name=name or folder.name, family=family, unet=unet, autoencoder=autoencoder,
        scheduler=_scheduler(folder / "scheduler", fallback="DDIMScheduler"), latent_scale=float(latent_scale),
        prompt=prompt, resolution=resolution, text_encoder=text_encoder, tokenizer=tokenizer, device=device,
        dtype=_dtype(dtype),
    )


def _text_parts(folder: Path, *, variant: str, dtype: torch.dtype | None) -> tuple[Any, Any]:
    """CLIP text encoder and tokenizer when both the files and ``transformers`` are there, else None."""
    encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
    if not encoder_dir.is_dir() or not _transformers_available():
        return None, None
    from transformers import CLIPTextModel, CLIPTokenizer

    encoder = _pretrained(CLIPTextModel, encoder_dir, variant=variant, dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir)) if tokenizer_dir.is_dir() else None
    return encoder, tokenizer


def _cfg_embeddings(folder: Path, variant: str) -> torch.Tensor | None:
    """VQ-Diffusion's learned classifier-free 'empty prompt' embeddings (None when not learnable)."""
    from safetensors.torch import load_file

    sub = folder / CFG_EMBEDDINGS
    if not sub.is_dir() or not _read_json(sub / "config.json").get("learnable", False):
        return None
    names = [f"diffusion_pytorch_model.{variant}.safetensors"] if variant else []
    names.append("diffusion_pytorch_model.safetensors")
    for file_name in names:
        if (sub / file_name).is_file():
            tensors = load_file(str(sub / file_name))
            if "embeddings" not in tensors:
                raise ModelError(f"'{sub / file_name}' has no 'embeddings' tensor")
            return tensors["embeddings"].float()
    raise ModelError(f"no classifier-free embeddings weights in '{sub}'")


def load_discrete_components(folder: Path, *, name: str = "", prompt: str = "", resolution: int = 0,
                             variant: str = "", device: torch.device | str = "cpu",
                             dtype: torch.dtype | None = None) -> DiscreteComponents:
    """VQModel + Transformer2DModel + VQDiffusionScheduler (+ embeddings, text parts), each loaded on its own."""
    from diffusers import Transformer2DModel, VQDiffusionScheduler, VQModel

    device = torch.device(device)
    vqvae = _pretrained(VQModel, folder / "vqvae", variant=variant, dtype=dtype)
    transformer = _pretrained(Transformer2DModel, folder / "transformer", variant=variant, dtype=dtype)
    scheduler = VQDiffusionScheduler.from_pretrained(str(folder / "scheduler"))
    text_encoder, tokenizer = _text_parts(folder, variant=variant, dtype=dtype)
    for module in (vqvae, transformer, text_encoder):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    embeddings = _cfg_embeddings(folder, variant)
    return DiscreteComponents(
        name=name or folder.name, vqvae=vqvae, transformer=transformer, scheduler=scheduler,
        cfg_embeddings=None if embeddings is None else embeddings.to(device), prompt=prompt, resolution=resolution,
        text_encoder=text_encoder, tokenizer=tokenizer, device=device, dtype=_dtype(dtype),
    )


def load_components(entry: ModelEntry | None, folder: Path | None, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None) -> LatentComponents | DiscreteComponents:
    """Components of a latent or discrete registry entry (files in ``folder``), or of a local pipeline folder."""
    if entry is None:
        if folder is None:
            raise ModelError("no model given")
        family = detect_family(folder)
        if family in LATENT_FAMILIES:
            return load_latent_components(folder, family=family, device=device, dtype=dtype)
        if family == "discrete-vq":
            return load_discrete_components(folder, device=device, dtype=dtype)
        raise ModelError(f"'{folder}' is not a latent or discrete diffusers pipeline folder")
    family = entry.loader_family
    if family not in (*LATENT_FAMILIES, "discrete-vq"):
        raise ModelError(f"model '{entry.name}' is a {family} model: load it with resolve_prior")
    if entry.family == "tiny":
        with tempfile.TemporaryDirectory(prefix="diffrestore-tiny-", ignore_cleanup_errors=True) as tmp:
            build_tiny(entry, Path(tmp))
            return load_components(_as_real(entry), Path(tmp), device=device, dtype=dtype)
    if folder is None:
        raise ModelError(f"model '{entry.name}' has no local files")
    if family == "discrete-vq":
        return load_discrete_components(folder, name=entry.name, prompt=entry.prompt, resolution=entry.resolution,
                                        variant=entry.variant, device=device, dtype=dtype)
    return load_latent_components(folder, family=family, name=entry.name, prompt=entry.prompt,
                                  latent_scale=entry.latent_scale, resolution=entry.resolution,
                                  variant=entry.variant, device=device, dtype=dtype)


# ------------------------------------------------------------------------------------- tiny models ----
def _as_real(entry: ModelEntry) -> ModelEntry:
    """A copy of a tiny entry that the loaders treat as its target family (files named as build_tiny wrote)."""
    from dataclasses import replace

    return replace(entry, family=entry.of, of="", config={}, variant="")


def build_tiny(entry: ModelEntry, folder: Path) -> Path:
    """Write the tiny model of ``entry`` into ``folder`` in the on-disk layout of its target family.

    Seeded with ``entry.seed`` inside ``torch.random.fork_rng`` so the caller's global RNG is untouched.
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = entry.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed)
        if entry.of == "adm":
            from .adm import ADMConfig, ADMNet

            net = ADMNet(ADMConfig.from_flags(entry.arch))
            torch.save(net.state_dict(), folder / "model.pt")
        elif entry.of == "pixel":
            diffusers.UNet2DModel(**cfg["unet"]).save_pretrained(str(folder))
            diffusers.DDPMScheduler(**cfg.get("scheduler", {})).save_pretrained(str(folder))
        elif entry.of in LATENT_FAMILIES:
            kl = entry.of == "latent-kl"
            unet_cls = diffusers.UNet2DConditionModel if kl else diffusers.UNet2DModel
            unet_cls(**cfg["unet"]).save_pretrained(str(folder / "unet"))
            ae_key, ae_cls = ("vae", diffusers.AutoencoderKL) if kl else ("vqvae", diffusers.VQModel)
            ae_cls(**cfg[ae_key]).save_pretrained(str(folder / ae_key))
            diffusers.DDIMScheduler(**cfg.get("scheduler", {})).save_pretrained(str(folder / "scheduler"))
            if kl:
                _tiny_text_encoder(cfg.get("text_encoder"), folder)
            (folder / "model_index.json").write_text(json.dumps({"_class_name": "tiny", "family": entry.of}))
        elif entry.of == "discrete-vq":
            from safetensors.torch import save_file

            diffusers.VQModel(**cfg["vqvae"]).save_pretrained(str(folder / "vqvae"))
            diffusers.Transformer2DModel(**cfg["transformer"]).save_pretrained(str(folder / "transformer"))
            diffusers.VQDiffusionScheduler(**cfg.get("scheduler", {})).save_pretrained(str(folder / "scheduler"))
            emb_cfg = {"learnable": True, "hidden_size": 32, "length": 77, **cfg.get("cfg_embeddings", {})}
            sub = folder / CFG_EMBEDDINGS
            sub.mkdir()
            (sub / "config.json").write_text(json.dumps(emb_cfg))
            if emb_cfg["learnable"]:
                embeddings = torch.randn(int(emb_cfg["length"]), int(emb_cfg["hidden_size"]))
                save_file({"embeddings": embeddings}, str(sub / "diffusion_pytorch_model.safetensors"))
            _tiny_text_encoder(cfg.get("text_encoder"), folder)
            (folder / "model_index.json").write_text(json.dumps({"_class_name": "tiny", "family": entry.of}))
        else:  # pragma: no cover - the registry validates `of`
            raise ModelError(f"tiny model '{entry.name}': unknown target family {entry.of!r}")
    return folder


def _tiny_text_encoder(config: dict[str, Any] | None, folder: Path) -> None:
    """A random CLIP text encoder when transformers is installed (no tokenizer: that would be a download)."""
    if not config or not _transformers_available():
        return
    from transformers import CLIPTextConfig, CLIPTextModel

    CLIPTextModel(CLIPTextConfig(**config)).save_pretrained(str(folder / "text_encoder"))
