"""Device and dtype resolution, seeding, and the progress callback type.

Rules (see DESIGN.md):
- ``device="auto"`` picks cuda, then mps, then cpu.
- ``dtype="auto"`` is fp16 on CUDA and float32 elsewhere; fp16 on the CPU is refused (most CPU kernels have
  no half implementation and the ones that do are slow), bf16 on the CPU is allowed where torch supports it.
- Every random number comes from a ``torch.Generator`` seeded on the CPU; tensors are drawn there and moved,
  so the same seed gives the same numbers whatever device runs the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch

#: progress(done, total, what): called by solvers after each step; never prints by itself.
ProgressCallback = Callable[[int, int, str], None]

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")


def available_devices() -> dict[str, bool]:
    """Which device classes torch can use here."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps is not None and mps.is_available()),
    }


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N | mps`` into a usable ``torch.device`` or raise DeviceError."""
    import torch

    name = (name or "auto").strip().lower()
    have = available_devices()
    if name == "auto":
        for candidate in ("cuda", "mps"):
            if have[candidate]:
                return torch.device(candidate)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type not in have:
        raise DeviceError(f"unsupported device '{name}'", hint="use auto, cpu, cuda, cuda:N or mps")
    if not have[device.type]:
        raise DeviceError(f"device '{name}' is not available on this machine", hint="use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)",
            hint="use cuda:0",
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype the network runs in. Solver state always stays float32."""
    import torch

    name = (name or "auto").strip().lower()
    if name not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype '{name}'", hint=f"use one of {', '.join(DTYPE_NAMES)}")
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name == "fp32":
        return torch.float32
    if name == "fp16":
        if device.type == "cpu":
            raise DeviceError(
                "fp16 is not supported on the CPU", hint="use --dtype fp32 (or bf16), or run on cuda/mps"
            )
        return torch.float16
    # bf16
    if device.type == "mps" and not _mps_supports_bf16():
        raise DeviceError("bf16 is not supported on this MPS device", hint="use --dtype fp16 or fp32")
    return torch.bfloat16


def _mps_supports_bf16() -> bool:
    import torch

    try:
        torch.zeros(1, dtype=torch.bfloat16, device="mps")
    except (RuntimeError, TypeError):
        return False
    return True


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: draw on the CPU, then move, so results do not depend on the device's RNG."""
    import torch

    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator


def randn(shape, generator: torch.Generator, device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``."""
    import torch

    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=device or noise.device, dtype=dtype or torch.float32)
