"""``--summary`` naming a FIFO (``mkfifo``) or a device: accepted before the run without being read (reading it
waited for a writer that never came), written once at the end like a stream."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time

import pytest

from diffrestore.split import summaries

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _in_thread(target, *args) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target(*args))
        except BaseException as error:  # reported by the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _unblock(fifo) -> None:
    """Open the other end so a thread stuck opening the FIFO for reading goes on (the old code's hang)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_is_accepted_before_the_run_without_waiting(tmp_path) -> None:
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    thread, outcome = _in_thread(summaries.check_summary_file, fifo)
    thread.join(10)
    hung = thread.is_alive()
    if hung:
        _unblock(fifo)
        thread.join(10)
    assert not hung, "check_summary_file waited on the FIFO"
    assert outcome == [None]


def test_a_fifo_is_written_at_the_end_once_a_reader_comes(tmp_path) -> None:
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    doc = {"task": "denoise", "items": [{"input": "a.png", "status": "done"}]}
    writer, outcome = _in_thread(summaries.write_summary, fifo, doc)
    time.sleep(0.3)  # no reader yet: the writer says so and waits for one
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received, deadline = b"", time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            if not chunk and not writer.is_alive():
                break
            received += chunk
            time.sleep(0.01 if chunk else 0.02)
    finally:
        os.close(reader)
    writer.join(10)
    assert outcome == [None] and json.loads(received) == doc
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # the user's FIFO is still one, not replaced by a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.fifo"]  # no temp file beside it


def test_a_device_is_written_directly(tmp_path) -> None:
    assert summaries.is_stream(tmp_path / "missing.json") is False
    assert summaries.is_stream(tmp_path) is False
    if os.path.exists(os.devnull):
        summaries.check_summary_file(type(tmp_path)(os.devnull))
        summaries.write_summary(type(tmp_path)(os.devnull), {"task": "denoise", "items": []})
