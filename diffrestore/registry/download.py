"""Make a model's files present and verified in the cache, re-check them, and say where they are.

Sources are tried in order per missing file; every file must match its pinned size/sha256 before it is renamed
into the cache (the trust policy is documented at the top of ``models.toml``). Offline mode never touches the
network, and a cached model never waits on one: the cache is checked before any source.

Each file is fetched under its own lock (:mod:`.locks`): a second process that wants the same file waits, then
uses the file the first one verified, instead of writing into the same ``.part``. A ``.part`` left behind (a
dropped connection, a stop signal) is kept only where the next download can resume it safely: it is not empty
and the file's sha256 is pinned, so the final check covers every byte; otherwise it is deleted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ChecksumError, DiffrestoreError, DownloadError, ModelError
from .cache import (
    env_flag,
    file_ok,
    human_bytes,
    is_offline,
    missing_files,
    model_dir,
    read_lock,
    sha256_file,
    writable_model_dir,
    write_lock,
)
from .fetch import URL_TIMEOUT_S, CacheWriteError, Echo, fetch_url, max_download_bytes
from .locks import held, lock_path
from .schema import SHA256_RE, FileSpec, ModelEntry, Source

#: hub_download(repo_id, filename, *, revision, local_dir) -> path of the downloaded file. Tests replace it
#: (monkeypatch ``diffrestore.registry.download.HUB_DOWNLOAD``, the global this module reads, or pass
#: ``hub_download=``) with a fake hub that never touches a network.
HubDownload = Callable[..., str]


def _hf_hub_download(repo_id: str, filename: str, *, revision: str, local_dir: str) -> str:
    from huggingface_hub import hf_hub_download  # only when a hub file is really wanted: keeps start-up light

    return hf_hub_download(repo_id, filename, revision=revision, local_dir=local_dir)


HUB_DOWNLOAD: HubDownload = _hf_hub_download


def _stderr_echo(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _trust_default(trust_unverified: bool | None) -> bool:
    if trust_unverified is not None:
        return bool(trust_unverified)
    return env_flag("DIFFRESTORE_TRUST_UNVERIFIED")


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
    """Fetch one file from one source into the cache (verified, atomically renamed); returns its sha256.

    The caller holds the file's lock, so the ``.part`` and the staging folder below are this process's alone.
    """
    directory = model_dir(entry)
    final = directory / spec.path
    final.parent.mkdir(parents=True, exist_ok=True)
    if source.type == "url":
        part = final.with_name(final.name + ".part")
        resumable = bool(spec.sha256)  # only a pinned hash proves that resumed bytes belong to one file
        try:
            fetch_url(source.url, part, expected_size=spec.size, max_size=max_download_bytes(), resume=resumable,
                      timeout=timeout, sleep=sleep, echo=echo)
        except BaseException:  # also a stop signal: no empty or unverifiable .part stays behind
            if not resumable or not part.is_file() or part.stat().st_size == 0:
                part.unlink(missing_ok=True)
            raise
        digest = _check_file(part, spec, source.describe())  # deletes the .part on failure: never "resumed" later
        os.replace(part, final)
        return digest
    # Hugging Face: download into a staging folder of this file (huggingface_hub keeps its own resumable partial
    # files there), check, then rename into place, so the cache never holds unchecked bytes.
    staging = _staging(directory, spec.path)
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
    shutil.rmtree(staging, ignore_errors=True)
    return digest


def _staging(directory: Path, path: str) -> Path:
    """One staging folder per file: removing it never pulls a file from under another process's download."""
    return directory / ".staging" / lock_path(directory, path).stem


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another download is using it) or already gone
        folder.rmdir()


