"""The metrics on the real published weights, where they are in the cache (`diffrestore models download NAME`);
skipped otherwise, never faked. CI has no network, so these run on machines that fetched the files."""

from __future__ import annotations

import pytest
import torch

from diffrestore.metrics.catalogue import Scorer, describe
from diffrestore.registry import cache_state, load_registry


def _needs(*names: str) -> None:
    registry = load_registry()
    missing = [m for n in names for m in describe(n).models if cache_state(registry.get(m)) != "yes"]
    if missing:
        pytest.skip(f"weights not in the cache: {', '.join(sorted(set(missing)))}")


def _noisy(seed: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # a smooth reference (low-frequency pattern), so that noise is what the networks see
    base = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=64, mode="bilinear")
    reference = base * 2 - 1
    return (reference + sigma * torch.randn(reference.shape, generator=g)).clamp(-1, 1), reference


@pytest.mark.parametrize("name", ["lpips", "lpips-vgg", "lpips-piq"])
def test_lpips_on_real_weights_orders_noise_levels(name: str) -> None:
    _needs(name)
    scorer = Scorer([name])
    near, reference = _noisy(0, 0.05)
    far, _ = _noisy(0, 0.4)
    assert scorer.score_images(reference, reference)[name] == [0.0, 0.0]
    d_near, d_far = scorer.score_images(near, reference)[name], scorer.score_images(far, reference)[name]
    assert all(0 < a < b for a, b in zip(d_near, d_far, strict=True))
    assert all(b < 2.0 for b in d_far)  # LPIPS of natural-scale differences stays well below 2


@pytest.mark.parametrize("name", ["fid", "fid-torchvision"])
def test_fid_on_real_weights_grows_with_noise(name: str) -> None:
    _needs(name)
    values = []
    for sigma in (0.05, 0.5):
        scorer = Scorer([name])
        for seed in range(2):
            noisy, reference = _noisy(seed, sigma)
            scorer.score_images(noisy, reference)
        values.append(scorer.set_scores()[name]["value"])
    assert 0 <= values[0] < values[1]
