"""SIGINT, SIGTERM and SIGHUP stop a run the same way: finished outputs are kept, nothing is left half-written, the
summary (and ``--json``) is printed, and the exit code is 128 + the signal's number, as a shell reports a process
the signal killed (130 for Ctrl-C, 143 for the SIGTERM of ``timeout``, systemd or Kubernetes, 129 for the SIGHUP
of a closed terminal or a dropped ssh session). Under ``nohup`` SIGHUP is ignored, and stays ignored.

The CLI installs ``stop_on_signals`` for the whole command; a signal then raises ``Interrupted`` (a
KeyboardInterrupt, so every ``except KeyboardInterrupt`` treats both alike) in the main thread. The engine wraps
the writing of one image's files in ``deferred``: a signal that arrives meanwhile takes effect once they are all
written, so an image is either complete (main output, samples, std map) or absent. A second signal inside that
window stops at once, for a save that hangs on a dead network drive.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: the signals handled like Ctrl-C (Windows has no SIGHUP)
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM) + (
    (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_of(error: BaseException | None) -> int:
    """The signal behind a KeyboardInterrupt: ``Interrupted.signum``, else SIGINT (Python's own Ctrl-C)."""
    return getattr(error, "signum", int(signal.SIGINT))


_state = {"deferring": 0, "pending": None}


def _handler(signum: int, frame: object) -> None:
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise ``Interrupted``. A signal that was ignored when the process
    started stays ignored (a shell's background job ignores SIGINT on purpose); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; embedders keep their own
        return
    previous = {}
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current is not signal.SIG_IGN:
            previous[signum] = current
            signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal inside the block is raised when the block ends (a second one at once)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        pending = _state["pending"]
        if not _state["deferring"] and pending is not None:
            _state["pending"] = None
            raise Interrupted(pending)


def signal_name(error: BaseException | None) -> str:
    """"SIGINT", "SIGTERM", "SIGHUP": the name of the signal behind a KeyboardInterrupt."""
    return signal.Signals(signal_of(error)).name