def _fetch_file(
    entry: ModelEntry,
    wanted: FileSpec,
    recorded: dict[str, Any],
    *,
    trust: bool,
    hub_download: HubDownload,
    echo: Echo,
    sleep: Callable[[float], None],
    timeout: float,
) -> None:
    """Try every source of one missing file until one delivers the pinned bytes; record it in the lock file."""
    # Trust on first use: a sha256 recorded by an earlier download pins an unpinned file from then on
    # (until --force), so a source that later serves other bytes is caught.
    earlier = str((recorded.get(wanted.path) or {}).get("sha256", ""))
    spec = wanted if wanted.sha256 or not SHA256_RE.match(earlier) else replace(wanted, sha256=earlier)
    failures: list[str] = []
    checksum_failures: list[str] = []
    hints: list[str] = []  # a source's own advice (raise the size limit, ...) beats the generic one below
    for source in (s for s in entry.sources if s.delivers(spec.path)):
        if _pins_nothing(source, spec) and not trust:
            failures.append(
                f"{source.describe()}: refused, nothing pins these bytes (no sha256"
                + ("" if source.type == "url" else ", no revision") + ")"
            )
            continue
        echo(f"{entry.name}: downloading {spec.path} from {source.describe()}"
             + (f" ({human_bytes(spec.size)})" if spec.size else ""))
        try:
            digest = _download_one(entry, spec, source, hub_download=hub_download, echo=echo, sleep=sleep,
                                   timeout=timeout)
        except CacheWriteError:
            raise  # the cache's disk is full or read-only: every other source would meet the same
        except ChecksumError as exc:
            checksum_failures.append(str(exc))
            echo(f"  {exc}")
            continue
        except DownloadError as exc:
            failures.append(" ".join(exc.message.split()))
            hints.extend([exc.hint] if exc.hint else [])
            echo(f"  {exc}")
            continue
        if not spec.sha256:
            echo(f"  {spec.path}: not pinned in models.toml; recorded sha256 {digest} (trust on first use)")
        write_lock(entry, spec.path, {
            "sha256": digest,
            "size": (model_dir(entry) / spec.path).stat().st_size,
            "source": source.describe(),
            "pinned": bool(wanted.sha256),
            "downloaded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        return
    if checksum_failures:
        shutil.rmtree(_staging(model_dir(entry), spec.path), ignore_errors=True)
        _remove_if_empty(model_dir(entry) / ".staging")
        raise ChecksumError(
            f"model '{entry.name}': {spec.path}: no source delivered the pinned bytes: "
            + "; ".join(checksum_failures + failures)
        )
    if any("refused" in f for f in failures):
        hint = ("pass --trust-unverified (or DIFFRESTORE_TRUST_UNVERIFIED=1) to accept unpinned bytes; their sha256 "
                "is recorded")
    else:
        hint = hints[0] if hints else "check the network and retry; finished files are kept"
    raise DownloadError(f"model '{entry.name}': cannot download {spec.path}: " + "; ".join(failures), hint=hint)


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
    max_download_bytes()  # a bad DIFFRESTORE_MAX_DOWNLOAD_BYTES fails before anything is fetched
    first_download = not directory.exists() or not any(file_ok(directory, f) for f in entry.files)
    writable_model_dir(entry)  # a cache that names a file or is read-only: one line, before the licence
    if first_download:
        echo(f"{entry.name}: licence: {entry.licence}" + (f" - {entry.licence_note}" if entry.licence_note else ""))
    for wanted in todo:
        def waiting(path: str = wanted.path) -> None:
            echo(f"{entry.name}: waiting for another download of {path} to finish")

        with held(lock_path(directory, wanted.path), on_wait=waiting):
            if not force and file_ok(directory, wanted):
                # Another process fetched and verified it while this one waited for the lock: use it.
                echo(f"{entry.name}: {wanted.path} was downloaded meanwhile by another process; using it")
                continue
            # Read under the lock: the process that held it may have recorded a hash that pins this file now.
            recorded = {} if force else read_lock(entry).get("files", {})
            _fetch_file(entry, wanted, recorded, trust=trust, hub_download=hub, echo=echo, sleep=sleep,
                        timeout=timeout)
    _remove_if_empty(directory / ".staging")
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
