"""Reading diffusers model folders: configs, ``from_pretrained`` with one-line errors, schedulers, the text
encoder, VQ-Diffusion's learned classifier-free embeddings, and which family a folder holds.

Everything loads from local folders only (the registry downloaded and verified the files first), so no call here
can wait on a network. The CLIP text encoder needs the optional ``transformers`` package (``pip install
'diffrestore[text]'``): without it text parts load as None and ``encode_prompt`` says which extra to install.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError

if TYPE_CHECKING:
    import torch

    from .base import Conditioning

CFG_EMBEDDINGS = "learned_classifier_free_sampling_embeddings"
TEXT_EXTRA_HINT = "pip install 'diffrestore[text]' (the transformers package), or pass prompt embeddings directly"


def transformers_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


#: The fix for a model folder file that is missing or broken.
RESTORE_HINT = "put back the file saved with the model: re-download it, or re-save the model"
#: The fix for weights that do not fit their config.
MISMATCH_HINT = "use the config.json saved together with these weights, or re-download the model"

_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def read_json(path: Path) -> dict[str, Any]:
    """A model folder's JSON config as a dict; else a one-line ModelError naming the folder, the file and the fix
    (missing, unreadable, not JSON, or JSON that is not an object, e.g. a list)."""
    where = f"model folder '{path.parent}'"
    if not path.is_file():
        raise ModelError(f"{where} has no {path.name}", hint=RESTORE_HINT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{where}: cannot read {path.name}: {exc.strerror or exc}",
                         hint="check its permissions") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError; RecursionError: [[[[...
        detail = " ".join(str(exc).split())[:160]
        raise ModelError(f"{where}: {path.name} is not valid JSON ({detail})", hint=RESTORE_HINT) from None
    if not isinstance(data, dict):
        kind = _JSON_TYPES.get(type(data), "null")
        raise ModelError(f"{where}: {path.name} holds {kind}, not a JSON object of settings", hint=RESTORE_HINT)
    return data


def _dims(shape: Any) -> str:
    return "x".join(str(int(n)) for n in shape) or "a scalar"


def describe_mismatch(
    shapes: list[tuple[str, Any, Any]], missing: list[str], unexpected: list[str]
) -> str:
    """One clause per kind of difference between a file's tensors and a config's network, with the first example
    of each (a full list of a UNet's tensors is hundreds of lines). ``shapes``: (name, in the file, for config)."""
    parts = []
    if shapes:
        name, stored, wanted = shapes[0]
        parts.append(f"{len(shapes)} tensor(s) differ in shape (first: '{name}' is {_dims(stored)} in the weights, "
                     f"{_dims(wanted)} for the config)")
    if missing:
        parts.append(f"{len(missing)} tensor(s) the config needs are not in the weights (first: '{missing[0]}')")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in the weights are unknown to the config (first: '{unexpected[0]}')")
    return "; ".join(parts)


_SIZE_MISMATCH = re.compile(
    r"size mismatch for ([^:\s]+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)
_KEY_LIST = re.compile(r"(Missing|Unexpected) key\(s\) in state_dict: ((?:\"[^\"]*\"(?:, )?)+)")


def _state_dict_mismatch(text: str) -> str | None:
    """torch's ``load_state_dict`` error (hundreds of lines, the first of which says nothing) as one clause."""
    shapes = [(name, stored.split(","), wanted.split(",")) for name, stored, wanted in _SIZE_MISMATCH.findall(text)]
    keys: dict[str, list[str]] = {"Missing": [], "Unexpected": []}
    for kind, names in _KEY_LIST.findall(text):
        keys[kind] += re.findall(r'"([^"]*)"', names)
    if not (shapes or keys["Missing"] or keys["Unexpected"]):
        return None
    return describe_mismatch(shapes, keys["Missing"], keys["Unexpected"])


@contextlib.contextmanager
def _library_logs_quiet() -> Iterator[None]:
    """diffusers and transformers log multi-line warnings while loading ("Some weights ... newly initialized");
    what matters in them becomes our own one-line error, so they stay quiet meanwhile."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def pretrained(cls: Any, folder: Path, *, variant: str = "", dtype: torch.dtype | None = None) -> Any:
    """``cls.from_pretrained`` on a local folder, with one-line errors naming the folder, the file and the fix
    instead of diffusers' traceback; weights that leave part of the network uninitialised are refused (diffusers
    would fill the gap with random numbers and only log a warning)."""
    read_json(folder / "config.json")  # missing, broken or not an object: said precisely, before diffusers tries
    # low_cpu_mem_usage=False: the same path diffusers takes without `accelerate`, minus its warning per load
    kwargs: dict[str, Any] = {"torch_dtype": dtype or _float32(), "low_cpu_mem_usage": False}
    if variant:
        kwargs["variant"] = variant
    try:
        with _library_logs_quiet():
            model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True, **kwargs)
    except Exception as exc:  # diffusers/transformers raise OSError, ValueError, RuntimeError, EnvironmentError, ...
        text = str(exc).strip()
        mismatch = _state_dict_mismatch(text)
        if mismatch:
            raise ModelError(f"model folder '{folder}': the weights do not match config.json: {mismatch}",
                             hint=MISMATCH_HINT) from None
        first = " ".join(text.splitlines()[0].split()) if text else type(exc).__name__
        raise ModelError(f"cannot load {cls.__name__} from model folder '{folder}': {first}",
                         hint=RESTORE_HINT) from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ModelError(f"model folder '{folder}': the weights do not match config.json: "
                         f"{describe_mismatch([], missing, [])}", hint=MISMATCH_HINT)
    return model


def scheduler_from(folder: Path, fallback: str = "DDPMScheduler") -> Any:
    """The scheduler named in ``scheduler_config.json`` (any diffusers scheduler class), else ``fallback``.

    Built with ``from_config`` from the file we read and checked ourselves, so a broken file is a one-line
    ModelError and nothing ever looks for the folder on the network."""
    import diffusers

    config_file = folder / "scheduler_config.json"
    if not config_file.is_file():
        return getattr(diffusers, fallback)()
    config = read_json(config_file)
    name = str(config.get("_class_name", fallback))
    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        cls = getattr(diffusers, fallback)
    try:
        with _library_logs_quiet():
            return cls.from_config(config)
    except Exception as exc:  # a scheduler rejects bad values with ValueError, TypeError, NotImplementedError...
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelError(f"model folder '{folder}': {config_file.name} does not describe a {cls.__name__}: "
                         f"{detail}", hint=RESTORE_HINT) from None


def subfolder(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).is_dir() else folder


@contextlib.contextmanager
def no_transformers_bars() -> Iterator[None]:
    """transformers' own "Loading weights" / "Writing model shards" progress bars off for the block: they would
    land between the run's lines on stderr (and break one-line errors)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def text_parts(folder: Path, *, variant: str, dtype: torch.dtype | None) -> tuple[Any, Any]:
    """CLIP text encoder and tokenizer when both the files and ``transformers`` are there, else None."""
    encoder_dir, tokenizer_dir = folder / "text_encoder", folder / "tokenizer"
    if not encoder_dir.is_dir() or not transformers_available():
        return None, None
    from transformers import CLIPTextModel, CLIPTokenizer

    with no_transformers_bars():
        encoder = pretrained(CLIPTextModel, encoder_dir, variant=variant, dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir)) if tokenizer_dir.is_dir() else None
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


