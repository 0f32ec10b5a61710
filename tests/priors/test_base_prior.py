"""diffrestore.priors.base: the Prior's dtype guard (fp16 refused on the CPU, bf16 runs) and its size and
channel guards, on a tiny diffusers pixel prior."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from test_vp import tiny_unet

from diffrestore.errors import DeviceError, UsageError
from diffrestore.priors.diffusers_pixel import DiffusersPixelPrior


def test_fp16_on_cpu_is_refused_and_bf16_runs() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        DiffusersPixelPrior(tiny_unet(), scheduler, dtype=torch.float16)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    ref = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None).denoise(x, 2.0)
    try:
        prior = DiffusersPixelPrior(tiny_unet(), scheduler, dtype=torch.bfloat16, native_size=None)
        out = prior.denoise(x, 2.0)
    except RuntimeError as exc:  # pragma: no cover - old torch builds without CPU bf16 kernels
        pytest.skip(f"bf16 not supported by this torch on the CPU: {exc}")
    assert out.dtype == torch.float32 and prior.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1 * ref.abs().max() + 0.05  # same network, bf16 rounding only


def test_size_and_channel_guards_explain_themselves() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    fixed = DiffusersPixelPrior(tiny_unet(), scheduler)  # native size from the config: 8 x 8
    fixed.check_image_shape((1, 8, 8))
    with pytest.raises(UsageError, match=r"native size 8x8 but the image is 16x12.*tiling"):
        fixed.check_image_shape((1, 12, 16))
    with pytest.raises(UsageError, match="models 1-channel images but the image has 3"):
        fixed.check_image_shape((3, 8, 8))
    free = DiffusersPixelPrior(tiny_unet(), scheduler, native_size=None)
    free.check_image_shape((1, 12, 16))
    with pytest.raises(UsageError, match="divisible by 2"):
        free.check_image_shape((1, 9, 8))
