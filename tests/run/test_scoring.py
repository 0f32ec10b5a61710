"""How scores read on an output line and in --json."""

from __future__ import annotations

import math

from diffrestore.run.scoring import describe_metrics, format_score, score_text


def test_output_line_scores() -> None:
    assert score_text({"psnr": 23.456, "ssim": 0.81234}) == "\tPSNR 23.46 dB\tSSIM 0.8123"
    assert score_text({"lpips": 0.21}) == "\tLPIPS 0.2100"
    assert format_score("psnr", math.inf) == "inf dB" and format_score("ssim", None) == "-"


def test_each_metric_says_its_convention() -> None:
    described = describe_metrics(["psnr", "lpips", "fid"])
    assert described["psnr"]["higher_is_better"] and not described["lpips"]["higher_is_better"]
    assert described["fid"]["kind"] == "set" and all(d["convention"] for d in described.values())
