"""Where and in what precision a run computes, and where its random numbers come from.

Rules (docs/architecture.md):
- ``device="auto"`` picks cuda, then mps, then cpu.
- ``dtype="auto"`` is fp16 on CUDA and float32 elsewhere; fp16 on the CPU is refused (most CPU kernels have
  no half implementation and the ones that do are slow), bf16 on the CPU is allowed where torch supports it.
- Every random number comes from a ``torch.Generator`` on the CPU; tensors are drawn there and moved, so the
  same seed gives the same numbers whatever device runs the network.
- One generator per posterior sample, seeded from (run seed, the image's identity, the sample's index): the
  identity is a digest of the image's pixels, not its position, so a result never depends on the batch size,
  the input order, or which process of a multi-GPU run restored it. Sample k of ``-n 4`` is the sample of
  ``-n 1`` for k = 1.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ..errors import DeviceError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")
#: torch.Generator.manual_seed takes at most 64 bits; derived seeds use 63 so they are valid everywhere.
_SEED_MASK = (1 << 63) - 1


def available_devices() -> dict[str, bool]:
    """Which device classes torch can use here."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps is not None and mps.is_available()),
    }


#: the device classes a run can use; ``--device`` names one of them, with an optional ``:N`` index
DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_HINT = "use auto, cpu, cuda, cuda:N or mps"
_FP16_CPU = "fp16 is not supported on the CPU"
_FP16_CPU_HINT = "use --dtype fp32 (or bf16), or run on cuda/mps"


def check_device_name(name: str | None) -> str:
    """``--device`` normalised (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), or DeviceError for a name no run
    can use. Torch-free, so a misspelt device fails at once; whether the device exists here is
    ``resolve_device``'s to say (that needs torch)."""
    name = (name or "auto").strip().lower()
    kind, sep, index = name.partition(":")
    if name == "auto" or (kind in DEVICE_TYPES and (not sep or (index.isascii() and index.isdigit()))):
        return name
    raise DeviceError(f"unknown --device '{name}'", hint=_DEVICE_HINT)


def check_dtype_name(name: str | None, device: str | None = None) -> str:
    """``--dtype`` normalised, or DeviceError for an unknown name, or fp16 on a device named as the CPU.
    Torch-free; with ``--device auto`` the CPU case is ``resolve_dtype``'s to say."""
    name = (name or "auto").strip().lower()
    if name not in DTYPE_NAMES:
        raise DeviceError(f"unknown --dtype '{name}'", hint=f"use one of {', '.join(DTYPE_NAMES)}")
    if name == "fp16" and check_device_name(device).partition(":")[0] == "cpu":
        raise DeviceError(_FP16_CPU, hint=_FP16_CPU_HINT)
    return name


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N | mps`` into a usable ``torch.device`` or raise DeviceError."""
    name = check_device_name(name)
    import torch

    have = available_devices()
    if name == "auto":
        for candidate in ("cuda", "mps"):
            if have[candidate]:
                return torch.device(candidate)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):  # a digit string torch still refuses (an index past its range)
        raise DeviceError(f"unknown --device '{name}'", hint=_DEVICE_HINT) from None
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
    name = check_dtype_name(name)
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name == "fp32":
        return torch.float32
    if name == "fp16":
        if device.type == "cpu":
            raise DeviceError(_FP16_CPU, hint=_FP16_CPU_HINT)
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


# ------------------------------------------------------------------------------------------------ random streams


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: draw on the CPU, then move, so results do not depend on the device's RNG.

    Seeds of any size are accepted: those outside torch's 64-bit range are folded by a digest."""
    import torch

    seed = int(seed)
    if not -(1 << 63) <= seed < (1 << 64):  # torch's range; a bigger --seed would raise a raw OverflowError
        seed = derive_seed(seed, "fold")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed that depends on ``seed`` and ``parts`` only (BLAKE2b; stable across runs and machines)."""
    text = ":".join(str(p) for p in (int(seed), *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & _SEED_MASK


def image_identity(image: torch.Tensor) -> str:
    """A digest of an image's shape and float32 pixels: the same picture gets the same random streams wherever
    it stands in a batch, a folder or a shard (two identical pictures share them, which is what "the same input,
    the same seed, the same result" means)."""
    import torch

    pixels = image.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(pixels.shape)).encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


def sample_generators(seed: int, identity: str, count: int) -> list[torch.Generator]:
    """One generator per posterior sample of one image: sample k draws from (seed, identity, k) only."""
    return [make_generator(derive_seed(seed, identity, "sample", k)) for k in range(count)]


def measurement_generator(seed: int, identity: str) -> torch.Generator:
    """The generator of an image's simulated measurement noise (--simulate), independent of its samples'."""
    return make_generator(derive_seed(seed, identity, "measurement"))
