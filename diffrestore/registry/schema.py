"""The data model of ``models.toml``: families, prior kinds and the validated entry types.

Plain dataclasses with no I/O (parsing and validation are in :mod:`.parse`), so any module may use them without
pulling in the cache or the network code.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

#: the ``diffrestore`` package folder: builtin models and the shipped models.toml live there
PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCHEMA_VERSION = 1
#: a pinned sha256 in models.toml and in the cache lock file
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
#: query parameters that carry a secret: access tokens, API keys, signed-URL signatures (S3, GCS, Azure SAS)
_SECRET_PARAM_RE = re.compile(r"([?&;](?:[^=&;#]*(?:token|key|sig|secret|pass|auth|credential)[^=&;#]*)=)[^&;#]*",
                              re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` safe to print: a password or token in the user part, and secret query values, become ``***``.

    Used for every URL shown (``models info`` / ``list``, progress, errors, the lock file's source). Plain
    text rules, so even a URL that does not parse is redacted.
    """
    return _SECRET_PARAM_RE.sub(r"\1***", _USERINFO_RE.sub(r"\1***@", url))

FAMILIES = ("builtin", "pixel", "adm", "score-sde", "edm", "latent-kl", "latent-vq", "discrete-vq", "tiny", "metric",
            "operator")
#: prior families whose weights come from sources (everything except the shipped and the built-in-code ones)
DOWNLOADED_FAMILIES = ("pixel", "adm", "score-sde", "edm", "latent-kl", "latent-vq", "discrete-vq")
#: weights of metric networks (LPIPS, FID: diffrestore/metrics/): downloaded like a prior's, but no prior and
#: never a tiny model's target; their kind "metric" fits no --method
METRIC_FAMILIES = ("metric",)
#: weights of a learned measurement operator (bkse's blur: diffrestore/operators/bkse.py), read by the task that
#: uses it (deblur --blur bkse): downloaded like a prior's, but no prior; their kind "operator" fits no --method
OPERATOR_FAMILIES = ("operator",)
#: families whose loader gives a pixel-space Prior; the others give components (priors/loaders.py)
PIXEL_FAMILIES = ("builtin", "pixel", "adm", "score-sde", "edm")
TEXT_FAMILIES = ("latent-kl", "discrete-vq")
LATENT_FAMILIES = ("latent-kl", "latent-vq")

#: the prior kind of each family: it decides which --method can use a model (see diffrestore/methods.py).
#: "tiny" is absent on purpose: a tiny model has the kind of the family it imitates (ModelEntry.kind).
FAMILY_KINDS = {
    "builtin": "pixel", "pixel": "pixel", "adm": "pixel", "score-sde": "pixel", "edm": "pixel",
    "latent-kl": "latent", "latent-vq": "latent",
    "discrete-vq": "discrete",
    "metric": "metric",
    "operator": "operator",
}

ADM_ARCH_KEYS = {
    "image_size": int, "num_channels": int, "num_res_blocks": int, "channel_mult": str,
    "attention_resolutions": str, "num_heads": int, "num_head_channels": int, "num_heads_upsample": int,
    "learn_sigma": bool, "class_cond": bool, "use_scale_shift_norm": bool, "resblock_updown": bool,
    "use_new_attention_order": bool, "dropout": float, "in_channels": int,
}
ADM_DIFFUSION_KEYS = {"steps": int, "noise_schedule": str}


@dataclass(frozen=True)
class FileSpec:
    """One file of a model, at ``path`` inside the model's cache folder. Empty sha256 / size 0 = not pinned."""

    path: str
    sha256: str = ""
    size: int = 0

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)


@dataclass(frozen=True)
class Source:
    """Where files come from: ``type`` "hf" (repo, revision, remote path map) or "url" (url, one file)."""

    type: str
    repo: str = ""
    revision: str = ""
    remote: dict[str, str] = field(default_factory=dict)
    url: str = ""
    file: str = ""
    note: str = ""

    def describe(self) -> str:
        if self.type == "hf":
            return f"hf://{self.repo}@{self.revision or 'UNRESOLVED(main)'}"
        return redact_url(self.url)

    def delivers(self, path: str) -> bool:
        return self.type == "hf" or self.file == path

    def remote_path(self, path: str) -> str:
        return self.remote.get(path, path)


@dataclass
class ModelEntry:
    """One ``[models.NAME]`` table, validated."""

    name: str
    family: str
    description: str
    licence: str
    resolution: int
    tasks: list[str]
    verified: bool
    aliases: list[str] = field(default_factory=list)
    licence_note: str = ""
    prompt: str = ""
    notes: str = ""
    download_size: int = 0
    variant: str = ""
    latent_scale: float | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    diffusion: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    of: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    files: list[FileSpec] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def loader_family(self) -> str:
        """The family whose loader builds this model (a tiny model uses the loader of the family it imitates)."""
        return self.of if self.family == "tiny" else self.family

    @property
    def kind(self) -> str:
        """"pixel", "latent" or "discrete": what the network works on, hence which methods can use it ("metric"
        for the weights of a metric network, "operator" for those of a learned operator: no method uses either)."""
        # Derived, never written in models.toml: hand-kept method lists went stale (they named methods that
        # do not exist). The parser guarantees that loader_family is a key of FAMILY_KINDS.
        return FAMILY_KINDS[self.loader_family]

    @property
    def downloadable(self) -> bool:
        return self.family in DOWNLOADED_FAMILIES or self.family in METRIC_FAMILIES or self.family in OPERATOR_FAMILIES

    @property
    def known_size(self) -> int:
        """Bytes to download: the sum of pinned sizes, or ``download_size`` when that is larger (sizes unknown)."""
        return max(sum(f.size for f in self.files), self.download_size)

    @property
    def size_is_exact(self) -> bool:
        return bool(self.files) and all(f.size for f in self.files)

    def builtin_dir(self) -> Path:
        return PACKAGE_DIR / self.path


@dataclass
class Registry:
    """All entries of one models.toml, in file order."""

    path: Path
    models: dict[str, ModelEntry]

    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str) -> ModelEntry:
        entry = self.models.get(name) or self._by_alias().get(name)
        if entry is not None:
            return entry
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelError(
            f"unknown model '{name}' (not in {self.path} and not a folder)",
            hint=f"{hint}see `diffrestore models list`",
        )

    def _by_alias(self) -> dict[str, ModelEntry]:
        return {alias: entry for entry in self.models.values() for alias in entry.aliases}

    def __contains__(self, name: object) -> bool:
        return name in self.models or name in self._by_alias()

    def __iter__(self):
        return iter(self.models.values())
