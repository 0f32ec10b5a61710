"""diffrestore.tasks.spec: a resolved Task is an immutable value, and its measurement of a real file and of a
simulation."""

from __future__ import annotations

import pytest
import torch
from cli_support import write_image

from diffrestore.tasks import resolve_task


def test_a_resolved_task_is_immutable() -> None:
    task = resolve_task("denoise", {})
    with pytest.raises(TypeError):
        task.params["noise"] = "poisson"  # type: ignore[index]
    with pytest.raises(AttributeError):
        task.noise_sigma = 0.5  # type: ignore[misc]
    estimated = task.with_noise_sigma(0.02)
    assert estimated.noise_sigma == 0.02 and task.noise_sigma is None and task.estimates_noise
    assert task.with_noise_sigma(None) is task


def test_measurement_of_a_real_file_and_of_a_simulation(tmp_path) -> None:
    from diffrestore import imageio

    loaded = imageio.load_image(write_image(tmp_path / "a.png"))
    sr = resolve_task("superres", {"scale": 2, "noise_sigma": 0.025})
    op = sr.operator((3, 40, 48), seed=0)
    y, ref = sr.measurement(op, sr.noise_model(), loaded.tensor, channels=3, generator=torch.Generator())
    assert ref is None and torch.equal(y, loaded.tensor)  # the file IS the measurement
    simulated = resolve_task("superres", {"scale": 2}, simulate=True)
    op_sim = simulated.operator((3, 20, 24), seed=0)
    y_sim, ref_sim = simulated.measurement(op_sim, simulated.noise_model(), loaded.tensor, channels=3,
                                           generator=torch.Generator().manual_seed(0))
    assert tuple(y_sim.shape) == (1, 3, 10, 12) and torch.equal(ref_sim, loaded.tensor)
    gray = loaded.tensor.mean(dim=1, keepdim=True)
    denoise = resolve_task("denoise", {"noise_sigma": 0.1})
    gray_op = denoise.operator((3, 20, 24), seed=0, input_channels=1)
    y_gray, _ = denoise.measurement(gray_op, denoise.noise_model(), gray, channels=3, generator=torch.Generator())
    # A gray file on an RGB prior is one look at its luminance: y stays one channel, A = identity o luminance.
    assert torch.equal(y_gray, gray) and gray_op.output_shape == (1, 20, 24) and gray_op.image_shape == (3, 20, 24)
