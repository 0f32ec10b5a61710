"""``run/evaluate``: method lists, and set metrics (FID) carried from the scorer to the table, with a stand-in
scorer (the real FID network is too slow for the suite; its own tests are in tests/metrics/)."""

from __future__ import annotations

from typing import Any

import pytest
from cli_support import write_image

from diffrestore.errors import UsageError
from diffrestore.run import evaluate, scoring
from diffrestore.run.eval_report import table_markdown


def test_parse_methods() -> None:
    assert evaluate.parse_methods(" daps, DPS ,daps") == ("daps", "dps")
    with pytest.raises(UsageError, match="an empty method name"):
        evaluate.parse_methods("daps,,dps")


class _StandInScorer:
    """PSNR for real, FID as the number of pairs fed times 10 (so the test sees which images reached it)."""

    def __init__(self, names: Any, **_: Any) -> None:
        self.names = tuple(names)
        self.image_names = tuple(n for n in self.names if n != "fid")
        self.set_names = tuple(n for n in self.names if n == "fid")
        self.fed = 0

    def score_images(self, restored: Any, reference: Any) -> dict[str, list[float]]:
        from diffrestore.metrics import psnr

        self.fed += int(restored.shape[0])
        return {"psnr": [float(v) for v in psnr(restored, reference)]} if "psnr" in self.names else {}

    def set_scores(self) -> dict[str, dict[str, Any]]:
        return {"fid": {"value": 10.0 * self.fed, "n": self.fed, "warning": None}}


def test_set_metrics_are_computed_per_folder_over_its_images(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(scoring, "make_scorer", lambda names, **kw: _StandInScorer(names))
    monkeypatch.setattr(evaluate, "check_metric_weights", lambda *a, **kw: None)
    for i in range(3):
        write_image(tmp_path / "ref" / f"p{i}.png", seed=i)
        write_image(tmp_path / "a" / f"p{i}_x.png", seed=i + 1)
        if i < 2:
            write_image(tmp_path / "b" / f"p{i}.png", seed=i)
    report = evaluate.evaluate_folders([tmp_path / "a"], tmp_path / "ref", ("psnr", "fid"), output=None,
                                       contact_rows=0, say=lambda text: None, device="cpu")
    assert report.set_scores == {"a": {"fid": {"value": 30.0, "n": 3, "warning": None}}}
    assert "| a |" in table_markdown(report) and "| 30.00 | 3 |" in table_markdown(report)
    with pytest.raises(UsageError, match=r"p2\.png: no restored image"):  # b lacks p2
        evaluate.evaluate_folders([tmp_path / "a", tmp_path / "b"], tmp_path / "ref", ("psnr", "fid"),
                                  output=None, say=lambda text: None, device="cpu")
