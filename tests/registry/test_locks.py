"""diffrestore.registry.locks: one process at a time per file; a file system without locks still downloads."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

from diffrestore.registry import locks


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path: Path) -> None:
    path = locks.lock_path(tmp_path, "unet/w.bin")
    assert path.parent == tmp_path / locks.LOCKS_DIR and path.name == "unet%2Fw.bin.lock"
    order: list[str] = []
    waited = threading.Event()

    def second() -> None:
        with locks.held(path, on_wait=waited.set):
            order.append("second")

    with locks.held(path):
        thread = threading.Thread(target=second)
        thread.start()
        assert waited.wait(10)  # it noticed the lock and said so
        time.sleep(0.1)
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_a_very_long_name_gives_a_short_lock_file(tmp_path: Path) -> None:
    assert len(locks.lock_path(tmp_path, "d/" * 150 + "w.bin").name) < 100


def test_a_file_system_without_locks_goes_on_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if locks.fcntl is None:
        pytest.skip("flock only")

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    with locks.held(tmp_path / "x.lock", on_wait=lambda: pytest.fail("nothing to wait for")):
        pass
