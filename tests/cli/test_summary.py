"""``diffrestore summary merge`` (diffrestore/cli/summary.py): its printing never fails it and never splits a
line on a file name. The merge itself is tested in tests/split/test_distributed.py and tests/split/test_summaries.py."""

from __future__ import annotations

import io
import json
import sys

from diffrestore.cli.commands import main


def _shard(tmp_path, name: str) -> str:
    doc = {"task": "denoise", "items_total": 1, "shard": {"index": 1, "count": 1}, "seconds": 1.0,
           "items": [{"index": 0, "input": f"in/{name}", "status": "failed", "error": "cannot decode"}]}
    path = tmp_path / "s1.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_merge_prints_to_an_ascii_stdout_and_escapes_names_on_stderr(tmp_path, monkeypatch) -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    code = main(["summary", "merge", _shard(tmp_path, "caf\u00e9\nb.png")])
    out.flush()
    assert code == 1  # an image failed
    assert json.loads(out.buffer.getvalue())["items"][0]["input"] == "in/caf\u00e9\nb.png"  # JSON: exact
    assert err.getvalue() == "0 done, 0 skipped, 1 failed (caf\u00e9\\nb.png) in 1.0 s\n"  # one line
