"""Plain HTTP(S) downloads with resume (Range requests) and retries, using only the standard library.

It writes bytes into a ``.part`` file and nothing else: checking size and sha256 and renaming the file into
the cache is the caller's job (:mod:`.download`), so unchecked bytes never look like a cached file.

No file grows past its cap: the pinned size, or for a file whose size ``models.toml`` does not pin,
``DIFFRESTORE_MAX_DOWNLOAD_BYTES`` (default 20 GB, ten times the largest file of the shipped registry). A server
that keeps sending is cut off at the cap and its ``.part`` deleted, so a bad source cannot fill the cache's disk.
Credentials in a URL (``https://user:pass@host/...``) are sent as HTTP basic auth to that host only (never to a
host it redirects to) and never printed.
"""

from __future__ import annotations

import base64
import errno
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import ChecksumError, DownloadError, UsageError
from .schema import redact_url

#: messages for the user (licence, unverified hashes, progress) go through this; the CLI prints to stderr.
Echo = Callable[[str], None]

URL_TIMEOUT_S = 30.0
URL_RETRIES = 4
_CHUNK = 1 << 20
#: the cap for a file whose size models.toml does not pin (DIFFRESTORE_MAX_DOWNLOAD_BYTES overrides it)
MAX_UNPINNED_BYTES = 20_000_000_000


class _ShortRead(Exception):
    """The server closed the connection before Content-Length bytes arrived: retry with a Range request."""


class CacheWriteError(DownloadError):
    """The ``.part`` cannot be written (disk full, read-only): no other source or retry can help."""


class _LocalWriteError(Exception):
    """Writing the .part failed on our side (disk full, read-only): retrying the network cannot help."""


def max_download_bytes() -> int:
    """The cap for files of unknown size: DIFFRESTORE_MAX_DOWNLOAD_BYTES (a whole number of bytes) or 20 GB."""
    raw = os.environ.get("DIFFRESTORE_MAX_DOWNLOAD_BYTES", "").strip().replace("_", "")
    if not raw:
        return MAX_UNPINNED_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"DIFFRESTORE_MAX_DOWNLOAD_BYTES={raw!r} is not a number of bytes",
                         hint="give a whole number >= 1, e.g. 30000000000 for 30 GB, or unset it")
    return int(raw)


def _request(url: str, headers: dict[str, str]) -> urllib.request.Request:
    """A request for ``url``; its user part, if any, becomes a basic-auth header that is not sent on a redirect."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return urllib.request.Request(url, headers=headers)
    host = parts.netloc.rsplit("@", 1)[1]
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)), headers=headers)
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _too_big(shown: str, part: Path, *, expected_size: int, cap: int, reason: str) -> Exception:
    """The error for a body beyond the cap; the .part is deleted (it can never become the right file)."""
    part.unlink(missing_ok=True)
    if expected_size:
        return ChecksumError(f"{shown}: the server sends more than the pinned size of {expected_size} bytes "
                             f"({reason}); stopped and deleted the partial file",
                             hint="the source serves another file than models.toml pins: report it")
    return DownloadError(f"{shown}: the server sends more than the limit of {cap} bytes for a file whose size "
                         f"models.toml does not pin ({reason}); stopped and deleted the partial file",
                         hint="pin the file's size in models.toml, or raise DIFFRESTORE_MAX_DOWNLOAD_BYTES")


def _check_room(part: Path, need: int, shown: str) -> None:
    """Refuse a download the disk cannot hold, before writing a byte of it."""
    try:
        free = shutil.disk_usage(part.parent).free
    except OSError:
        return
    if need > free:
        raise DownloadError(f"{shown}: needs {need} more bytes in {part.parent}, but only {free} are free",
                            hint="free some space, or set DIFFRESTORE_CACHE to a folder on a larger disk")


def _local(action: Callable[[], object]) -> object:
    """Run one local file operation; its OSError (disk full, read-only) is ours, not the network's."""
    try:
        return action()
    except OSError as exc:
        raise _LocalWriteError(exc) from None