def text_conditioning(prior: Any, prompt: str | None, negative_prompt: str | None, guidance: float, *,
                      normalise: bool = False, learned_negative: torch.Tensor | None = None) -> Conditioning:
    """A text-conditioned prior's ``Conditioning`` (its ``name``, ``conditional``, ``text_encoder``, ``tokenizer``,
    default ``prompt`` and ``device``): the prompt's embeddings, and with guidance the negative prompt's (or,
    when none is given, ``learned_negative``: VQ-Diffusion's learned classifier-free embeddings). An
    unconditional prior takes none of them: UsageError."""
    from ..errors import UsageError
    from .base import Conditioning

    if not prior.conditional:
        if prompt or negative_prompt or guidance != 1.0:
            raise UsageError(f"model '{prior.name}' is unconditional: it takes no prompt or guidance")
        return Conditioning()

    def encode(text: str) -> torch.Tensor:
        return encode_prompt(prior.name, prior.text_encoder, prior.tokenizer, text, prior.device, normalise=normalise)

    embeddings = encode(prior.prompt if prompt is None else prompt)
    negative = None
    if guidance != 1.0:
        use_learned = negative_prompt is None and learned_negative is not None
        negative = learned_negative[None] if use_learned else encode(negative_prompt or "")
    return Conditioning(embeddings=embeddings, negative=negative, guidance=float(guidance))


def pipeline_parts(folder: Path) -> set[str]:
    """The components of a pipeline folder: the sub-folders there, plus those its model_index.json declares (a
    declared part whose folder is missing still tells the family, so the loader can say what is missing)."""
    index = read_json(folder / "model_index.json")
    declared = {key for key, value in index.items()
                if not key.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None}
    return declared | {path.name for path in folder.iterdir() if path.is_dir()}


def require_parts(folder: Path, parts: tuple[str, ...]) -> None:
    """ModelError naming the first component folder of a pipeline that is not there."""
    for part in parts:
        if not (folder / part).is_dir():
            raise ModelError(f"model folder '{folder}' has no {part}/ folder, which this kind of model needs",
                             hint=RESTORE_HINT)


def detect_family(folder: Path) -> str | None:
    """Which family a local diffusers folder belongs to, from its components and config class names."""
    if (folder / "model_index.json").is_file():
        parts = pipeline_parts(folder)
        if "transformer" in parts and "vqvae" in parts:
            return "discrete-vq"
        if "vae" in parts:
            return "latent-kl"
        if "vqvae" in parts:
            return "latent-vq"
        if "unet" in parts:
            return "pixel"
        return None
    config = folder / "config.json"
    if config.is_file() and read_json(config).get("_class_name") == "UNet2DModel":
        return "pixel"
    return None
