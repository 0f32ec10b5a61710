"""The decoded inputs of ``diffrestore mri`` (tasks/mri.py): k-space read with its mask and coil maps and divided by
its 99th-percentile scale, or a magnitude picture given a smooth phase for --simulate. Torch is imported inside
functions (resolving the task stays torch-free).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True, eq=False)
class Sampling:
    """What the MRI operator of one input is built from (``TaskSpec.build_mask``'s value for this task)."""

    mask: torch.Tensor  # bool (H, W), True = sampled
    maps: torch.Tensor | None  # complex (C, H, W), or None for one coil of ones
    kind: str


@dataclass(eq=False)
class MRIInput:
    """A decoded MRI input. ``tensor``: the measurement ``y`` (1, 2C, H, W) on the 99th-percentile scale for
    k-space, the complex reference (1, 2, H, W) for --simulate; ``scale`` multiplies it back."""

    tensor: torch.Tensor
    path: Path
    format: str  # "npy" | "h5" | "png" | "tiff" | "dicom"
    bit_depth: int = 32
    kspace: Any = None  # imageio.kspace.KSpaceFile of a k-space input
    magnitude: np.ndarray | None = None  # a --simulate input's magnitude (H, W)
    sampling: Sampling | None = None
    part: int | None = None  # the slice of a several-slice .h5 restored without --slice
    scale: float = 1.0
    notes: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    alpha: Any = None
    icc_profile: Any = None
    exif: Any = None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tensor.shape[-1]), int(self.tensor.shape[-2])

    @property
    def channels(self) -> int:
        return int(self.tensor.shape[1])



def sampling_info(sampling: Sampling, scale: float) -> dict[str, Any]:
    sampled = int(sampling.mask.sum())
    accel = math.inf if sampled == 0 else sampling.mask.numel() / sampled
    return {"scale": scale, "acceleration": round(accel, 4), "mask": sampling.kind,
            "coils": 1 if sampling.maps is None else int(sampling.maps.shape[0])}


def read_measured(params: Mapping[str, Any], loaded: MRIInput) -> None:
    """Read a k-space input's slice, mask and maps; divide it by its scale (module doc)."""
    import torch

    from ..imageio import kspace
    from ..operators.mri import MultiCoilMRI, channels_to_complex, complex_to_channels
    from ..operators.mri_phase import scale_from_image

    info = loaded.kspace
    if params["slice"] is not None and info.format != "h5":
        raise UsageError(f"--slice applies to .h5 files; {loaded.path.name} holds one slice")
    index = loaded.part if loaded.part is not None else params["slice"]
    values = kspace.read_kspace(info, index)
    notes = [f"slice {index or 0} of {info.slices}"] if info.slices > 1 else []
    if params["mask"] is not None:
        mask, kind = kspace.read_mask_file(Path(params["mask"]), info.size), "file"
    else:
        mask, kind = kspace.mask_from_zeros(values), "zeros"
    maps_flag = params["coil_maps"]
    if maps_flag is None:
        if info.coils > 1:
            raise UsageError(f"{loaded.path.name} has {info.coils} coils: their sensitivity maps are needed",
                             hint="give --coil-maps FILE (complex (coils, H, W)), acs or espirit")
        maps = None
    else:
        if maps_flag == "espirit":
            maps = kspace.espirit_maps(values * mask)
        elif maps_flag == "acs":
            from ..operators.mri import acs_maps

            maps = acs_maps(torch.from_numpy(values * mask), torch.from_numpy(mask)).numpy()
        else:
            maps = kspace.read_coil_maps(Path(maps_flag), slice_index=index)
        kspace.check_maps(maps, values, str(maps_flag), loaded.path)
    k = torch.from_numpy(values) * torch.from_numpy(mask)
    maps_t = None if maps is None else torch.from_numpy(maps)
    op = MultiCoilMRI((2, *mask.shape), torch.from_numpy(mask), maps_t)
    scale = scale_from_image(channels_to_complex(op.zero_filled(complex_to_channels(k[None]))))
    loaded.tensor = complex_to_channels((k / scale)[None]).to(torch.float32)
    loaded.scale = scale
    loaded.sampling = Sampling(mask=torch.from_numpy(mask), maps=maps_t, kind=kind)
    loaded.info = sampling_info(loaded.sampling, scale)
    accel = loaded.info["acceleration"]
    notes.append(f"{int(mask.sum())} of {mask.size} k-space points sampled ({kind}): acceleration {accel:.2f}")
    notes.append(f"k-space divided by {scale:.4g} (the 99th percentile of |zero-filled|), multiplied back on output")
    loaded.notes = (*loaded.notes, *notes)


def simulated_reference(loaded: MRIInput) -> None:
    """A magnitude image -> the complex reference with a smooth phase (seeded by the pixels: the same file gets
    the same phase), on the 99th-percentile scale."""
    import numpy as np
    import torch

    from ..operators.mri_phase import smooth_phase, to_prior
    from ..run.runtime import make_generator

    magnitude = np.ascontiguousarray(loaded.magnitude, dtype=np.float32)
    seed = int.from_bytes(hashlib.sha256(magnitude.tobytes()).digest()[:7], "little")
    height, width = magnitude.shape
    phase = smooth_phase(height, width, generator=make_generator(seed))
    z = torch.polar(torch.from_numpy(magnitude), phase)
    tensor, scale = to_prior(z)
    loaded.tensor, loaded.scale = tensor, scale
    loaded.info = {"scale": scale}


def read_magnitude_input(path: Path) -> MRIInput:
    import torch

    from ..imageio import kspace

    values, fmt, depth, notes = kspace.read_magnitude(path)
    return MRIInput(tensor=torch.zeros(1, 2, *values.shape), path=path, format=fmt, bit_depth=depth,
                    magnitude=values, notes=notes)
