"""Advisory per-file locks in the cache, so that two downloads of one file never share its ``.part``.

Two ``diffrestore models download`` of one model started seconds apart (two shells, two jobs of a cluster, a run
and a download) used to append to the same ``.part`` and rename it under each other. Now each file of a model is
fetched under its own lock (``<model folder>/.locks/<file>.lock``): the second process waits, then finds the file
cached and uses it. The lock is the kernel's (``flock``; Windows: ``msvcrt.locking``), so a killed process never
leaves a stale lock behind; the small lock files themselves are kept, as deleting them would race with a waiter.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCKS_DIR = ".locks"
_POLL_S = 0.2  # Windows has no blocking lock call that waits without a time limit


def lock_path(directory: Path, name: str) -> Path:
    """The lock file of ``name`` (a file's path inside the model folder), in one flat folder."""
    flat = urllib.parse.quote(name, safe="")  # "unet/w.bin" -> "unet%2Fw.bin": one name per file, no subfolders
    if len(flat) > 200:  # stay well under NAME_MAX (255 bytes) for very long paths
        flat = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return directory / LOCKS_DIR / f"{flat}.lock"


#: a file system without locks (some network and FUSE mounts): download unlocked, as before locks existed
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):  # held by another process (Windows: EACCES)
        return False
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return True
        if fcntl is None and exc.errno == errno.EDEADLOCK:  # pragma: no cover - Windows: held
            return False
        raise
    return True


def _wait_for_lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a stop signal interrupts the wait (the handler raises)
        return
    while not _try_lock(fd):  # pragma: no cover - Windows
        time.sleep(_POLL_S)


@contextlib.contextmanager
def held(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock ``path`` within the block; ``on_wait`` is called once if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd):
            if on_wait is not None:
                on_wait()
            _wait_for_lock(fd)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
