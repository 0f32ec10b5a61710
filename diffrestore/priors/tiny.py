"""Tiny models for tests and CI: built in code from a registry entry's config with a fixed seed, written to a
folder in the real on-disk layout of their target family, then loaded by that family's loader, so tests run the
real loading code path without any download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..registry import LATENT_FAMILIES, ModelEntry
from .files import CFG_EMBEDDINGS, no_transformers_bars, transformers_available


def as_real(entry: ModelEntry) -> ModelEntry:
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
        elif entry.of == "score-sde":
            from .ncsnpp import write_tiny_checkpoint

            write_tiny_checkpoint(cfg["ncsnpp"], folder)
        elif entry.of == "edm":
            from .edm_unet import write_tiny_checkpoint as write_tiny_edm

            write_tiny_edm(cfg["edm"], folder)
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
            parts = {"unet": unet_cls.__name__, ae_key: ae_cls.__name__, "scheduler": "DDIMScheduler"}
            if kl:
                _tiny_text_encoder(cfg.get("text_encoder"), folder)
            _write_model_index(folder, parts)
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
            _write_model_index(folder, {"vqvae": "VQModel", "transformer": "Transformer2DModel",
                                        "scheduler": "VQDiffusionScheduler"})
        else:  # pragma: no cover - the registry validates `of`
            raise ModelError(f"tiny model '{entry.name}': unknown target family {entry.of!r}")
    return folder


def _write_model_index(folder: Path, parts: dict[str, str]) -> None:
    """model_index.json as diffusers writes it: each component -> [library, class] (text parts when written)."""
    index: dict[str, Any] = {"_class_name": "DiffusionPipeline"}
    index.update({name: ["diffusers", cls] for name, cls in parts.items()})
    if (folder / "text_encoder").is_dir():
        index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"])
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def _tiny_text_encoder(config: dict[str, Any] | None, folder: Path) -> None:
    """A random CLIP text encoder and a tiny CLIP tokenizer when transformers is installed (nothing otherwise:
    the model then says which extra a prompt needs)."""
    if not config or not transformers_available():
        return
    from transformers import CLIPTextConfig, CLIPTextModel

    with no_transformers_bars():
        CLIPTextModel(CLIPTextConfig(**config)).save_pretrained(str(folder / "text_encoder"))
    _tiny_tokenizer(folder / "tokenizer")


def _tiny_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer over single characters (no merges): the real tokenizer class and file layout, built
    offline (a real vocabulary is a download). Characters outside it become the unknown token."""
    import string
    import tempfile

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="diffrestore-tokenizer-") as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n", encoding="utf-8")
        CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77).save_pretrained(str(folder))
