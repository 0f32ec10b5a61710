"""Compressed-sensing MRI (``diffrestore mri``): one ``TaskSpec``. What the user's file is:

    real use     undersampled Cartesian k-space: a complex ``.npy`` (H, W) or (coils, H, W), or a fastMRI ``.h5``
                 (``kspace`` (slices, coils, H, W) or (slices, H, W); ``--slice N``, default 0), zeros where not
                 sampled (imageio/kspace.py). The mask is that zero pattern (or ``--mask FILE``); the coil maps come
                 from ``--coil-maps FILE``, ``acs`` (the k-space centre) or ``espirit`` (sigpy); one coil needs none.
    --simulate   a magnitude image (PNG / TIFF 8 or 16 bit, a float ``.npy`` or TIFF, an MR DICOM): a smooth phase
                 is added (``operators.mri_phase``), its k-space simulated through ``--coils`` birdcage maps and a
                 ``--sampling`` mask at ``--acceleration``, restored and scored on the magnitude.

Intensities. The prior's tensor is the complex image divided by the 99th percentile of its magnitude, as two
channels (``operators.mri_phase``). A real input's scale is the 99th percentile of ``|zero-filled|`` (the MVUE with
maps), InverseBench's; the k-space is divided by it before restoring, the output multiplied back, and the factor
recorded (a note, and ``scale`` in --json's ``operator``). ``--noise-sigma`` is the std of the k-space noise per
real and imaginary part on that scale (the tensor's own units). Scores are InverseBench's: PSNR / SSIM of the
magnitude against the reference magnitude, data range its maximum, the prediction clipped to [0, max].
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImageReadError, OutputError, UsageError
from .flags import Flag
from .mri_inputs import MRIInput, Sampling, read_magnitude_input, read_measured, sampling_info, simulated_reference
from .spec import NOISE_SIGMA_RANGE, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Std of the k-space noise --simulate adds (per real / imaginary part, on the 99th-percentile scale), and what a
#: real scan is assumed to carry (its noise is not estimated)
MRI_NOISE_SIGMA = 0.01
SAMPLINGS = ("random", "equispaced", "gaussian", "poisson")
_KSPACE = (".npy", ".h5", ".hdf5")
_PICTURES = (".png", ".tif", ".tiff")
_DICOM = (".dcm", ".dicom")
_OUTPUTS = (".png", ".tif", ".tiff", ".npy", ".h5", ".hdf5")
_SIMULATE_ONLY = ("sampling", "acceleration", "center_fraction", "coils")
#: --coil-maps values that estimate the maps from the k-space itself
MAP_ESTIMATES = ("espirit", "acs")


def parse_coil_maps(value: Any) -> str | Path:
    """``--coil-maps``: espirit, acs, or a file."""
    text = str(value).strip()
    return text.lower() if text.lower() in MAP_ESTIMATES else Path(text)


class MRI(TaskSpec):
    name = "mri"
    summary = ("Compressed-sensing MRI: a complex image from undersampled Cartesian k-space (complex .npy or "
               "fastMRI .h5; --simulate: from a magnitude PNG / TIFF / DICOM). --method zero-filled, sense, "
               "cs-wavelet or cs-tv are the classical reconstructions.")
    example = "diffrestore mri scan.h5 --slice 12 --coil-maps maps.npy -o slice12.png"
    input_kind = "k-space (or a magnitude image with --simulate)"
    simulated_noise_sigma = MRI_NOISE_SIGMA
    noise_estimable = False
    default_model = "mri-phantom"
    flags = (
        Flag("slice", "--slice", int, "The slice of an .h5 file to restore (0 is the first). Default: every slice, "
             "each to its own output (scan_000_mri.png, scan_001_mri.png, ...).", low=0, metavar="N"),
        Flag("coil_maps", "--coil-maps", str, "Coil sensitivity maps: a file (complex (coils, H, W) .npy or .h5); "
             "acs (estimated from the fully sampled k-space centre: its low-resolution coil images over their root "
             "sum of squares); or espirit (ESPIRiT from that centre; needs sigpy). One coil needs none.",
             metavar="FILE|acs|espirit", parse=parse_coil_maps),
        Flag("mask", "--mask", Path, "The k-space sampling mask: a 0/1 .npy (H, W) or (W,) of sampled columns, or a "
             "picture (white = sampled). Default: the k-space's own zero pattern; with --simulate, --sampling.",
             metavar="FILE"),
        Flag("sampling", "--sampling", str, "--simulate's mask: random, equispaced or gaussian lines (whole "
             "k-space columns with a fully sampled centre), or a 2-D poisson disc.", default="random",
             choices=SAMPLINGS, metavar="|".join(SAMPLINGS)),
        Flag("acceleration", "--acceleration", float, "--simulate's acceleration: k-space points over sampled "
             "points (the realised one is reported).", default=4.0, low=1.0, high=64.0, metavar="R"),
        Flag("center_fraction", "--center-fraction", float, "--simulate's fully sampled centre, as a fraction of "
             "the lines. Default: 0.08 up to 6x, else 0.04.", low=0.0, high=1.0, low_open=True, metavar="F"),
        Flag("coils", "--coils", int, "--simulate's receive coils (smooth birdcage maps).", default=1, low=1,
             high=64, metavar="C"),
        Flag("save_complex", "--save-complex", bool, "Also write the complex image beside the output, as "
             "<output>.npy (complex64, the data's scale)."),
    )

    @classmethod
    def all_flags(cls) -> tuple[Flag, ...]:
        return (*cls.flags,
                Flag("noise", "--noise", str, "Noise of the k-space: gaussian (--noise-sigma) or none.",
                     default="gaussian", choices=("gaussian", "none"), metavar="gaussian|none"),
                Flag("noise_sigma", "--noise-sigma", str, show_default=False, metavar="SIGMA",
                     help="Std of the complex Gaussian noise of the k-space per real and imaginary part, on the "
                     "scale where the image's 99th-percentile magnitude is 1. Default "
                     f"{MRI_NOISE_SIGMA:g}, simulated and assumed alike."))

    # ------------------------------------------------------------------------------------------ the flags

    def check(self, params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        params["simulated"] = simulated
        if "noise_sigma" in given:
            if params["noise_sigma"] == "auto":
                raise UsageError("--noise-sigma auto cannot be estimated from k-space",
                                 hint=f"give a number (default {MRI_NOISE_SIGMA:g})")
            NOISE_SIGMA_RANGE.check(float(params["noise_sigma"]))
        if simulated:
            for name in ("slice", "coil_maps"):
                if name in given:
                    raise UsageError(f"--{name.replace('_', '-')} applies to k-space inputs, not to --simulate",
                                     hint="--simulate makes its own coils: --coils C")
        else:
            extra = [f"--{n.replace('_', '-')}" for n in _SIMULATE_ONLY if n in given]
            if extra:
                raise UsageError(f"{', '.join(extra)} applies to --simulate; a k-space file has its own sampling",
                                 hint="add --simulate, or give --mask FILE for another mask")
        drawn = [f"--{n.replace('_', '-')}" for n in ("sampling", "acceleration", "center_fraction") if n in given]
        if params["mask"] is not None and drawn:
            raise UsageError(f"--mask gives the sampling; {', '.join(drawn)} would draw another", hint="give one")
        if params["mask"] is not None and not Path(params["mask"]).is_file():
            raise UsageError(f"--mask file not found: {params['mask']}")
        maps = params["coil_maps"]
        if isinstance(maps, Path) and not maps.is_file():
            raise UsageError(f"--coil-maps file not found: {maps}", hint="give a .npy / .h5 file, acs or espirit")
        if maps == "espirit":
            from ..imageio.kspace import sigpy_module

            sigpy_module()

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"scale": "99th percentile of |reference| (per input)" if params.get("simulated")
                                else "99th percentile of |zero-filled| (per input)"}
        if params["mask"] is not None:
            info["mask"] = str(params["mask"])
        if params["coil_maps"] is not None:
            info["coil_maps"] = str(params["coil_maps"])
        if params["slice"] is not None:
            info["slice"] = params["slice"]
        for name in _SIMULATE_ONLY if params.get("simulated") else ():
            if params.get(name) is not None:
                info[name] = params[name]
        return info

    # ----------------------------------------------------------------------------------------- the input

    def input_extensions(self) -> tuple[str, ...]:
        return (*_KSPACE, *_PICTURES, *_DICOM)

    def read_input(self, path: Path) -> MRIInput:
        import torch

        from ..imageio import kspace

        suffix = path.suffix.lower()
        if kspace.is_h5(path):
            return MRIInput(tensor=torch.zeros(1, 0, 0, 0), path=path, format="h5", kspace=kspace.probe_kspace(path))
        if suffix == ".npy":
            import numpy as np

            array = np.load(path, allow_pickle=False, mmap_mode="r")
            if np.issubdtype(array.dtype, np.complexfloating):
                return MRIInput(tensor=torch.zeros(1, 0, 0, 0), path=path, format="npy",
                                kspace=kspace.probe_kspace(path))
        return read_magnitude_input(path)

    def input_parts(self, params: Mapping[str, Any], path: Path) -> int:
        """An .h5 file's slices, each restored to its own output, unless --slice picks one."""
        from ..imageio import kspace

        if params.get("simulated") or params["slice"] is not None or not kspace.is_h5(path) or not path.is_file():
            return 1
        try:
            return kspace.probe_kspace(path).slices
        except (UsageError, ImageReadError):  # said again when the file is read, failing that file alone
            return 1

    def read_input_part(self, path: Path, part: int) -> MRIInput:
        loaded = self.read_input(path)
        loaded.part = int(part)
        return loaded

    def check_input(self, params: Mapping[str, Any], loaded: Any, *, simulated: bool) -> None:
        if simulated:
            if loaded.kspace is not None:
                raise UsageError(f"{loaded.path} holds k-space, not a magnitude image",
                                 hint="drop --simulate to restore it, or give a picture to simulate from")
            simulated_reference(loaded)
            return
        if loaded.kspace is None:
            raise UsageError(f"{loaded.path} is a magnitude image, not k-space",
                             hint="add --simulate to restore it from simulated k-space, or give complex k-space "
                             "(.npy / .h5)")
        read_measured(params, loaded)

    # ----------------------------------------------------------------------------------------- the problem

    def mask_source(self, params: Mapping[str, Any], input_path: Path, extensions: tuple[str, ...]) -> Any:
        from .masks import MaskSource

        if params.get("simulated"):
            return MaskSource("k-space")  # one simulated sampling for every image of a size
        return MaskSource("k-space", input_path)  # each input its own operator (its maps, mask and scale)

    def build_mask(self, source: Any, params: Mapping[str, Any], size: tuple[int, int], *, seed: int,
                   loaded: Any = None) -> Sampling:
        if loaded is not None and loaded.sampling is not None:
            return loaded.sampling
        import torch

        from ..imageio import kspace
        from ..operators.mri import simulated_maps
        from ..operators.mri_masks import build_mask
        from ..run.runtime import make_generator

        width, height = size
        if params["mask"] is not None:
            mask, kind = torch.from_numpy(kspace.read_mask_file(Path(params["mask"]), (height, width))), "file"
        else:
            drawn = build_mask(str(params["sampling"]), (height, width), float(params["acceleration"]),
                               center_fraction=params["center_fraction"], generator=make_generator(seed))
            mask, kind = drawn.mask, drawn.kind
        coils = int(params["coils"])
        maps = simulated_maps(coils, (height, width)) if coils > 1 else None
        sampling = Sampling(mask=mask, maps=maps, kind=kind)
        if loaded is not None:
            loaded.sampling = sampling
            loaded.info.update(sampling_info(sampling, loaded.scale))
        return sampling

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "mri", {"mask": mask.mask, "coil_maps": mask.maps}

    def x_channels(self, input_channels: int, prior_channels: int) -> int:
        return 2

    def check_channels(self, input_channels: int, prior_channels: int, name: str) -> None:
        if prior_channels != 2:
            raise UsageError(f"mri restores complex images with a 2-channel (real, imaginary) prior; model {name} "
                             f"has {prior_channels}", hint="use --model mri-phantom, or --method sense")

    def to_output(self, x: torch.Tensor, input_channels: int) -> torch.Tensor:
        return x

    def noise_model(self, params: Mapping[str, Any], noise: str, sigma: float) -> Any:
        from .. import operators

        if noise == "none" or sigma == 0.0:
            return operators.build_noise("none")
        return operators.build_noise("gaussian", sigma=sigma / 2)  # GaussianNoise's std is 2 sigma

    def clamp_output(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def picture(self, x: torch.Tensor) -> torch.Tensor:
        from ..operators.mri import magnitude

        values = magnitude(x)
        return values / values.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1) * 2 - 1

    def as_array(self, image: torch.Tensor, like: Any) -> np.ndarray:
        """The complex image (H, W) complex64 in the data's units (the scale multiplied back), as ``.npy`` saves."""
        import torch

        from ..operators.mri import channels_to_complex

        scale = like.scale if like is not None else 1.0
        return (channels_to_complex(image.detach().to("cpu", torch.float32))[0, 0] * scale).numpy()

    def scored(self, x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InverseBench's convention on tensors the metrics read as [-1, 1]: magnitudes over the reference's
        maximum, the restored one clipped to [0, max]."""
        from ..operators.mri import magnitude

        target = magnitude(reference)
        peak = target.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        restored = (magnitude(x) / peak).clamp(0.0, 1.0)
        return restored * 2 - 1, target / peak * 2 - 1

    # ------------------------------------------------------------------------------------------ the output

    def check_output(self, path: Path, loaded: Any) -> None:
        if path.suffix.lower() not in _OUTPUTS:
            raise OutputError(f"output {path} has no extension mri can write",
                              hint="end it in .png (16-bit magnitude), .tif (float magnitude), .npy (complex) or "
                              ".h5 (fastMRI reconstruction)")

    def save_output(self, params: Mapping[str, Any], image: torch.Tensor, path: Path, *, like: Any,
                    overwrite: bool, protected: Any, output_set: Any = None) -> list[str]:
        """``.npy``: the complex image; ``.h5``: fastMRI's ``reconstruction``; a float TIFF: the magnitude, all on
        the data's scale; a PNG: the 16-bit magnitude, on a picture input's own [0, 1] scale (clipped), else over
        its maximum. ``--save-complex`` adds ``<output>.npy``."""
        import numpy as np
        import torch

        from .. import imageio
        from ..imageio import kspace
        from ..operators.mri import channels_to_complex
        from .medical import _write_file

        self.check_output(path, like)
        z = (channels_to_complex(image.detach().to("cpu", torch.float32))[0, 0] * like.scale).numpy()
        magnitude = np.abs(z).astype(np.float32)
        suffix, notes = path.suffix.lower(), []
        write = {"like": like, "overwrite": overwrite, "protected": protected, "output_set": output_set}
        if suffix == ".npy":
            _write_file(path, kspace.complex_npy_bytes(z), **write)
        elif suffix in kspace.H5_SUFFIXES:
            _write_file(path, kspace.reconstruction_h5_bytes(magnitude), **write)
        elif suffix in (".tif", ".tiff") and like.bit_depth == 32:
            from ..imageio.dicom import array_file_bytes

            _write_file(path, array_file_bytes(magnitude, suffix), **write)
        else:
            if like.magnitude is not None and like.bit_depth in (8, 16):  # a picture's own scale
                grey = magnitude
                if (clipped := int((grey > 1).sum())):
                    notes.append(f"{clipped} pixel(s) above the input's white clipped")
            else:
                peak = float(magnitude.max())
                grey = magnitude / peak if peak > 0 else magnitude
                notes.append(f"magnitude divided by its maximum {peak:.4g} (.tif or .npy keep the data's scale)")
            tensor = torch.from_numpy(np.clip(grey, 0, 1).astype(np.float32) * 2 - 1)[None, None]
            notes += list(imageio.save_image(tensor, path, overwrite=overwrite, protected=protected, bit_depth=16,
                                             output_set=output_set).notes)
        if params["save_complex"] and suffix != ".npy":
            _write_file(path.with_suffix(".npy"), kspace.complex_npy_bytes(z), **write)
        return notes


MRI_TASKS: tuple[TaskSpec, ...] = (MRI(),)