def _stream(response, part: Path, *, append: bool, limit: int | None) -> tuple[int, bool]:
    """Copy the body into ``part``; stops at ``limit`` bytes. Returns (bytes written, whether more was sent)."""
    written = 0
    # read1 returns what has arrived (up to the size) instead of waiting for a full chunk: what a stop signal or
    # a dropped connection interrupts is then on disk, ready to resume.
    read = getattr(response, "read1", response.read)
    handle = _local(lambda: open(part, "ab" if append else "wb"))  # noqa: SIM115 - closed below, its errors ours
    try:
        while True:
            # One byte past the limit is enough to know that the body is too long: never write it.
            want = _CHUNK if limit is None else min(_CHUNK, limit - written + 1)
            block = read(want)
            if not block:
                return written, False
            if limit is not None and written + len(block) > limit:
                return written, True
            _local(lambda block=block: handle.write(block))
            written += len(block)
    finally:
        _local(handle.close)


def _user_agent() -> str:
    from .. import __version__

    return f"diffrestore/{__version__}"


def fetch_url(
    url: str,
    part: Path,
    *,
    expected_size: int = 0,
    max_size: int | None = None,
    resume: bool = True,
    timeout: float = URL_TIMEOUT_S,
    retries: int = URL_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
    echo: Echo | None = None,
) -> Path:
    """Stream ``url`` into ``part``, resuming what is already there with a Range request; retry on failure.

    Returns ``part`` once the server says the body is complete. The caller checks size and sha256 and renames.
    A server that ignores Range (answers 200) restarts the file from zero; 416 (range beyond the end) too.
    ``part`` never grows past ``expected_size`` (if pinned) or ``max_size`` (default: :func:`max_download_bytes`):
    a longer body is cut off and the file deleted (ChecksumError for a pinned size, DownloadError otherwise).
    ``resume=False`` drops a ``.part`` left by an earlier run instead of continuing it.
    """
    shown = redact_url(url)  # every message below: a password in the URL is never printed
    cap = expected_size or (max_download_bytes() if max_size is None else max_size)
    part.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        part.unlink(missing_ok=True)
    last_error = "no attempt"
    for attempt in range(max(1, retries)):
        if attempt:
            sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        have = part.stat().st_size if part.exists() else 0
        if have > cap:  # a stale, longer .part can only be wrong
            part.unlink()
            have = 0
        if expected_size and have == expected_size:
            return part  # complete from an earlier run; the caller hashes it
        headers = {"User-Agent": _user_agent()}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(_request(url, headers), timeout=timeout) as response:
                status = getattr(response, "status", 200)
                append = False
                if have and status == 206:
                    content_range = response.headers.get("Content-Range", "")
                    match = re.match(r"bytes (\d+)-", content_range)
                    append = bool(match and int(match.group(1)) == have)
                length_header = response.headers.get("Content-Length")
                body_length = int(length_header) if length_header and length_header.isdigit() else None
                if have and not append and echo:
                    echo(f"  {shown}: server does not resume; restarting from zero")
                start = have if append else 0
                if body_length is not None:
                    if start + body_length > cap:  # announced too long: refuse before writing a byte
                        raise _too_big(shown, part, expected_size=expected_size, cap=cap,
                                       reason=f"it announces {start + body_length} bytes")
                    _check_room(part, body_length, shown)
                elif expected_size:
                    _check_room(part, expected_size - start, shown)
                written, more = _stream(response, part, append=append, limit=cap - start)
                if more:
                    raise _too_big(shown, part, expected_size=expected_size, cap=cap,
                                   reason="it kept sending")
                if body_length is not None and written < body_length:
                    raise _ShortRead(f"connection closed after {written} of {body_length} bytes")
            return part
        except _LocalWriteError as exc:
            cause = exc.args[0]
            full = getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            part.unlink(missing_ok=True)  # a half-written file on a full disk only takes the space others need
            raise CacheWriteError(
                f"{shown}: cannot write {part}: " + ("the disk is full" if full else (cause.strerror or str(cause))),
                hint="free some space, or set DIFFRESTORE_CACHE to a folder on a larger disk" if full
                else "make the cache folder writable, or set DIFFRESTORE_CACHE to a writable folder",
            ) from None
        except urllib.error.HTTPError as exc:
            if exc.code == 416:
                part.unlink(missing_ok=True)
                last_error = "HTTP 416 (range not satisfiable): restarting"
                continue
            if exc.code in (400, 401, 403, 404, 410):
                raise DownloadError(f"{shown}: HTTP {exc.code} {exc.reason}") from None
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, _ShortRead, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            last_error = redact_url(f"{type(exc).__name__}: {reason}")
        if echo:
            echo(f"  {shown}: {last_error} (attempt {attempt + 1}/{retries})")
    raise DownloadError(f"{shown}: download failed after {retries} attempts: {last_error}")
