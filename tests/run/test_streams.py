"""diffrestore.run.streams: printing never fails a run, names are shown on one line and as the bytes they are."""

from __future__ import annotations

import errno
import io
import os
import sys

import pytest

from diffrestore.run import streams


@pytest.fixture(autouse=True)
def _fresh():
    streams.reset()
    yield
    streams.reset()


class _Broken(io.StringIO):
    def __init__(self, code: int = errno.EPIPE) -> None:
        super().__init__()
        self.code = code

    def write(self, text: str) -> int:
        raise OSError(self.code, os.strerror(self.code))


def test_control_characters_are_escaped_and_tabs_kept_where_asked() -> None:
    assert streams.escape_controls("a\nb\rc\x1b[5md\x7f\x9b\u202ee.png") == "a\\nb\\rc\\x1b[5md\\x7f\\x9b\\u202ee.png"
    assert streams.escape_controls("x.png\tPSNR 20.00 dB", keep="\t") == "x.png\tPSNR 20.00 dB"
    assert streams.shown(os.fsdecode(b"dir/a\tb\xff.png")) == "dir/a\\tb\udcff.png"  # bytes stay for the writer
    assert streams.escape_markup("[bold red]x.png") == "\\[bold red]x.png"


def _bytes_stream(encoding: str, errors: str = "strict") -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors)


def test_an_undecodable_name_is_written_as_its_bytes_even_to_a_strict_stream() -> None:
    name = os.fsdecode(b"out/bad\xff_denoise.png")
    out = _bytes_stream("utf-8")
    streams.write_out(name, out)
    assert out.buffer.getvalue() == b"out/bad\xff_denoise.png\n"  # the path a script reads opens the file
    assert streams.lost_stdout_code() == 0


def test_an_ascii_stream_gets_escapes_instead_of_an_error() -> None:
    out, err = _bytes_stream("ascii"), _bytes_stream("ascii")
    streams.write_out("caf\u00e9_denoise.png", out)
    streams.write_err("note: caf\u00e9.png: noted", err)
    assert out.buffer.getvalue() == b"caf\\xe9_denoise.png\n"
    assert err.buffer.getvalue() == b"note: caf\\xe9.png: noted\n"


def test_a_broken_stdout_is_remembered_and_said_once_on_stderr(monkeypatch) -> None:
    err = io.StringIO()
    broken = _Broken()
    monkeypatch.setattr(sys, "stderr", err)
    streams.write_out("a.png", broken)
    streams.write_out("b.png", broken)
    assert streams.lost_stdout_code() == 141
    assert err.getvalue().count("stopped printing to stdout") == 1
    assert "broken pipe" in err.getvalue()
    assert streams.exit_code(0) == 141 and streams.exit_code(1) == 1 and streams.exit_code(143) == 143


def test_another_stdout_error_exits_1_and_a_broken_stderr_is_silent() -> None:
    streams.write_out("a.png", _Broken(errno.ENOSPC))
    assert streams.lost_stdout_code() == 1
    streams.write_err("note: nobody reads this", _Broken(errno.EIO))  # no exception, no fallback to stdout
    streams.reset()
    assert streams.lost_stdout_code() == 0
