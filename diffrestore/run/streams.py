"""Printing that never fails a run: results on stdout, notes on stderr, file names shown safely.

A run's files matter more than its printed lines. So a write to stdout or stderr never raises here:

* **stdout gone** (``| head -c 1``, a closed terminal, a full disk under ``> list.txt``): the first failure is
  remembered, one note says so on stderr, stdout is pointed at the null device (so that Python's own flush at
  exit cannot fail again and print "Exception ignored ..."), and the run goes on to finish its files. The exit
  code then says stdout was lost (``lost_stdout_code``): 141 for a broken pipe, as for a process SIGPIPE stops
  (128 + 13, what a shell with ``pipefail`` expects from the writer of ``cmd | head``); 1 for any other write
  error; a worse code of the run itself (1, 2, 3, a signal's) wins.
* **stderr gone**: notes are dropped; they never move to stdout.
* **a character the stream's encoding cannot hold** (``PYTHONIOENCODING=ascii``, a file name that is not
  UTF-8 under a strict UTF-8 locale): a name's undecodable bytes go out as the bytes they were (surrogateescape,
  so the printed path opens the file); any other character the encoding lacks is written as ``\\xe9``.
* **control characters in a name** (a newline, ESC, bidi overrides) are written as escapes (``\\n``,
  ``\\x1b``, ``\\u202e``): a name never splits a line or drives the terminal. A backslash is left as it is, so
  such a printed name is for people; ``--json`` has every name exactly (JSON escapes, with ``\\udcXX`` for an
  undecodable byte XX: ``os.fsencode(name)`` gives the file system's bytes back).
* **rich markup** in user strings (``[bold red]x.png``) is escaped wherever rich would read markup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from typing import TextIO

#: C0 and C1 controls, DEL, and the invisible marks that reorder text (bidi embeddings, overrides, isolates)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: exit code when stdout was a pipe whose reader went away: what a shell reports for a writer SIGPIPE stopped
EXIT_BROKEN_PIPE = 128 + 13

_state: dict[str, OSError | None] = {"stdout": None, "stderr": None}


def escape_controls(text: str, *, keep: str = "") -> str:
    """``text`` with every control character as a visible escape, except those in ``keep``."""

    def one(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep:
            return char
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _CONTROL.sub(one, text)


def shown(path: object) -> str:
    """A path or name as printed on one line."""
    return escape_controls(os.fspath(path) if isinstance(path, os.PathLike) else str(path))


def escape_markup(text: str) -> str:
    """``text`` for a place where rich reads markup (a progress bar's description): shown as it is."""
    from rich.markup import escape

    return escape(escape_controls(text))


def reset() -> None:
    """Forget earlier failures (each CLI command starts afresh; tests run several in one process)."""
    _state["stdout"] = _state["stderr"] = None


def stdout_lost() -> OSError | None:
    """The error that stopped stdout in this command, if any."""
    return _state["stdout"]


def lost_stdout_code() -> int:
    """0 while stdout works; 141 after a broken pipe; 1 after another write error."""
    lost = _state["stdout"]
    if lost is None:
        return 0
    return EXIT_BROKEN_PIPE if lost.errno == errno.EPIPE else 1


def exit_code(run_code: int) -> int:
    """The command's exit code: the run's own when it is not 0, else what losing stdout says."""
    return run_code or lost_stdout_code()


def write_out(text: str, stream: TextIO | None = None) -> None:
    """One line of results on stdout (``text`` already escaped where it holds names). Never raises."""
    if _state["stdout"] is not None:
        return
    stream = stream or sys.stdout
    if stream is None:  # started with stdout closed: the user asked for no results
        return
    try:
        _write(stream, text + "\n")
    except OSError as error:
        stdout_failed(error, stream)
        reason = "its reader went away (broken pipe)" if error.errno == errno.EPIPE else (
            f"it failed ({error.strerror or error})")
        write_err(f"note: stopped printing to stdout: {reason}; everything else goes on to the end")


def stdout_failed(error: OSError, stream: TextIO | None = None) -> None:
    """Record that stdout failed with ``error`` and point it at the null device; nothing more is printed there."""
    _state["stdout"] = error
    stream = stream or sys.stdout
    if stream is not None:
        _silence(stream)


def write_err(text: str, stream: TextIO | None = None) -> None:
    """One line on stderr, control characters escaped. Never raises, never falls back to stdout."""
    if _state["stderr"] is not None:
        return
    stream = stream or sys.stderr
    if stream is None:
        return
    try:
        _write(stream, escape_controls(text) + "\n")
    except OSError as error:
        _state["stderr"] = error
        _silence(stream)


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
    except UnicodeEncodeError:
        data = _encode(text, getattr(stream, "encoding", None) or "utf-8")
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # a text-only stream: keep it readable
            stream.write(data.decode("ascii", "backslashreplace"))
        else:
            stream.flush()
            buffer.write(data)
    stream.flush()


def _encode(text: str, encoding: str) -> bytes:
    """``text`` in ``encoding``: an undecodable file-name byte as itself, other missing characters as escapes."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode(encoding, "surrogateescape")
        except UnicodeEncodeError:
            out += char.encode("ascii", "backslashreplace")
    return bytes(out)


def _silence(stream: TextIO) -> None:
    """Point a failed standard stream at the null device, so later writes and Python's flush at exit succeed."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    if fd not in (1, 2):
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        return
    # What the stream still holds in its buffer now goes to the null device too.
    with contextlib.suppress(OSError, ValueError):
        stream.flush()


def ensure_standard_streams() -> None:
    """A command started with stdout or stderr closed (``2>&-``): give the descriptor the null device. Otherwise
    Python's ``sys.stderr`` is None and ``print(file=None)`` writes notes to stdout among the results, and the
    next file opened (an output image) would get descriptor 2, where a library's C-level warning would land."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                continue
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "r" if fd == 0 else "w", encoding="utf-8"))  # noqa: SIM115
