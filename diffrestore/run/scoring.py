"""Scores of simulated runs (``--metrics``): the weights a metric needs checked before the prior loads, the
``Scorer`` the engine and ``diffrestore eval`` share, how a score reads on an output line and what the JSON says
each metric means. The metrics themselves are the catalogue's (``metrics/catalogue.py``); no torch at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

#: how each metric reads on an output line: (label, digits, unit)
_SHOWN = {"psnr": ("PSNR", 2, " dB"), "ssim": ("SSIM", 4, "")}


def metric_label(name: str) -> str:
    """``psnr`` -> ``PSNR``, ``lpips-vgg`` -> ``LPIPS-VGG``: the name as tables and output lines print it."""
    return _SHOWN.get(name, (name.upper(), 4, ""))[0]


def format_score(name: str, value: float | None, *, unit: bool = True) -> str:
    """One score as printed: PSNR with 2 decimals (and dB), the others with 4; "inf" for identical images."""
    if value is None:
        return "-"
    _, digits, suffix = _SHOWN.get(name, (name, 4, ""))
    text = "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return text + (suffix if unit else "")


def score_text(scores: dict[str, float]) -> str:
    """The scores of one image for its output line: ``\\tPSNR 23.41 dB\\tSSIM 0.8123\\tLPIPS 0.2150``."""
    return "".join(f"\t{metric_label(name)} {format_score(name, value)}" for name, value in scores.items())


def describe_metrics(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What each metric means, for --json and eval's results: kind, direction, range convention, summary."""
    from ..metrics.catalogue import describe

    described = {}
    for name in names:
        info = describe(name)
        described[name] = {"kind": info.kind, "higher_is_better": info.higher_is_better,
                           "convention": info.convention, "summary": info.summary}
    return described


def check_metric_weights(names: Iterable[str], *, registry: Any = None, offline: bool | None = None,
                         echo: Callable[[str], None] | None = None) -> None:
    """Every file the metrics' networks need, in the cache (downloaded now, unless offline) before the prior
    loads: a missing one fails the run at once (ModelError, exit 3; offline, its line names
    ``diffrestore models download NAME``), not after the first image was restored."""
    from ..metrics.catalogue import required_models
    from ..registry import ensure_local

    for model in required_models(names):
        ensure_local(model, offline=offline, registry=registry, echo=echo)


def check_image_sizes(names: Iterable[str], images: Iterable[tuple[Any, tuple[int, int]]], *,
                      flag: str = "--metrics") -> None:
    """Every (image, (width, height)) against the smallest side of each metric's network (``MetricInfo.min_side``):
    UsageError (exit 2) naming the first image that is too small, its size and the metric.

    Called where the sizes are known and nothing has loaded yet (the engine after reading its inputs, eval before
    the first method runs, the API before the prior loads), because LPIPS's network would stop only when it
    scores the finished restoration, and that restoration would be lost. The run is refused rather than the metric
    skipped for that image with a note: a summary or table whose metric means cover different images (LPIPS over
    n - 1 images beside PSNR over n) compares different sets while looking like one, and as nothing has run yet,
    leaving out the metric or the image costs nothing but the command again."""
    from ..metrics.catalogue import check_image_size

    names = tuple(names)
    if not names:
        return
    for image, size in images:
        check_image_size(names, size, str(image), flag=flag)


def make_scorer(names: Iterable[str], *, registry: Any = None, device: Any = "cpu") -> Any:
    """The catalogue's ``Scorer`` for ``names`` on ``device`` (its networks load on first use)."""
    from ..metrics.catalogue import Scorer

    return Scorer(tuple(names), registry=registry, device=str(device))


def first_scores(scores: dict[str, list[float]]) -> dict[str, float]:
    """The scores of a batch of one image, as {name: value}."""
    return {name: float(values[0]) for name, values in scores.items()}
