"""The eval report: aggregates, the paper-style table, CSV and JSON agreeing with each other, and which existing
files a report may replace."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from diffrestore.errors import OutputError
from diffrestore.run.eval_report import (
    ImageResult,
    Report,
    check_report_files,
    mean_std,
    results_csv,
    results_json,
    table_markdown,
    write_report,
)


def _report() -> Report:
    results = [
        ImageResult("daps", "a.png", "out/daps/a.png", scores={"psnr": 20.0, "lpips": 0.30}),
        ImageResult("daps", "b.png", "out/daps/b.png", scores={"psnr": 24.0, "lpips": 0.10}),
        ImageResult("dps", "a.png", "out/dps/a.png", scores={"psnr": 18.0, "lpips": 0.40}),
        ImageResult("dps", "b.png", "out/dps/b.png", status="failed", error="boom"),
    ]
    sets = {"daps": {"fid": {"value": 12.345, "n": 2, "warning": "FID over n=2 images: biased"}},
            "dps": {"fid": {"value": 50.0, "n": 1, "warning": None}}}
    return Report(metrics=("psnr", "lpips", "fid"), methods=["daps", "dps"], results=results, set_scores=sets,
                  settings={"described": "Task inpaint."})


def test_mean_and_sample_std() -> None:
    assert mean_std([20.0, 24.0]) == {"mean": 22.0, "std": pytest.approx(2.0 ** 1.5), "n": 2}
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert mean_std([30.0, math.inf])["mean"] == math.inf  # an identical image is not averaged away


def test_the_table_has_arrows_mean_std_set_metrics_and_counts() -> None:
    lines = table_markdown(_report()).splitlines()
    assert lines[0] == "| method | PSNR (dB) ↑ | LPIPS ↓ | FID ↓ | n |"
    assert lines[2] == "| daps | 22.00 ± 2.83 | 0.2000 ± 0.1414 | 12.35 | 2 |"
    assert lines[3] == "| dps | 18.00 ± 0.00 | 0.4000 ± 0.0000 | 50.00 | 1 (1 failed) |"
    assert "FID over n=2 images: biased" in lines and "Task inpaint." in lines


def test_csv_and_json_say_the_same() -> None:
    report = _report()
    rows = list(csv.DictReader(io.StringIO(results_csv(report))))
    doc = results_json(report)
    assert [r["status"] for r in rows] == [i["status"] for i in doc["images"]] == ["done", "done", "done", "failed"]
    for row, image in zip(rows, doc["images"], strict=True):
        if row["status"] == "done":
            assert float(row["psnr"]) == image["psnr"] and float(row["lpips"]) == image["lpips"]
    assert doc["aggregate"]["daps"]["psnr"]["mean"] == 22.0 and doc["aggregate"]["dps"]["failed"] == 1
    assert doc["aggregate"]["daps"]["fid"]["value"] == 12.345
    assert doc["metrics"]["lpips"]["higher_is_better"] is False and doc["metrics"]["fid"]["kind"] == "set"
    json.dumps(doc, allow_nan=False)  # strict JSON: no inf, no NaN


def test_an_infinite_psnr_is_null_in_json_and_inf_elsewhere() -> None:
    report = Report(metrics=("psnr",), methods=["m"], results=[ImageResult("m", "a.png", "r.png",
                                                                           scores={"psnr": math.inf})])
    assert results_json(report)["images"][0]["psnr"] is None
    json.dumps(results_json(report), allow_nan=False)
    assert ",inf," in results_csv(report) and "| m | inf | 1 |" in table_markdown(report)


def test_a_report_replaces_only_its_own_files(tmp_path) -> None:
    check_report_files(tmp_path, overwrite=False, resuming=False)  # nothing there yet
    (tmp_path / "table.md").write_text("my notes")
    with pytest.raises(OutputError, match=r"table\.md already exists"):
        check_report_files(tmp_path, overwrite=False, resuming=False)
    with pytest.raises(OutputError, match=r"table\.md already exists"):
        check_report_files(tmp_path, overwrite=False, resuming=True)  # not ours: no results.json of eval
    (tmp_path / "results.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(OutputError, match="is not a report of 'diffrestore eval'"):
        check_report_files(tmp_path, overwrite=False, resuming=True)
    check_report_files(tmp_path, overwrite=True, resuming=False)

    folder = tmp_path / "report"
    write_report(folder, _report())
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "results.json", "table.md"]
    check_report_files(folder, overwrite=False, resuming=True)  # ours: a resumed run may replace it
    with pytest.raises(OutputError, match="already exist"):
        check_report_files(folder, overwrite=False, resuming=False)
    with pytest.raises(OutputError, match="is a file"):
        check_report_files(folder / "table.md", overwrite=True, resuming=False)
