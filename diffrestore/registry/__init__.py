"""The model registry: ``models.toml`` (schema, validation), the cache folder, downloads and sha256 checks.

This package finds, fetches and verifies files; it never builds networks and imports nothing from
``diffrestore.priors`` (that package builds priors from what :func:`ensure_local` returns). It imports neither
torch nor diffusers, so the CLI can use it at start-up.

Modules: :mod:`.schema` (entry types, families, prior kinds), :mod:`.parse` (reading and validating
models.toml), :mod:`.cache` (cache folder, presence, lock file, hashing), :mod:`.fetch` (HTTP with resume and
a size cap), :mod:`.locks` (one downloader per file), :mod:`.download` (download, verify, locate). Everything
public is re-exported here.

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

import os
from pathlib import Path
from typing import Any

from ..errors import ModelError
from . import cache, download, fetch, locks, parse, schema  # noqa: F401 - submodules: tests patch their globals
from .cache import (
    LOCK_NAME,
    cache_dir,
    cache_state,
    human_size,
    is_offline,
    missing_files,
    model_dir,
    read_lock,
    sha256_file,
)
from .download import HUB_DOWNLOAD, HubDownload, VerifyResult, download_model, model_path, verify_model
from .fetch import URL_RETRIES, URL_TIMEOUT_S, Echo, fetch_url
from .parse import DEFAULT_REGISTRY, load_registry, registry_path
from .schema import (
    ADM_ARCH_KEYS,
    ADM_DIFFUSION_KEYS,
    DOWNLOADED_FAMILIES,
    FAMILIES,
    FAMILY_KINDS,
    LATENT_FAMILIES,
    METRIC_FAMILIES,
    OPERATOR_FAMILIES,
    PACKAGE_DIR,
    PIXEL_FAMILIES,
    SCHEMA_VERSION,
    TEXT_FAMILIES,
    FileSpec,
    ModelEntry,
    Registry,
    Source,
    redact_url,
)


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
        "kind": entry.kind,
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
                                else {"url": redact_url(s.url), "file": s.file}),
             **({"note": s.note} if s.note else {})}
            for s in entry.sources
        ],
    }


__all__ = [
    "ADM_ARCH_KEYS", "ADM_DIFFUSION_KEYS", "DEFAULT_REGISTRY", "DOWNLOADED_FAMILIES", "FAMILIES", "FAMILY_KINDS",
    "HUB_DOWNLOAD", "LATENT_FAMILIES", "LOCK_NAME", "METRIC_FAMILIES", "OPERATOR_FAMILIES", "PACKAGE_DIR",
    "PIXEL_FAMILIES", "SCHEMA_VERSION",
    "TEXT_FAMILIES", "URL_RETRIES", "URL_TIMEOUT_S", "Echo", "FileSpec", "HubDownload", "ModelEntry", "Registry",
    "Source", "VerifyResult", "cache_dir", "cache_state", "describe", "download_model", "ensure_local",
    "fetch_url", "human_size", "is_offline", "load_registry", "missing_files", "model_dir", "model_path",
    "read_lock", "redact_url", "registry_path", "sha256_file", "verify_model",
]
