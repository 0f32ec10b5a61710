"""Plain HTTP(S) downloads with resume (Range requests) and retries, using only the standard library.

It writes bytes into a ``.part`` file and nothing else: checking size and sha256 and renaming the file into
the cache is the caller's job (:mod:`.download`), so unchecked bytes never look like a cached file.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import DownloadError

#: messages for the user (licence, unverified hashes, progress) go through this; the CLI prints to stderr.
Echo = Callable[[str], None]

URL_TIMEOUT_S = 30.0
URL_RETRIES = 4
_CHUNK = 1 << 20


class _ShortRead(Exception):
    """The server closed the connection before Content-Length bytes arrived: retry with a Range request."""


def _user_agent() -> str:
    from .. import __version__

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
