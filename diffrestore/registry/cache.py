"""The cache folder: where a model's files live, whether they are there, the lock file, hashing and sizes.

Cache: ``DIFFRESTORE_CACHE``, else ``$XDG_CACHE_HOME/diffrestore``, else ``~/.cache/diffrestore`` (never the
install folder). A model's files live in ``<cache>/models/<name>/``; a file only appears there after it was
checked, so the cheap stat-only checks below are enough to call a model "cached".
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .schema import FileSpec, ModelEntry

LOCK_NAME = ".diffrestore-lock.json"
_TRUE = ("1", "true", "yes", "on")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


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
    return env_flag("DIFFRESTORE_OFFLINE") or env_flag("HF_HUB_OFFLINE")


def model_dir(entry: ModelEntry | str) -> Path:
    """The cache folder of a downloaded model (whether or not anything is there yet)."""
    name = entry if isinstance(entry, str) else entry.name
    return cache_dir() / "models" / name


def file_ok(directory: Path, spec: FileSpec) -> bool:
    """Cheap presence check (stat only): full hashing is `models verify`'s job."""
    target = directory / spec.path
    try:
        size = target.stat().st_size
    except OSError:
        return False
    return target.is_file() and (not spec.size or size == spec.size)


def missing_files(entry: ModelEntry) -> list[FileSpec]:
    directory = model_dir(entry)
    return [spec for spec in entry.files if not file_ok(directory, spec)]


def cache_state(entry: ModelEntry) -> str:
    """"yes", "no", "partial" for downloaded models; "built-in" for builtin and tiny ones."""
    if not entry.downloadable:
        return "built-in"
    missing = len(missing_files(entry))
    if missing == 0:
        return "yes"
    return "no" if missing == len(entry.files) else "partial"


def read_lock(entry: ModelEntry) -> dict[str, Any]:
    """The sha256 and origin recorded for each downloaded file (``{}`` when there is no readable lock)."""
    try:
        data = json.loads((model_dir(entry) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_lock(entry: ModelEntry, path: str, record: dict[str, Any]) -> None:
    """Record one file; written to a temporary file and renamed, so a crash never leaves half a lock."""
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


def human_bytes(n: int) -> str:
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
    return human_bytes(total) if entry.size_is_exact else f"~{human_bytes(total)}"
