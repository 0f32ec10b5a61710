"""Registry family (or local folder layout) -> a prior of the right kind.

family        kind      what you get
builtin       pixel     ``BuiltinPrior`` (priors/builtin.py)
pixel         pixel     ``DiffusersPixelPrior`` over a diffusers ``UNet2DModel`` + its DDPM-style scheduler
adm           pixel     ``DiffusersPixelPrior`` over our ADM network (priors/adm.py) + the linear/cosine schedule
score-sde     pixel     ``NCSNppPrior``: a score_sde VE NCSN++ checkpoint (priors/ncsnpp.py), EMA weights
edm           pixel     ``EDMPrior``: an EDM-preconditioned DhariwalUNet state dict (priors/edm_unet.py), EMA weights
latent-kl     latent    ``DiffusersLatentPrior``: UNet2DConditionModel + AutoencoderKL + scheduler + CLIP text parts
latent-vq     latent    ``DiffusersLatentPrior``: UNet2DModel + VQModel (latent scale 1.0) + the model's own schedule
discrete-vq   discrete  ``VQDiffusionPrior``: VQModel + Transformer2DModel + VQDiffusionScheduler + CFG embeddings
tiny          (of)      built in code (priors/tiny.py) and loaded by the loader of its target family ``of``

Everything loads from local folders (the registry downloaded and verified the files first), so nothing here can
wait on a network.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..registry import LATENT_FAMILIES, ModelEntry
from . import files

#: diffusers' SD default when a VAE config has no scaling_factor; LDM VQ latents need 1.0 (diffusers #6725)
KL_DEFAULT_SCALE = 0.18215
VQ_DEFAULT_SCALE = 1.0


def load_pixel_prior(folder: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                     variant: str = "") -> Any:
    """A diffusers UNet2DModel folder (or pipeline folder with unet/ and scheduler/) as a pixel prior.

    Without a scheduler config the DDPM default (linear 1e-4..0.02, 1000 steps, epsilon) is assumed: that is
    what every google/ddpm-* model and most UNet2DModel checkpoints were trained with.
    """
    from diffusers import UNet2DModel

    from .diffusers_pixel import DiffusersPixelPrior

    unet = files.pretrained(UNet2DModel, files.subfolder(folder, "unet"), variant=variant, dtype=torch.float32)
    scheduler = files.scheduler_from(files.subfolder(folder, "scheduler"))
    return DiffusersPixelPrior(unet.to(device), scheduler, dtype=dtype or torch.float32)


def load_latent_prior(folder: Path, *, family: str, name: str = "", prompt: str = "",
                      latent_scale: float | None = None, resolution: int = 0, variant: str = "",
                      device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """UNet + autoencoder + scheduler (+ text encoder and tokenizer) from a diffusers pipeline folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel, VQModel

    from .latent import DiffusersLatentPrior

    kl = family == "latent-kl"
    files.require_parts(folder, ("unet", "vae" if kl else "vqvae", "scheduler"))
    # the UNet class as its config names it: SD's is text-conditioned, LDM's and small unconditional KL models' not
    unet_class = files.read_json(folder / "unet" / "config.json").get("_class_name")
    conditional = unet_class == "UNet2DConditionModel" or (unet_class is None and kl)
    unet = files.pretrained(UNet2DConditionModel if conditional else UNet2DModel, folder / "unet", variant=variant,
                            dtype=dtype)
    autoencoder = files.pretrained(AutoencoderKL if kl else VQModel, folder / ("vae" if kl else "vqvae"),
                                   variant=variant, dtype=dtype)
    if latent_scale is None:  # local folder: trust a config value for KL only (VQ configs lack it: #6725)
        factor = getattr(autoencoder.config, "scaling_factor", None)
        latent_scale = float(factor) if kl and factor else (KL_DEFAULT_SCALE if kl else VQ_DEFAULT_SCALE)
    text_encoder, tokenizer = files.text_parts(folder, variant=variant, dtype=dtype) if conditional else (None, None)
    for module in (unet, autoencoder, text_encoder):
        if module is not None:
            module.to(device)
    return DiffusersLatentPrior(
        unet, autoencoder, files.scheduler_from(folder / "scheduler", fallback="DDIMScheduler"),
        latent_scale=latent_scale, name=name or folder.name, prompt=prompt, resolution=resolution,
        text_encoder=text_encoder, tokenizer=tokenizer, dtype=dtype,
    )


