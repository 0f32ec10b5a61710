"""Reading diffusers model folders: configs, ``from_pretrained`` with one-line errors, schedulers, the text
encoder, VQ-Diffusion's learned classifier-free embeddings, and which family a folder holds.

Everything loads from local folders only (the registry downloaded and verified the files first), so no call here
can wait on a network. The CLIP text encoder needs the optional ``transformers`` package (``pip install
'diffrestore[text]'``): without it text parts load as None and ``encode_prompt`` says which extra to install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:
    import torch

CFG_EMBEDDINGS = "learned_classifier_free_sampling_embeddings"
TEXT_EXTRA_HINT = "pip install 'diffrestore[text]' (the transformers package), or pass prompt embeddings directly"


def transformers_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read '{path}': {exc}") from None
    return data if isinstance(data, dict) else {}


def pretrained(cls: Any, folder: Path, *, variant: str = "", dtype: torch.dtype | None = None) -> Any:
    """``cls.from_pretrained`` on a local folder, with a one-line error instead of diffusers' traceback."""
    # low_cpu_mem_usage=False: the same path diffusers takes without `accelerate`, minus its warning per load
    kwargs: dict[str, Any] = {"torch_dtype": dtype or _float32(), "low_cpu_mem_usage": False}
    if variant:
        kwargs["variant"] = variant
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers/transformers raise OSError, ValueError, EnvironmentError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {cls.__name__} from '{folder}': {first}") from None


def scheduler_from(folder: Path, fallback: str = "DDPMScheduler") -> Any:
    """The scheduler named in ``scheduler_config.json`` (any diffusers scheduler class), else ``fallback``."""
    import diffusers

    config_file = folder / "scheduler_config.json"
    name = read_json(config_file).get("_class_name", fallback) if config_file.is_file() else fallback
    cls = getattr(diffusers, str(name), None)
    if cls is None or not str(name).endswith("Scheduler"):
        cls = getattr(diffusers, fallback)
    if not config_file.is_file():
        return cls()
    return cls.from_pretrained(str(folder))


def subfolder(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).is_dir() else folder


def text_parts(folder: Path, *, variant: str, dtype: torch.dtype | None) -> tuple[Any, Any]:
    """CLIP text encoder and tokenizer when both the files and ``transformers`` are there, else None."""
    encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
    if not encoder_dir.is_dir() or not transformers_available():
        return None, None
    from transformers import CLIPTextModel, CLIPTokenizer

    encoder = pretrained(CLIPTextModel, encoder_dir, variant=variant, dtype=dtype)
    tokenizer = CLIPTokenizer.frompretrained(str(tokenizer_dir)) if tokenizer_dir.is_dir() else None
    return encoder, tokenizer


def cfg_embeddings(folder: Path, variant: str) -> torch.Tensor | None:
    """VQ-Diffusion's learned classifier-free 'empty prompt' embeddings (None when not learnable)."""
    from safetensors.torch import load_file

    sub = folder / CFG_EMBEDDINGS
    if not sub.is_dir() or not read_json(sub / "config.json").get("learnable", False):
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


def _float32() -> torch.dtype:
    import torch

    return torch.float32


def encode_prompt(name: str, text_encoder: Any, tokenizer: Any, prompt: str, device: Any, *,
                  normalise: bool = False) -> torch.Tensor:
    """(1, L, D) float32 CLIP embeddings of ``prompt`` (the last hidden state; ``normalise`` divides each token's
    vector by its norm, as VQ-Diffusion was trained). ModelError naming the extra when the encoder is missing."""
    import torch

    if text_encoder is None or tokenizer is None:
        raise ModelError(f"model '{name}' has no text encoder/tokenizer loaded, so it cannot encode a prompt",
                         hint=TEXT_EXTRA_HINT)
    tokens = tokenizer([prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    with torch.no_grad():
        embeddings = text_encoder(tokens.input_ids.to(device))[0].float()
    return embeddings / embeddings.norm(dim=-1, keepdim=True) if normalise else embeddings


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
    if config.is_file() and read_json(config).get("_class_name") == "UNet2DModel":
        return "pixel"
    return None
