"""The cache folder: where a model's files live, whether they are there, the lock file, hashing and sizes.

Cache: ``DIFFRESTORE_CACHE``, else ``$XDG_CACHE_HOME/diffrestore``, else ``~/.cache/diffrestore`` (never the
install folder). A model's files live in ``<cache>/models/<name>/``; a file only appears there after it was
checked, so the cheap stat-only checks below are enough to call a model "cached".
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DownloadError
from .locks import held, lock_path
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


def _cache_setting() -> str:
    """Which setting chose the cache folder, for messages that say how to move it."""
    for name in ("DIFFRESTORE_CACHE", "XDG_CACHE_HOME"):
        if os.environ.get(name, "").strip():
            return f"set by {name}"
    return "the default"


def writable_model_dir(entry: ModelEntry) -> Path:
    """Create a model's cache folder and prove it writable before anything is downloaded into it.

    A ``DIFFRESTORE_CACHE`` that names a file, or a cache on a read-only mount, is a setting to fix, not a bug:
    DownloadError (exit 3) naming the folder and the setting, instead of an "unexpected" OSError mid-download.
    A model that is already cached never gets here, so a read-only cache of finished models keeps working.
    """
    root, directory = cache_dir(), model_dir(entry)
    fix = "set DIFFRESTORE_CACHE to a writable folder"
    existing = directory
    while not existing.exists() and existing != existing.parent:  # nearest existing folder (or file) upwards
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "names a file, not a folder" if existing == root else f"lies under the file {existing}"
        raise DownloadError(f"the model cache {root} ({_cache_setting()}) {where}",
                            hint=f"{fix}, or remove the file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Try a real file, not os.access: that also holds for root, read-only mounts and ACLs.
        fd, probe = tempfile.mkstemp(prefix=".diffrestore-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        where = directory if directory.is_dir() else root  # the folder the user can act on
        raise DownloadError(
            f"cannot write to the model cache {where} ({_cache_setting()}): {reason}",
            hint=f"make it writable, or {fix}; models already cached there are used without writing",
        ) from None
    return directory


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
    """Record one file; written to a temporary file and renamed, so a crash never leaves half a lock.

    Read, update and rename happen under the lock file's own lock: two processes that finish two files of one
    model at once would otherwise each write back the record without the other's file.
    """
    directory = model_dir(entry)
    lock_file = directory / LOCK_NAME
    with held(lock_path(directory, LOCK_NAME)):
        data = read_lock(entry)
        data.setdefault("files", {})[path] = record
        fd, tmp = tempfile.mkstemp(prefix=LOCK_NAME + ".", suffix=".tmp", dir=directory)
        try:
            # mkstemp makes the file private (0600): keep the old lock file's mode (a cache shared by a group)
            os.chmod(tmp, lock_file.stat().st_mode & 0o777 if lock_file.exists() else 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, lock_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


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
