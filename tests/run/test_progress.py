"""diffrestore.run.progress: the progress mode chosen for the stream, and what the reporter prints where."""

from __future__ import annotations

import io
from pathlib import Path

from diffrestore.run import plan, progress

# ----------------------------------------------------------------------------------------------------------------
# Progress and reporting


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_mode(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert progress.progress_mode("auto", quiet=False, stream=_Stream(True)) == "rich"
    assert progress.progress_mode("auto", quiet=False, stream=_Stream(False)) == "plain"
    assert progress.progress_mode("rich", quiet=True, stream=_Stream(True)) == "none"
    monkeypatch.setenv("CI", "true")
    assert progress.progress_mode("auto", quiet=False, stream=_Stream(True)) == "plain"


def test_reporter_streams() -> None:
    out, err = _Stream(False), _Stream(False)
    reporter = progress.Reporter(out=out, err=err)
    reporter.start(2)
    ok = plan.Item(index=0, input=Path("a.png"), output=Path("a_x.png"), status="done", seconds=1.25)
    bad = plan.Item(index=1, input=Path("b.png"), output=Path("b_x.png"), status="failed", error="cannot decode")
    reporter.result("a_x.png")
    reporter.item_finished(ok)
    reporter.item_finished(bad)
    assert out.getvalue() == "a_x.png\n"
    assert err.getvalue().splitlines() == ["[1/2] a.png -> a_x.png (1.2 s)", "failed: b.png: cannot decode"]
    quiet_err = _Stream(False)
    quiet = progress.Reporter(quiet=True, out=_Stream(False), err=quiet_err)
    quiet.start(1)
    quiet.item_finished(ok)
    quiet.message("note")
    quiet.item_finished(bad)
    assert quiet_err.getvalue() == "failed: b.png: cannot decode\n"  # only failures survive --quiet


def test_names_never_split_a_line() -> None:
    odd = plan.Item(index=0, input=Path("in/a\nb.png"), output=Path("in/a\nb_x.png"), status="done", seconds=1.0)
    out, err = _Stream(False), _Stream(False)
    plain = progress.Reporter(out=out, err=err)
    plain.start(1)
    plain.item_finished(odd)
    plain.message("note: a\x1b[5mb.png: read")
    assert err.getvalue().splitlines() == ["[1/1] in/a\\nb.png -> in/a\\nb_x.png (1.0 s)", "note: a\\x1b[5mb.png: read"]


def test_rich_markup_in_names_is_shown_as_text() -> None:
    from rich.text import Text

    marked = plan.Item(index=0, input=Path("[blink]x.png"), output=Path("[bold red]x_x.png"))
    rich_err = _Stream(True)
    rich = progress.RichReporter(out=_Stream(False), err=rich_err)
    rich.start(1)
    rich.batch_started([marked])
    description = rich.progress.tasks[1].description  # rendered as markup by the bar's TextColumn
    assert Text.from_markup(description).plain == "steps  [blink]x.png"
    rich.message("note: [bold red]x.png: read")
    assert "note: [bold red]x.png: read" in rich_err.getvalue() and "\x1b[5m" not in rich_err.getvalue()
