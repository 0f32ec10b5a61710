"""The model registry: ``models.toml`` (schema, validation), the cache folder, downloads and sha256 checks.

This module finds, fetches and verifies files; it never builds networks (that is ``priors/loaders.py``, imported
lazily by :func:`resolve_prior`). It imports neither torch nor diffusers, so the CLI can use it at start-up.

Cache: ``DIFFRESTORE_CACHE``, else ``$XDG_CACHE_HOME/diffrestore``, else ``~/.cache/diffrestore`` (never the
install folder). A model's files live in ``<cache>/models/<name>/`` with the same relative paths as in
``models.toml``; a file only ever appears there after its size and sha256 were checked (downloads go to a
``.part`` file or a staging folder first, then are renamed), so "present" means "verified".
``.diffrestore-lock.json`` next to them records the sha256 of every file and where it came from: that is what
``models verify`` re-checks for files whose sha256 is not pinned in ``models.toml`` (trust on first use; the
trust policy is documented at the top of ``models.toml``).

Offline mode (``offline=True``, ``HF_HUB_OFFLINE=1`` or ``DIFFRESTORE_OFFLINE=1``) never touches the network:
an empty cache gives a one-line :class:`DownloadError` naming ``diffrestore models download NAME``. Local
paths and the cache are always checked before any hub call, so a cached model never waits on a network.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ChecksumError, DiffrestoreError, DownloadError, ModelError, RegistryError

if TYPE_CHECKING:
    import torch

try:  # Python >= 3.11
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as _toml  # type: ignore[no-redef]

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_REGISTRY = PACKAGE_DIR / "models.toml"
SCHEMA_VERSION = 1
LOCK_NAME = ".diffrestore-lock.json"

FAMILIES = ("builtin", "pixel", "adm", "latent-kl", "latent-vq", "discrete-vq", "tiny")
#: families whose weights come from sources (everything except the shipped and the built-in-code ones)
DOWNLOADED_FAMILIES = ("pixel", "adm", "latent-kl", "latent-vq", "discrete-vq")
#: families that resolve_prior turns into a pixel-space Prior; the others give components (priors/loaders.py)
PIXEL_FAMILIES = ("builtin", "pixel", "adm")
TEXT_FAMILIES = ("latent-kl", "discrete-vq")
LATENT_FAMILIES = ("latent-kl", "latent-vq")

ADM_ARCH_KEYS = {
    "image_size": int, "num_channels": int, "num_res_blocks": int, "channel_mult": str,
    "attention_resolutions": str, "num_heads": int, "num_head_channels": int, "num_heads_upsample": int,
    "learn_sigma": bool, "class_cond": bool, "use_scale_shift_norm": bool, "resblock_updown": bool,
    "use_new_attention_order": bool, "dropout": float, "in_channels": int,
}
ADM_DIFFUSION_KEYS = {"steps": int, "noise_schedule": str}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_REV_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = ("1", "true", "yes", "on")

#: messages for the user (licence, unverified hashes, progress) go through this; the CLI prints to stderr.
Echo = Callable[[str], None]


def _stderr_echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


# ----------------------------------------------------------------------------------------------- cache ----
def cache_dir() -> Path:
    """Where downloaded weights live: DIFFRESTORE_CACHE, else XDG_CACHE_HOME/diffrestore, else ~/.cache/diffrestore."""
    env = os.environ.get("DIFFRESTORE_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "diffrestore"


def is_offline(offline: bool | None = None) -> bool:
    """An explicit ``offline`` wins; otherwise DIFFRESTORE_OFFLINE=1 or HF_HUB_OFFLINE=1 turn offline mode on."""
    if offline is not None:
        return bool(offline)
    return _env_flag("DIFFRESTORE_OFFLINE") or _env_flag("HF_HUB_OFFLINE")


def _trust_default(trust_unverified: bool | None) -> bool:
    if trust_unverified is not None:
        return bool(trust_unverified)
    return _env_flag("DIFFRESTORE_TRUST_UNVERIFIED")


# ----------------------------------------------------------------------------------------------- schema ----
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
        return self.url

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
    solvers: list[str]
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
    def downloadable(self) -> bool:
        return self.family in DOWNLOADED_FAMILIES

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


class _Checker:
    """Reads one entry's keys with precise errors ("entry 'x': key 'sources[1].revision': ...")."""

    def __init__(self, registry_path: Path, name: str, table: dict[str, Any]) -> None:
        self.registry_path = registry_path
        self.name = name
        self.table = table

    def fail(self, key: str, problem: str) -> RegistryError:
        return RegistryError(f"{self.registry_path}: entry '{self.name}': key '{key}': {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool, default: Any = None,
            table: dict[str, Any] | None = None, prefix: str = "") -> Any:
        table = self.table if table is None else table
        full = f"{prefix}{key}"
        if key not in table:
            if required:
                raise self.fail(full, "missing (required)")
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to Python; an int where a float is wanted is fine.
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            wanted = " or ".join(k.__name__ for k in kinds)
            raise self.fail(full, f"must be {wanted}, got {type(value).__name__} {value!r}")
        return value

    def string_list(self, key: str, *, required: bool) -> list[str]:
        value = self.get(key, list, required=required, default=[])
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of non-empty strings, got {value!r}")
        return list(value)

    def no_unknown(self, table: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(f"{prefix}{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


_ENTRY_KEYS = {
    "aliases", "family", "description", "licence", "licence_note", "resolution", "solvers", "tasks", "prompt",
    "verified", "notes", "download_size", "variant", "latent_scale", "arch", "diffusion", "path", "of", "seed",
    "config",
    "files", "sources",
}


def _is_local_http(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _parse_entry(registry_path: Path, name: str, table: Any) -> ModelEntry:
    if not _NAME_RE.match(name):
        raise RegistryError(
            f"{registry_path}: entry '{name}': invalid name (use lower-case letters, digits, '.', '_', '-')"
        )
    if not isinstance(table, dict):
        raise RegistryError(f"{registry_path}: entry '{name}': must be a table ([models.{name}])")
    c = _Checker(registry_path, name, table)
    c.no_unknown(table, _ENTRY_KEYS)
    family = c.get("family", str, required=True)
    if family not in FAMILIES:
        raise c.fail("family", f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
    entry = ModelEntry(
        name=name,
        family=family,
        description=c.get("description", str, required=True),
        licence=c.get("licence", str, required=True),
        resolution=c.get("resolution", int, required=True),
        solvers=c.string_list("solvers", required=True),
        tasks=c.string_list("tasks", required=True),
        verified=c.get("verified", bool, required=True),
        aliases=c.string_list("aliases", required=False),
        licence_note=c.get("licence_note", str, required=False, default=""),
        prompt=c.get("prompt", str, required=False, default=""),
        notes=c.get("notes", str, required=False, default=""),
        download_size=c.get("download_size", int, required=False, default=0),
        variant=c.get("variant", str, required=False, default=""),
        latent_scale=c.get("latent_scale", float, required=False),
        arch=c.get("arch", dict, required=False, default={}),
        diffusion=c.get("diffusion", dict, required=False, default={}),
        path=c.get("path", str, required=False, default=""),
        of=c.get("of", str, required=False, default=""),
        seed=c.get("seed", int, required=False, default=0),
        config=c.get("config", dict, required=False, default={}),
    )
    if not entry.licence.strip():
        raise c.fail("licence", "must not be empty")
    if entry.resolution < 0:
        raise c.fail("resolution", f"must be >= 0 (0 = any size), got {entry.resolution}")
    if entry.download_size < 0:
        raise c.fail("download_size", "must be >= 0")
    lf = entry.loader_family
    if family == "tiny":
        if entry.of not in DOWNLOADED_FAMILIES:
            raise c.fail("of", f"a tiny model needs of = one of {', '.join(DOWNLOADED_FAMILIES)}, got {entry.of!r}")
        if lf != "adm" and not entry.config:
            raise c.fail("config", "missing (required for tiny models: the component configs)")
    elif entry.of or entry.config:
        raise c.fail("of" if entry.of else "config", "only tiny models have this key")
    if lf in TEXT_FAMILIES and not entry.prompt.strip():
        raise c.fail("prompt", f"missing (required for {lf} models: the default text prompt)")
    if lf in LATENT_FAMILIES:
        if entry.latent_scale is None:
            raise c.fail("latent_scale", f"missing (required for {lf} models)")
        if entry.latent_scale <= 0:
            raise c.fail("latent_scale", f"must be > 0, got {entry.latent_scale}")
    elif entry.latent_scale is not None:
        raise c.fail("latent_scale", f"only latent-kl / latent-vq models have this key (family {lf})")
    if lf == "adm":
        if not entry.arch:
            raise c.fail("arch", "missing (required for adm models: the guided-diffusion flags)")
        c.no_unknown(entry.arch, set(ADM_ARCH_KEYS), prefix="arch.")
        for key, kind in ADM_ARCH_KEYS.items():
            if key in entry.arch:
                c.get(key, kind, required=True, table=entry.arch, prefix="arch.")
        for key in ("image_size", "num_channels", "num_res_blocks"):
            c.get(key, int, required=True, table=entry.arch, prefix="arch.")
        c.no_unknown(entry.diffusion, set(ADM_DIFFUSION_KEYS), prefix="diffusion.")
        for key, kind in ADM_DIFFUSION_KEYS.items():
            c.get(key, kind, required=False, table=entry.diffusion, prefix="diffusion.")
        schedule = entry.diffusion.get("noise_schedule", "linear")
        if schedule not in ("linear", "cosine"):
            raise c.fail("diffusion.noise_schedule", f"must be 'linear' or 'cosine', got {schedule!r}")
    elif entry.arch or entry.diffusion:
        raise c.fail("arch" if entry.arch else "diffusion", f"only adm models have this key (family {lf})")
    if family == "builtin":
        if not entry.path:
            raise c.fail("path", "missing (required for builtin models: folder inside the package)")
        if Path(entry.path).is_absolute() or ".." in Path(entry.path).parts:
            raise c.fail("path", f"must be relative to the package folder, got {entry.path!r}")
    elif entry.path:
        raise c.fail("path", "only builtin models have this key")

    raw_files = c.get("files", list, required=False, default=[])
    raw_sources = c.get("sources", list, required=False, default=[])
    if entry.downloadable:
        if not raw_files:
            raise c.fail("files", "missing (a downloaded model lists its files with sha256 and size)")
        if not raw_sources:
            raise c.fail("sources", "missing (a downloaded model needs at least one source)")
    elif raw_files or raw_sources:
        raise c.fail("files" if raw_files else "sources", f"{family} models are not downloaded: remove this key")

    seen: set[str] = set()
    for i, raw in enumerate(raw_files):
        prefix = f"files[{i}]."
        if not isinstance(raw, dict):
            raise c.fail(f"files[{i}]", "must be a table with path, sha256, size")
        c.no_unknown(raw, {"path", "sha256", "size"}, prefix=prefix)
        path = c.get("path", str, required=True, table=raw, prefix=prefix)
        parts = Path(path).parts
        if not path or Path(path).is_absolute() or ".." in parts or path.startswith("."):
            raise c.fail(f"{prefix}path", f"must be a plain relative path, got {path!r}")
        if path in seen:
            raise c.fail(f"{prefix}path", f"duplicate file {path!r}")
        seen.add(path)
        sha = c.get("sha256", str, required=True, table=raw, prefix=prefix)
        if sha and not _SHA_RE.match(sha):
            raise c.fail(f"{prefix}sha256", f"must be 64 lower-case hex digits or \"\" (unverified), got {sha!r}")
        size = c.get("size", int, required=True, table=raw, prefix=prefix)
        if size < 0:
            raise c.fail(f"{prefix}size", f"must be >= 0 (0 = unknown), got {size}")
        entry.files.append(FileSpec(path=path, sha256=sha, size=size))

    for i, raw in enumerate(raw_sources):
        prefix = f"sources[{i}]."
        if not isinstance(raw, dict):
            raise c.fail(f"sources[{i}]", "must be a table")
        kind = c.get("type", str, required=True, table=raw, prefix=prefix)
        note = c.get("note", str, required=False, default="", table=raw, prefix=prefix)
        if kind == "hf":
            c.no_unknown(raw, {"type", "repo", "revision", "remote", "note"}, prefix=prefix)
            repo = c.get("repo", str, required=True, table=raw, prefix=prefix)
            if not _REPO_RE.match(repo):
                raise c.fail(f"{prefix}repo", f"must look like 'owner/name', got {repo!r}")
            revision = c.get("revision", str, required=True, table=raw, prefix=prefix)
            if revision and not _REV_RE.match(revision):
                raise c.fail(
                    f"{prefix}revision",
                    f"must be a full 40-character commit hash, or \"\" if unresolved; got {revision!r}",
                )
            remote = c.get("remote", dict, required=False, default={}, table=raw, prefix=prefix)
            for local, remote_path in remote.items():
                if local not in seen:
                    raise c.fail(f"{prefix}remote", f"{local!r} is not one of this model's files")
                if not isinstance(remote_path, str) or not remote_path:
                    raise c.fail(f"{prefix}remote", f"remote path for {local!r} must be a non-empty string")
            entry.sources.append(Source(type="hf", repo=repo, revision=revision, remote=dict(remote), note=note))
        elif kind == "url":
            c.no_unknown(raw, {"type", "url", "file", "note"}, prefix=prefix)
            url = c.get("url", str, required=True, table=raw, prefix=prefix)
            scheme = urllib.parse.urlsplit(url).scheme
            if not (scheme == "https" or (scheme == "http" and _is_local_http(url))):
                raise c.fail(f"{prefix}url", f"must be an https:// URL, got {url!r}")
            target = c.get("file", str, required=True, table=raw, prefix=prefix)
            if target not in seen:
                raise c.fail(f"{prefix}file", f"{target!r} is not one of this model's files")
            entry.sources.append(Source(type="url", url=url, file=target, note=note))
        else:
            raise c.fail(f"{prefix}type", f"must be 'hf' or 'url', got {kind!r}")
    for spec in entry.files:
        if not any(s.delivers(spec.path) for s in entry.sources):
            raise c.fail("sources", f"no source delivers the file {spec.path!r}")
    return entry


def registry_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The models.toml in use: ``path``, else DIFFRESTORE_REGISTRY, else the one shipped in the package."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get("DIFFRESTORE_REGISTRY", "").strip()
    return Path(env).expanduser() if env else DEFAULT_REGISTRY


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and validate a models.toml; RegistryError names the file, the entry and the key at fault."""
    path = registry_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read model registry '{path}': {exc.strerror or exc}") from None
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RegistryError(f"{path}: key 'schema_version': must be {SCHEMA_VERSION}, got {version!r}")
    unknown = sorted(set(data) - {"schema_version", "models"})
    if unknown:
        raise RegistryError(f"{path}: key '{unknown[0]}': unknown top-level key (allowed: schema_version, models)")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{path}: key 'models': missing or empty (add [models.NAME] tables)")
    entries = {name: _parse_entry(path, name, table) for name, table in models.items()}
    owners: dict[str, str] = {}
    for entry in entries.values():
        for alias in entry.aliases:
            if not _NAME_RE.match(alias) or alias in entries or alias in owners:
                clash = "an invalid name" if not _NAME_RE.match(alias) else "already a model name or alias"
                raise RegistryError(f"{path}: entry '{entry.name}': key 'aliases': {alias!r} is {clash}")
            owners[alias] = entry.name
    return Registry(path=path, models=entries)


# ---------------------------------------------------------------------------------------- cache state ----
def model_dir(entry: ModelEntry | str) -> Path:
    """The cache folder of a downloaded model (whether or not anything is there yet)."""
    name = entry if isinstance(entry, str) else entry.name
    return cache_dir() / "models" / name


def _file_ok(directory: Path, spec: FileSpec) -> bool:
    """Cheap presence check (stat only): full hashing is `models verify`'s job."""
    target = directory / spec.path
    try:
        size = target.stat().st_size
    except OSError:
        return False
    return target.is_file() and (not spec.size or size == spec.size)


def missing_files(entry: ModelEntry) -> list[FileSpec]:
    directory = model_dir(entry)
    return [spec for spec in entry.files if not _file_ok(directory, spec)]


def cache_state(entry: ModelEntry) -> str:
    """"yes", "no", "partial" for downloaded models; "built-in" for builtin and tiny ones."""
    if not entry.downloadable:
        return "built-in"
    missing = len(missing_files(entry))
    if missing == 0:
        return "yes"
    return "no" if missing == len(entry.files) else "partial"


def read_lock(entry: ModelEntry) -> dict[str, Any]:
    try:
        data = json.loads((model_dir(entry) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_lock(entry: ModelEntry, path: str, record: dict[str, Any]) -> None:
    lock_file = model_dir(entry) / LOCK_NAME
    data = read_lock(entry)
    data.setdefault("files", {})[path] = record
    tmp = lock_file.with_name(lock_file.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, lock_file)


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def human_size(entry: ModelEntry) -> str:
    """Download size for listings: "-" when nothing is downloaded, "~" when some sizes are unknown."""
    if not entry.downloadable:
        return "-"
    total = entry.known_size
    if not total:
        return "unknown"
    return _human(total) if entry.size_is_exact else f"~{_human(total)}"


# ------------------------------------------------------------------------------------------- downloads ----
#: hub_download(repo_id, filename, *, revision, local_dir) -> path of the downloaded file. Tests replace it
#: (monkeypatch ``registry.HUB_DOWNLOAD`` or pass ``hub_download=``) with a fake hub that never touches a network.
HubDownload = Callable[..., str]


def _hf_hub_download(repo_id: str, filename: str, *, revision: str, local_dir: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, revision=revision, local_dir=local_dir)


HUB_DOWNLOAD: HubDownload = _hf_hub_download
URL_TIMEOUT_S = 30.0
URL_RETRIES = 4
_CHUNK = 1 << 20


class _ShortRead(Exception):
    """The server closed the connection before Content-Length bytes arrived: retry with a Range request."""


def _user_agent() -> str:
    from . import __version__

    return f"diffrestore/{__version__}"


def fetch_url(
    url: str,
    part: Path,
    *,
    expected_size: int = 0,
    timeout: float = URL_TIMEOUT_S,
    retries: int = URL_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    echo: Echo | None = None,
) -> Path:
    """Stream ``url`` into ``part``, resuming what is already there with a Range request; retry on failure.

    Returns ``part`` once the server says the body is complete. The caller checks size and sha256 and renames.
    A server that ignores Range (answers 200) restarts the file from zero; 416 (range beyond the end) too.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no attempt"
    for attempt in range(max(1, retries)):
        if attempt:
            sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        have = part.stat().st_size if part.exists() else 0
        if expected_size and have > expected_size:  # a stale, longer .part can only be wrong
            part.unlink()
            have = 0
        if expected_size and have == expected_size:
            return part  # complete from an earlier run; the caller hashes it
        headers = {"User-Agent": _user_agent()}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = getattr(response, "status", 200)
                append = False
                if have and status == 206:
                    content_range = response.headers.get("Content-Range", "")
                    match = re.match(r"bytes (\d+)-", content_range)
                    append = bool(match and int(match.group(1)) == have)
                length_header = response.headers.get("Content-Length")
                body_length = int(length_header) if length_header and length_header.isdigit() else None
                if have and not append and echo:
                    echo(f"  {url}: server does not resume; restarting from zero")
                written = 0
                with open(part, "ab" if append else "wb") as handle:
                    while block := response.read(_CHUNK):
                        handle.write(block)
                        written += len(block)
                if body_length is not None and written < body_length:
                    raise _ShortRead(f"connection closed after {written} of {body_length} bytes")
            return part
        except urllib.error.HTTPError as exc:
            if exc.code == 416:
                part.unlink(missing_ok=True)
                last_error = "HTTP 416 (range not satisfiable): restarting"
                continue
            if exc.code in (400, 401, 403, 404, 410):
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, _ShortRead, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last_error = f"{type(exc).__name__}: {reason}"
        if echo:
            echo(f"  {url}: {last_error} (attempt {attempt + 1}/{retries})")
    raise DownloadError(f"{url}: download failed after {retries} attempts: {last_error}")


def _check_file(path: Path, spec: FileSpec, origin: str) -> str:
    """Size and sha256 of a downloaded file against the pins; the bad file is deleted before raising."""
    size = path.stat().st_size
    if spec.size and size != spec.size:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.path} from {origin}: size {size} bytes, expected {spec.size}; the file was deleted",
        )
    digest = sha256_file(path)
    if spec.sha256 and digest != spec.sha256:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.path} from {origin}: sha256 {digest} does not match the pinned {spec.sha256}; "
            "the file was deleted",
            hint="the source changed or the transfer was corrupted: retry, or report it",
        )
    return digest


def _pins_nothing(source: Source, spec: FileSpec) -> bool:
    """True for a source whose bytes nothing pins: a url for an unhashed file, an hf repo without a commit."""
    if source.type == "url":
        return not spec.sha256
    return not source.revision and not spec.sha256


def _download_one(
    entry: ModelEntry,
    spec: FileSpec,
    source: Source,
    *,
    hub_download: HubDownload,
    echo: Echo,
    sleep: Callable[[float], None],
    timeout: float,
) -> str:
    """Fetch one file from one source into the cache (verified, atomically renamed); returns its sha256."""
    directory = model_dir(entry)
    final = directory / spec.path
    final.parent.mkdir(parents=True, exist_ok=True)
    if source.type == "url":
        part = final.with_name(final.name + ".part")
        fetch_url(source.url, part, expected_size=spec.size, timeout=timeout, sleep=sleep, echo=echo)
        digest = _check_file(part, spec, source.url)  # deletes the .part on failure: never "resumed" later
        os.replace(part, final)
        return digest
    # Hugging Face: download into a staging folder (huggingface_hub keeps its own resumable partial files
    # there), check, then rename into place, so the cache never holds unchecked bytes.
    staging = directory / ".staging"
    remote = source.remote_path(spec.path)
    revision = source.revision or "main"
    try:
        got = hub_download(source.repo, remote, revision=revision, local_dir=str(staging))
    except DiffrestoreError:
        raise
    except Exception as exc:  # huggingface_hub raises many types; the user needs the first line only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DownloadError(f"{source.repo}@{revision[:12]}/{remote}: {type(exc).__name__}: {first}") from None
    got_path = Path(got)
    if not got_path.is_file():
        raise DownloadError(f"{source.repo}@{revision[:12]}/{remote}: the hub returned no file")
    digest = _check_file(got_path, spec, f"{source.repo}@{revision[:12]}")
    if got_path.resolve().is_relative_to(staging.resolve()):
        os.replace(got_path, final)
    else:  # a hub function that returned its own cached copy: copy, never move what we do not own
        tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
        shutil.copyfile(got_path, tmp)
        os.replace(tmp, final)
    return digest


def download_model(
    entry: ModelEntry,
    *,
    offline: bool | None = None,
    trust_unverified: bool | None = None,
    force: bool = False,
    echo: Echo | None = None,
    hub_download: HubDownload | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = URL_TIMEOUT_S,
) -> Path:
    """Make every file of ``entry`` present and verified in the cache; return the model's folder.

    Cached files are used without any network access. Sources are tried in order per missing file; every file
    must match its pinned size/sha256 (ChecksumError otherwise, and the bytes are deleted). Unpinned files are
    hashed and recorded (see the trust policy in models.toml). ``force`` re-downloads everything.
    """
    echo = echo or _stderr_echo
    if entry.family == "builtin":
        return entry.builtin_dir()
    if entry.family == "tiny":
        raise ModelError(f"'{entry.name}' is a tiny test model built in code: there is nothing to download")
    directory = model_dir(entry)
    todo = list(entry.files) if force else missing_files(entry)
    if not todo:
        return directory
    if is_offline(offline):
        raise DownloadError(
            f"model '{entry.name}' is not in the cache ({directory}) and offline mode is on",
            hint=f"run `diffrestore models download {entry.name}` while online; offline mode comes from "
            "--offline, HF_HUB_OFFLINE=1 or DIFFRESTORE_OFFLINE=1",
        )
    trust = _trust_default(trust_unverified)
    hub = hub_download or HUB_DOWNLOAD
    first_download = not directory.exists() or not any(_file_ok(directory, f) for f in entry.files)
    if first_download:
        echo(f"{entry.name}: licence: {entry.licence}" + (f" - {entry.licence_note}" if entry.licence_note else ""))
    directory.mkdir(parents=True, exist_ok=True)
    recorded = {} if force else read_lock(entry).get("files", {})
    for wanted in todo:
        # Trust on first use: a sha256 recorded by an earlier download pins an unpinned file from then on
        # (until --force), so a source that later serves other bytes is caught.
        earlier = str((recorded.get(wanted.path) or {}).get("sha256", ""))
        spec = wanted if wanted.sha256 or not _SHA_RE.match(earlier) else replace(wanted, sha256=earlier)
        failures: list[str] = []
        checksum_failures: list[str] = []
        done = False
        for source in (s for s in entry.sources if s.delivers(spec.path)):
            if _pins_nothing(source, spec) and not trust:
                failures.append(
                    f"{source.describe()}: refused, nothing pins these bytes (no sha256"
                    + ("" if source.type == "url" else ", no revision") + ")"
                )
                continue
            echo(f"{entry.name}: downloading {spec.path} from {source.describe()}"
                 + (f" ({_human(spec.size)})" if spec.size else ""))
            try:
                digest = _download_one(entry, spec, source, hub_download=hub, echo=echo, sleep=sleep,
                                       timeout=timeout)
            except ChecksumError as exc:
                checksum_failures.append(str(exc))
                echo(f"  {exc}")
                continue
            except DownloadError as exc:
                failures.append(str(exc))
                echo(f"  {exc}")
                continue
            if not spec.sha256:
                echo(f"  {spec.path}: not pinned in models.toml; recorded sha256 {digest} (trust on first use)")
            _write_lock(entry, spec.path, {
                "sha256": digest,
                "size": (directory / spec.path).stat().st_size,
                "source": source.describe(),
                "pinned": bool(wanted.sha256),
                "downloaded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            })
            done = True
            break
        if done:
            continue
        if checksum_failures:
            shutil.rmtree(directory / ".staging", ignore_errors=True)
            raise ChecksumError(
                f"model '{entry.name}': {spec.path}: no source delivered the pinned bytes: "
                + "; ".join(checksum_failures + failures)
            )
        refused = any("refused" in f for f in failures)
        raise DownloadError(
            f"model '{entry.name}': cannot download {spec.path}: " + "; ".join(failures),
            hint="pass --trust-unverified (or DIFFRESTORE_TRUST_UNVERIFIED=1) to accept unpinned bytes; their "
            "sha256 is recorded" if refused else "check the network and retry; finished files are kept",
        )
    shutil.rmtree(directory / ".staging", ignore_errors=True)
    return directory


@dataclass
class VerifyResult:
    path: str
    status: str  # "ok", "mismatch", "missing", "unrecorded"
    expected: str
    actual: str


def verify_model(entry: ModelEntry) -> list[VerifyResult]:
    """Re-hash every cached file against models.toml's sha256, or the sha256 recorded on first download."""
    directory = model_dir(entry)
    recorded = read_lock(entry).get("files", {})
    results = []
    for spec in entry.files:
        target = directory / spec.path
        expected = spec.sha256 or str(recorded.get(spec.path, {}).get("sha256", ""))
        if not target.is_file():
            results.append(VerifyResult(spec.path, "missing", expected, ""))
            continue
        actual = sha256_file(target)
        if not expected:
            status = "unrecorded"
        elif actual == expected and (not spec.size or target.stat().st_size == spec.size):
            status = "ok"
        else:
            status = "mismatch"
        results.append(VerifyResult(spec.path, status, expected, actual))
    return results


def model_path(entry: ModelEntry) -> Path:
    """The folder holding a model's files; DownloadError if a downloaded model is not (fully) cached."""
    if entry.family == "builtin":
        return entry.builtin_dir()
    if entry.family == "tiny":
        raise ModelError(f"'{entry.name}' is a tiny test model built in code: it has no files")
    missing = missing_files(entry)
    if missing:
        raise DownloadError(
            f"model '{entry.name}' is not downloaded ({len(missing)} of {len(entry.files)} files missing in "
            f"{model_dir(entry)})",
            hint=f"run `diffrestore models download {entry.name}`",
        )
    return model_dir(entry)


# ------------------------------------------------------------------------------------------- resolving ----
def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith(".") or name.startswith("~") or Path(name).exists()


def ensure_local(
    name_or_dir: str,
    *,
    offline: bool | None = None,
    registry: Registry | None = None,
    trust_unverified: bool | None = None,
    echo: Echo | None = None,
) -> tuple[ModelEntry | None, Path | None]:
    """(entry, folder) for a registry name (downloading if needed) or (None, folder) for a local folder.

    A tiny model gives (entry, None): it is built in code. No network is touched for local folders, cached
    models and tiny models.
    """
    registry = registry if registry is not None else load_registry()
    plain_name = "/" not in name_or_dir and os.sep not in name_or_dir
    candidate = Path(name_or_dir).expanduser()
    # A registry name wins over a same-named folder in the working directory; write ./NAME for the folder.
    if not (plain_name and name_or_dir in registry) and candidate.is_dir():
        return None, candidate
    if name_or_dir not in registry and _looks_like_path(name_or_dir):
        raise ModelError(f"model folder '{name_or_dir}' does not exist", hint="see `diffrestore models list`")
    entry = registry.get(name_or_dir)
    if entry.family == "tiny":
        return entry, None
    return entry, download_model(entry, offline=offline, trust_unverified=trust_unverified, echo=echo)


def resolve_prior(
    name_or_dir: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    offline: bool | None = None,
    registry: Registry | None = None,
    trust_unverified: bool | None = None,
    echo: Echo | None = None,
) -> Any:
    """A pixel-space ``Prior`` from a registry name (downloaded and verified once) or a local model folder.

    Local folders: a diffrestore model folder (config.json + model.safetensors), a diffusers UNet2DModel folder
    (config.json + diffusion_pytorch_model.*; scheduler_config.json optional) or a diffusers pipeline folder
    (model_index.json + unet/ + scheduler/). Latent and discrete models give ModelError here: use
    ``priors.loaders.load_components`` for them.
    """
    from .priors import loaders  # torch and diffusers: only when a prior is really wanted

    entry, folder = ensure_local(
        name_or_dir, offline=offline, registry=registry, trust_unverified=trust_unverified, echo=echo
    )
    if entry is None and folder is not None:
        return loaders.load_local_prior(folder, device=device, dtype=dtype)
    return loaders.load_prior(entry, folder, device=device, dtype=dtype)


def resolve_components(
    name_or_dir: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    offline: bool | None = None,
    registry: Registry | None = None,
    trust_unverified: bool | None = None,
    echo: Echo | None = None,
) -> Any:
    """Latent (Stable Diffusion, LDM) or discrete (VQ-Diffusion) components for a name or a pipeline folder."""
    from .priors import loaders

    entry, folder = ensure_local(
        name_or_dir, offline=offline, registry=registry, trust_unverified=trust_unverified, echo=echo
    )
    return loaders.load_components(entry, folder, device=device, dtype=dtype)


def _display_path(entry: ModelEntry) -> str | None:
    if entry.family == "tiny":
        return None  # built in code, no folder
    return str(entry.builtin_dir() if entry.family == "builtin" else model_dir(entry))


def describe(entry: ModelEntry) -> dict[str, Any]:
    """A JSON-friendly view of an entry plus its cache state (for `models info` / `models list --json`)."""
    return {
        "name": entry.name,
        **({"aliases": entry.aliases} if entry.aliases else {}),
        "family": entry.family,
        **({"of": entry.of} if entry.of else {}),
        "description": entry.description,
        "licence": entry.licence,
        "licence_note": entry.licence_note,
        "resolution": entry.resolution,
        "solvers": entry.solvers,
        "tasks": entry.tasks,
        "prompt": entry.prompt,
        "verified": entry.verified,
        "notes": entry.notes,
        "size_bytes": entry.known_size,
        "size": human_size(entry),
        "cached": cache_state(entry),
        "path": _display_path(entry),
        "files": [{"path": f.path, "sha256": f.sha256 or None, "size": f.size or None} for f in entry.files],
        "sources": [
            {"type": s.type, **({"repo": s.repo, "revision": s.revision or None} if s.type == "hf"
                                else {"url": s.url, "file": s.file}),
             **({"note": s.note} if s.note else {})}
            for s in entry.sources
        ],
    }


__all__ = [
    "DEFAULT_REGISTRY", "FAMILIES", "HUB_DOWNLOAD", "FileSpec", "ModelEntry", "Registry", "Source",
    "VerifyResult", "cache_dir", "cache_state", "describe", "download_model", "ensure_local", "fetch_url",
    "is_offline", "load_registry", "model_dir", "model_path", "resolve_components", "resolve_prior",
    "sha256_file", "verify_model",
]
