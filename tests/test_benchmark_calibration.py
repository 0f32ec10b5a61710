"""benchmarks/calibration.py's yardsticks: with N exact samples of a Gaussian the mean +- z std interval covers
``exact_share`` (76 % at 90 % nominal for N = 4, not 90 %), and the predictive interval covers the nominal level;
the reliability diagram draws that reference."""

from __future__ import annotations

import json

import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.mark.parametrize("samples", [4, 8])
def test_exact_samples_cover_what_the_yardsticks_say(samples: int) -> None:
    calibration = load_benchmark("calibration")
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(samples, 1, 200_000, generator=g, dtype=torch.float64)  # N samples per pixel
    truth = torch.randn(1, 1, 200_000, generator=g, dtype=torch.float64)  # the truth: one more draw
    z = calibration.coverage(draws, truth)[0.9]
    assert z == pytest.approx(calibration.exact_share(samples, 0.9), abs=0.005)
    assert z < 0.86  # the std of a few samples is noisy: mean +- 1.645 std covers well under 90 %
    predictive = calibration.coverage(draws, truth, levels=calibration.predictive_levels(samples))
    assert predictive[0.9] == pytest.approx(0.9, abs=0.005) and predictive[0.5] == pytest.approx(0.5, abs=0.005)
    assert calibration.exact_share(4, 0.9) == pytest.approx(0.762, abs=0.001)


def test_the_reliability_diagram_draws_the_exact_samplers_curve(tmp_path, capsys) -> None:
    diagram = load_benchmark("reliability_diagram")
    levels = {f"{p / 20:.2f}": p / 20 * 0.8 for p in range(1, 20)}
    rows = [{"image": "rocket", "task": "sr4", "pixels": "all", "samples": 4, "coverage": levels,
             "predictive": levels}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    for extra in ([], ["--predictive"]):
        assert diagram.main([str(tmp_path / "rows.json"), "-o", str(tmp_path / "d.png"), *extra]) == 0
        assert (tmp_path / "d.png").stat().st_size > 0
    assert "sr4: 90 % intervals cover 72.0 %" in capsys.readouterr().out
    reference = dict(diagram.exact_curve(4))
    assert reference[0.9] == pytest.approx(0.762, abs=0.001)
