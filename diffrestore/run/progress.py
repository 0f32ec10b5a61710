"""Progress and messages for runs: results on stdout, progress and messages on stderr.

``auto`` is a rich bar when stderr is a terminal and CI is unset, one plain line per image otherwise; ``--quiet``
prints nothing but failures. Solvers report through ``ProgressCallback`` and never print. Every line goes through
``streams``: printing never fails a run (a closed pipe, an encoding that lacks a character), notes never go to
stdout, and names are shown with their control characters escaped (and their markup, under rich).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from . import streams

if TYPE_CHECKING:
    from .options import RunOptions
    from .plan import Item, RunSummary


def progress_mode(requested: str, *, quiet: bool, stream: TextIO | None = None) -> str:
    """``auto`` -> rich when stderr is a terminal and CI is unset, else plain; quiet -> none."""
    if quiet:
        return "none"
    if requested != "auto":
        return requested
    stream = stream or sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return "rich" if is_tty and not os.environ.get("CI") else "plain"


class Reporter:
    """Plain reporter; also the base of the others. ``quiet`` keeps only failure lines."""

    def __init__(self, *, quiet: bool = False, show_progress: bool = True, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.quiet = quiet
        self.show_progress = show_progress and not quiet
        self._out = out
        self._err = err
        self.total = 0
        self.finished = 0

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    # stdout ---------------------------------------------------------------------------------------------------
    def result(self, text: str) -> None:
        """One line of results. The caller escapes the names in it (``streams.shown``); tabs separate fields."""
        if not self.quiet:
            streams.write_out(streams.escape_controls(text, keep="\t"), self.out)

    # stderr ---------------------------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        """A note or warning; hidden by --quiet."""
        if not self.quiet:
            streams.write_err(text, self.err)

    def failure(self, item: Item) -> None:
        """Always shown, one line naming the file and the reason."""
        streams.write_err(f"failed: {item.input}: {item.error}", self.err)

    def start(self, total: int) -> None:
        self.total = total

    def batch_started(self, items: list[Item]) -> None:
        pass

    def step(self, done: int, total: int, what: str) -> None:
        pass

    def run_finished(self, summary: RunSummary) -> None:
        """The run's last line: what was done, skipped and failed."""
        self.message(summary.line())

    def item_finished(self, item: Item) -> None:
        self.finished += 1
        if item.status == "failed":
            self.failure(item)
            return
        if not self.show_progress:
            return
        width = len(str(self.total))
        if item.status == "skipped":
            text = f"skipped {item.input} ({item.error})"
        elif item.batch_images > 1:  # one solver call restored them all: its time is the batch's, not the image's
            text = f"{item.input} -> {item.output} ({item.batch_seconds:.1f} s for a batch of {item.batch_images})"
        else:
            text = f"{item.input} -> {item.output} ({item.seconds:.1f} s)"
        streams.write_err(f"[{self.finished:>{width}}/{self.total}] {text}", self.err)


class RichReporter(Reporter):
    """A bar for images and one for the solver steps of the current batch, on stderr."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=self.err, stderr=self._err is None)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=False, redirect_stdout=False, redirect_stderr=False,
        )
        # Results belong on stdout. When stdout is the same terminal as the bar, print them through the bar's
        # console (above the bar) so the display stays intact; when it is a pipe or file, write it plainly.
        self._stdout_is_tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._images = None
        self._steps = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.progress.stop()
        except OSError:  # the terminal went away (SIGHUP): the run's summary must still come
            self.console.quiet = True

    def _say(self, text: str, *, keep: str = "") -> None:
        """One line above the bar: no markup read, controls escaped, characters the terminal's encoding lacks
        escaped; a terminal that went away silences the console instead of failing the run."""
        try:
            self.console.print(self._printable(text, keep=keep), markup=False, highlight=False, soft_wrap=True)
        except OSError:
            self.console.quiet = True

    def _printable(self, text: str, *, keep: str = "") -> str:
        encoding = getattr(self.console.file, "encoding", None) or "utf-8"
        return streams.escape_controls(text, keep=keep).encode(encoding, "backslashreplace").decode(encoding)

    def result(self, text: str) -> None:
        if self.quiet:
            return
        if self._stdout_is_tty:
            self._say(text, keep="\t")
        else:
            super().result(text)

    def message(self, text: str) -> None:
        if not self.quiet:
            self._say(text)

    def failure(self, item: Item) -> None:
        self._say(f"failed: {item.input}: {item.error}")

    def start(self, total: int) -> None:
        super().start(total)
        self._images = self.progress.add_task("images", total=total)
        self._steps = self.progress.add_task("steps", total=1, visible=False)

    def batch_started(self, items: list[Item]) -> None:
        names = ", ".join(item.input.name for item in items[:3]) + (" ..." if len(items) > 3 else "")
        # The description is rich markup: a name like "[bold red]x.png" must show as itself.
        description = f"steps  {streams.escape_markup(self._printable(names))}"
        self.progress.update(self._steps, description=description, completed=0, visible=True)

    def step(self, done: int, total: int, what: str) -> None:
        self.progress.update(self._steps, completed=done, total=total)

    def item_finished(self, item: Item) -> None:
        self.finished += 1
        if item.status == "failed":
            self.failure(item)
        self.progress.advance(self._images)


def make_reporter(opts: RunOptions, *, out: TextIO | None = None, err: TextIO | None = None) -> Reporter:
    mode = progress_mode(opts.progress, quiet=opts.quiet, stream=err)
    if mode == "rich":
        return RichReporter(quiet=opts.quiet, out=out, err=err)
    return Reporter(quiet=opts.quiet, show_progress=mode == "plain", out=out, err=err)