def load_discrete_prior(folder: Path, *, name: str = "", prompt: str = "", variant: str = "",
                        device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """VQModel + Transformer2DModel + VQDiffusionScheduler (+ CFG embeddings, text parts), each loaded on its own
    (the pipeline class would need the learned-embeddings class, which diffusers no longer exports)."""
    from diffusers import Transformer2DModel, VQModel

    from .discrete import VQDiffusionPrior

    files.require_parts(folder, ("vqvae", "transformer", "scheduler"))
    vqvae = files.pretrained(VQModel, folder / "vqvae", variant=variant, dtype=dtype)
    transformer = files.pretrained(Transformer2DModel, folder / "transformer", variant=variant, dtype=dtype)
    scheduler = files.scheduler_from(folder / "scheduler", fallback="VQDiffusionScheduler")
    text_encoder, tokenizer = files.text_parts(folder, variant=variant, dtype=dtype)
    for module in (vqvae, transformer, text_encoder):
        if module is not None:
            module.to(device)
    return VQDiffusionPrior(
        vqvae, transformer, scheduler, cfg_embeddings=files.cfg_embeddings(folder, variant), name=name or folder.name,
        prompt=prompt, text_encoder=text_encoder, tokenizer=tokenizer, dtype=dtype,
    )


def _adm_file(entry: ModelEntry, folder: Path) -> Path:
    weights = [f.path for f in entry.files if f.path.endswith((".pt", ".pth", ".bin"))] or ["model.pt"]
    return folder / weights[0]


def _architecture(entry: ModelEntry, folder: Path, config_file: str, known: dict[str, Any], config_class: Any, *,
                  what: str, fields: str) -> Any:
    """A network's architecture: the folder's ``config_file`` (tiny models write one), else the config its
    architecture module records for this registry entry (``known``)."""
    if (folder / config_file).is_file():
        return config_class.from_dict(files.read_json(folder / config_file))
    if entry.name in known:
        return known[entry.name]
    raise ModelError(f"{what} model '{entry.name}': no architecture known for it",
                     hint=f"put {config_file} ({fields}) next to the weights")


def _score_sde_config(entry: ModelEntry, folder: Path) -> Any:
    from .ncsnpp import ENTRY_CONFIGS, NCSNPP_CONFIG_FILE, NCSNppConfig

    return _architecture(entry, folder, NCSNPP_CONFIG_FILE, ENTRY_CONFIGS, NCSNppConfig, what="score-SDE (NCSN++)",
                         fields="score_sde config.model/config.data fields")


def _edm_config(entry: ModelEntry, folder: Path) -> Any:
    from .edm_unet import EDM_CONFIG_FILE, ENTRY_CONFIGS, EDMUNetConfig

    return _architecture(entry, folder, EDM_CONFIG_FILE, ENTRY_CONFIGS, EDMUNetConfig, what="EDM (DhariwalUNet)",
                         fields="the network's constructor arguments")


def load_entry(entry: ModelEntry, folder: Path | None, *, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> Any:
    """The prior of a registry entry whose files are in ``folder`` (None for tiny models: built here)."""
    if entry.family == "tiny":
        from .tiny import as_real, build_tiny

        with tempfile.TemporaryDirectory(prefix="diffrestore-tiny-", ignore_cleanup_errors=True) as tmp:
            build_tiny(entry, Path(tmp))
            prior = load_entry(as_real(entry), Path(tmp), device=device, dtype=dtype)
        prior.name = entry.name
        return prior
    if folder is None:
        raise ModelError(f"model '{entry.name}' has no local files")
    family = entry.loader_family
    if family == "builtin":
        from .builtin import load_model_dir

        prior = load_model_dir(folder, device=device, dtype=dtype)
    elif family == "pixel":
        prior = load_pixel_prior(folder, device=device, dtype=dtype, variant=entry.variant)
    elif family == "adm":
        from .adm import adm_prior

        prior = adm_prior(_adm_file(entry, folder), entry.arch, entry.diffusion, device=device,
                          dtype=dtype or torch.float32)
    elif family == "score-sde":
        from .ncsnpp import ncsnpp_prior

        prior = ncsnpp_prior(_adm_file(entry, folder), _score_sde_config(entry, folder), device=device,
                             dtype=dtype or torch.float32, name=entry.name)
    elif family == "edm":
        from .edm_unet import edm_prior

        prior = edm_prior(_adm_file(entry, folder), _edm_config(entry, folder), device=device,
                          dtype=dtype or torch.float32, name=entry.name)
    elif family in LATENT_FAMILIES:
        prior = load_latent_prior(folder, family=family, name=entry.name, prompt=entry.prompt,
                                  latent_scale=entry.latent_scale, resolution=entry.resolution,
                                  variant=entry.variant, device=device, dtype=dtype)
    else:
        prior = load_discrete_prior(folder, name=entry.name, prompt=entry.prompt, variant=entry.variant,
                                    device=device, dtype=dtype)
    prior.name = entry.name
    return prior


def load_folder(folder: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """The prior in a local folder: a diffrestore model folder (``diffrestore train``), a diffusers UNet2DModel
    folder, or a diffusers pipeline folder (``model_index.json``: pixel, latent or discrete)."""
    from .builtin import is_model_dir, load_model_dir

    folder = Path(folder)
    if is_model_dir(folder):
        return load_model_dir(folder, device=device, dtype=dtype)
    family = files.detect_family(folder)
    if family == "pixel":
        return load_pixel_prior(folder, device=device, dtype=dtype)
    if family in LATENT_FAMILIES:
        return load_latent_prior(folder, family=family, device=device, dtype=dtype)
    if family == "discrete-vq":
        return load_discrete_prior(folder, device=device, dtype=dtype)
    raise ModelError(
        f"'{folder}' is not a model folder",
        hint="expected config.json + model.safetensors (diffrestore train), config.json + "
        "diffusion_pytorch_model.* (diffusers UNet2DModel) or a diffusers pipeline folder with model_index.json",
    )
