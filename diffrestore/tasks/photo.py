"""The photo tasks: one ``TaskSpec`` each. What the user's file is, per task (outside ``--simulate``, where the file
is always the clean image x):

    inpaint          the picture with holes (pixels under the mask are ignored)
    superres         the low-resolution picture; the result is ``scale`` times larger
    deblur           the blurred picture
    denoise          the noisy picture
    colorize         a grayscale picture (an RGB file is first reduced to its luminance)
    phase-retrieval  always simulated: a Fourier magnitude is not a picture, so the file is the clean object
    hdr              the clipped (over-exposed) picture; the result recovers ``scale`` times the range
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, UsageError
from .flags import Flag
from .masks import MAX_BLEND, MaskSource, find_mask_in_dir, mask_value, parse_box
from .spec import TaskSpec

if TYPE_CHECKING:
    import torch

SR_SCALES = (2, 3, 4, 8)
#: the largest blur kernel: past a few thousand pixels it is wider than the photos it would blur (and 100001 alone
#: would be a 40 GB kernel)
MAX_KERNEL_SIZE = 4095


class Inpaint(TaskSpec):
    name = "inpaint"
    summary = ("Fill missing regions. The mask comes from --mask, --mask-dir, --box, --random-fraction or the "
               "input's transparent pixels.")
    example = "diffrestore inpaint photo.png --mask holes.png"
    keeps_known_pixels = True
    flags = (
        Flag("mask", "--mask", Path, "Mask image of the same size: white = missing (to fill), black = known.",
             metavar="FILE", parse=mask_value),
        Flag("mask_dir", "--mask-dir", Path, "Folder of masks matched by file stem: photo.jpg uses DIR/photo.png "
             "(or photo_mask.png).", metavar="DIR"),
        Flag("box", "--box", tuple, "Fill a rectangle: left, top, width, height in pixels.", metavar="X,Y,W,H",
             parse=parse_box),
        Flag("random_fraction", "--random-fraction", float, "Fill a random share F of the pixels (drawn from "
             "--seed); mostly for --simulate.", metavar="F", low=0.0, high=1.0, low_open=True, high_open=True),
        Flag("invert_mask", "--invert-mask", bool, "Swap the mask's meaning (black = missing).", default=False),
        Flag("blend", "--blend", int, "Known pixels are kept exactly; PX > 0 feathers the seam over PX pixels inside "
             "the hole (real inputs; with --simulate the posterior sample is written as is).", default=0,
             metavar="PX", low=0, high=MAX_BLEND),
    )

    def check(self, params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        sources = [f"--{name.replace('_', '-')}" for name in ("mask", "mask_dir", "box", "random_fraction")
                   if name in given]
        if len(sources) > 1:
            raise UsageError(f"{' and '.join(sources)} cannot be combined", hint="give one mask source")
        if isinstance(params["mask"], Path) and not params["mask"].is_file():
            raise UsageError(f"mask file not found: {params['mask']}")
        if params["mask_dir"] is not None and not params["mask_dir"].is_dir():
            raise UsageError(f"mask folder not found: {params['mask_dir']}")
        if params["blend"] and simulated:
            raise UsageError("--blend applies to real inputs: with --simulate the posterior sample is written as is")

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        if mask is None:
            raise ValueError("inpaint needs a mask")
        return "inpaint", {"mask": mask}

    def measure_file(self, operator: Any, image: torch.Tensor, channels: int) -> torch.Tensor:
        from ..imageio import to_channels

        return operator(to_channels(image, channels))  # the pixels under the mask are dropped

    def mask_source(self, params: Mapping[str, Any], input_path: Path, extensions: tuple[str, ...]) -> MaskSource:
        if isinstance(params["mask"], Path):
            return MaskSource("file", params["mask"])
        if params["mask"] is not None:
            return MaskSource("array")
        if params["mask_dir"] is not None:
            found = find_mask_in_dir(params["mask_dir"], input_path.stem, extensions)
            if found is None:
                raise UsageError(f"no mask for {input_path.name} in {params['mask_dir']}",
                                 hint=f"expected {input_path.stem}.png (same stem as the image)")
            return MaskSource("file", found)
        if params["box"] is not None:
            return MaskSource("box")
        if params["random_fraction"] is not None:
            return MaskSource("random")
        return MaskSource("alpha")


class Superres(TaskSpec):
    name = "superres"
    aliases = ("sr",)
    command_aliases = ("sr",)
    summary = "Upscale a low-resolution image (--scale 2, 3, 4 or 8); the output is --scale times larger."
    example = "diffrestore superres small.png --scale 4"
    flags = (
        Flag("scale", "--scale", int, "Upscaling factor.", default=4, short="-s", choices=SR_SCALES,
             metavar="|".join(str(s) for s in SR_SCALES)),
        Flag("downsample", "--downsample", str, "How the low-resolution image was made: bicubic or box (average).",
             default="bicubic", choices=("bicubic", "box"), metavar="bicubic|box"),
    )

    def restored_size(self, params: Mapping[str, Any], size: tuple[int, int], *, simulated: bool) -> tuple[int, int]:
        if simulated:
            return size
        w, h = size
        return w * params["scale"], h * params["scale"]

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"scale": params["scale"], "downsample": params["downsample"]}

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "sr", {"factor": params["scale"], "kernel": params["downsample"]}


#: --blur kinds that vary across the image (a grid of kernels drawn once from --seed) and their kernel sizes
VARYING_BLURS: dict[str, int] = {"shake": 31, "defocus": 15}
#: the registry entry of --blur bkse's weights (bkse's GOPRO_wVAE.pth: operators/bkse.py)
BKSE_MODEL = "bkse-gopro-wvae"
#: the kernel code's channels and the pixels per code cell (operators.bkse, without importing torch here)
BKSE_CODE_CHANNELS, BKSE_CELL = 512, 128
#: the largest --kernel-code file read (a 16384 x 16384 image's code is 32 MiB)
MAX_CODE_BYTES = 64 * 2**20


class Deblur(TaskSpec):
    name = "deblur"
    summary = ("Remove a known blur: gaussian (--sigma), motion (--intensity), a kernel file (--kernel), a blur "
               "that varies across the image (--kernel-grid, or --blur shake|defocus to simulate one), or bkse's "
               "learned nonlinear blur (--blur bkse, the DPS / DAPS papers' nonlinear deblur).")
    example = "diffrestore deblur blurry.png --blur gaussian --sigma 3"
    #: the DPS / DAPS papers' blurs: 61x61 kernels, gaussian sigma 3.0, motion intensity 0.5
    flags = (
        Flag("blur", "--blur", str, "Blur kind: gaussian or motion (one kernel for the whole image), shake (handheld "
             "shake with a roll: streaks that turn and lengthen across the frame) or defocus (a tilted plane: disks "
             "that grow across the frame) or bkse (a network trained on GOPRO camera shake, as in the DPS / DAPS "
             "papers: needs `diffrestore models download bkse-gopro-wvae`); shake, defocus, motion and bkse's "
             "kernel code (unless --kernel-code) are drawn once from --seed. Ignored with --kernel or "
             "--kernel-grid.", default="gaussian", choices=("gaussian", "motion", "shake", "defocus", "bkse"),
             metavar="gaussian|motion|shake|defocus|bkse"),
        Flag("kernel", "--kernel", Path, "Blur kernel from a file (.png or .npy), normalised to sum 1.",
             metavar="FILE"),
        Flag("kernel_grid", "--kernel-grid", Path, "A blur that varies across the image: a (rows, cols, kh, kw) .npy "
             "array of kernels on a regular grid (row 0 at the top; node centres at the centres of equal cells, "
             "blended bilinearly), or a folder of kernel files named ROW_COL (0_0.png, 0_1.png, ...).",
             metavar="FILE|DIR"),
        Flag("kernel_code", "--kernel-code", Path, "For --blur bkse: the kernel code as a .npy array of shape (1, "
             "512, H'/128, W'/128), H' and W' the image's sides rounded up to multiples of 128 (1, 512, 2, 2 for "
             "256 x 256); without it the code is drawn from --seed (N(0, 1.2^2)), so only --simulate can use it.",
             metavar="FILE"),
        Flag("kernel_size", "--kernel-size", int, f"Kernel width in pixels, odd, at most {MAX_KERNEL_SIZE} (motion "
             "kernels: at least 3; default 61, shake 31, defocus 15).", default=61, low=1, high=MAX_KERNEL_SIZE,
             odd=True, metavar="PIXELS", hint="the papers use 61"),
        Flag("grid", "--grid", int, "Kernels per side of the grid for --blur shake|defocus.", default=4, low=1,
             high=64, metavar="N"),
        Flag("sigma", "--sigma", float, "Gaussian blur std in pixels.", default=3.0, low=0.0, low_open=True,
             metavar="PIXELS"),
        Flag("intensity", "--intensity", float, "Motion blur strength; the kernel is drawn once from --seed.",
             default=0.5, low=0.0, high=1.0, low_open=True, metavar="I"),
    )

    def check(self, params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        if params["blur"] == "bkse" or "kernel_code" in given:
            self._check_bkse(params, given, simulated=simulated)
            return
        if params["kernel"] is not None and params["kernel_grid"] is not None:
            raise UsageError("--kernel and --kernel-grid cannot be combined",
                             hint="--kernel is one blur for the whole image, --kernel-grid one that varies")
        for flag, key in (("--kernel FILE", "kernel"), ("--kernel-grid", "kernel_grid")):
            if params[key] is None:
                continue
            if not (params[key].is_file() or (key == "kernel_grid" and params[key].is_dir())):
                raise UsageError(f"{'kernel grid' if key == 'kernel_grid' else 'kernel file'} not found: "
                                 f"{params[key]}")
            extra = given & {"kernel_size", "sigma", "intensity", "grid"}
            if extra:
                raise UsageError(f"{flag} cannot be combined with "
                                 f"{', '.join('--' + e.replace('_', '-') for e in sorted(extra))}",
                                 hint="the file defines the kernels")
            return
        blur = params["blur"]
        if "sigma" in given and blur != "gaussian":
            raise UsageError("--sigma applies to --blur gaussian", hint="motion blur takes --intensity")
        if "intensity" in given and blur != "motion":
            raise UsageError("--intensity applies to --blur motion")
        if "grid" in given and blur not in VARYING_BLURS:
            raise UsageError("--grid applies to --blur shake or defocus (or give a --kernel-grid)")
        if blur in VARYING_BLURS:
            if not simulated:
                raise UsageError(f"--blur {blur} is drawn from --seed, so it can only be simulated: add --simulate",
                                 hint="to restore a real photo blurred by a varying blur, give its --kernel-grid")
            if "kernel_size" not in given:
                params["kernel_size"] = VARYING_BLURS[blur]
        if blur in ("motion", "shake") and params["kernel_size"] < 3:
            raise UsageError(f"--kernel-size for --blur {blur} must be at least 3, got {params['kernel_size']}",
                             hint="a motion path needs room to move: the papers use 61")

    @staticmethod
    def _check_bkse(params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        if params["blur"] != "bkse":
            raise UsageError("--kernel-code applies to --blur bkse")
        files = [f for f, key in (("--kernel", "kernel"), ("--kernel-grid", "kernel_grid")) if params[key] is not None]
        extra = files + ["--" + e.replace("_", "-") for e in sorted(given & {"kernel_size", "sigma", "intensity",
                                                                              "grid"})]
        if extra:
            raise UsageError(f"--blur bkse cannot be combined with {', '.join(extra)}",
                             hint="the network and its kernel code define the blur")
        if params["kernel_code"] is None and not simulated:
            raise UsageError("--blur bkse without --kernel-code draws the code from --seed, so it can only be "
                             "simulated: add --simulate", hint="to restore a real photo, give the --kernel-code "
                             "that blurred it")
        if params["kernel_code"] is not None and not params["kernel_code"].is_file():
            raise UsageError(f"kernel code file not found: {params['kernel_code']}")

    @staticmethod
    def _load_bkse(params: dict[str, Any]) -> None:
        """--blur bkse: its weights must be in the cache (a restore never downloads them: 0.5 GB from Google Drive
        with no published hash, so the user fetches them once, on purpose); --kernel-code read and checked."""
        import numpy as np

        from ..errors import ModelError, short_error
        from ..registry import cache_state, load_registry

        if cache_state(load_registry().get(BKSE_MODEL)) != "yes":
            raise ModelError(f"--blur bkse needs bkse's weights ({BKSE_MODEL}), which are not downloaded",
                             hint=f"run `diffrestore models download {BKSE_MODEL} --trust-unverified` once; see "
                             "docs/nonuniform_blur.md")
        path = params["kernel_code"]
        if path is None:
            return
        if path.stat().st_size > MAX_CODE_BYTES:
            raise InputError(f"kernel code '{path}' is over {MAX_CODE_BYTES // 2**20} MiB: not a bkse code")
        try:
            code = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"kernel code '{path}' is not a readable .npy array ({short_error(error)})",
                             hint="save it with numpy.save(path, code)") from error
        if not isinstance(code, np.ndarray):  # an .npz archive
            raise InputError(f"kernel code '{path}' is not a single .npy array", hint="save it with numpy.save")
        if (code.dtype.kind not in "iuf" or code.ndim not in (3, 4) or (code.ndim == 4 and code.shape[0] != 1)
                or code.shape[-3] != BKSE_CODE_CHANNELS or 0 in code.shape):
            raise UsageError(f"kernel code '{path}' has shape {tuple(code.shape)} ({code.dtype}); it must be real "
                             f"numbers of shape (1, {BKSE_CODE_CHANNELS}, H'/{BKSE_CELL}, W'/{BKSE_CELL})",
                             hint="a 256 x 256 image takes (1, 512, 2, 2)")
        if not np.isfinite(code).all():
            raise UsageError(f"kernel code '{path}' holds NaN or infinite values")
        params["loaded_code"] = code.reshape(1, *code.shape[-3:]).astype(np.float32)

    def load(self, params: dict[str, Any]) -> None:
        """Read --kernel FILE or --kernel-grid once: a bad file is one error before any model loads, and no image
        reads it again. --blur bkse: its weights' presence and its --kernel-code."""
        from .. import imageio
        from ..errors import DiffrestoreError, short_error

        if params["blur"] == "bkse":
            self._load_bkse(params)
            return

        for key, target in (("kernel", "loaded_kernel"), ("kernel_grid", "loaded_grid")):
            if params[key] is None:
                continue
            try:
                if key == "kernel":
                    params[target] = imageio.load_kernel(params[key])
                else:
                    from ..imageio.kernel_grid import load_kernel_grid

                    params[target] = load_kernel_grid(params[key])
            except DiffrestoreError:
                raise
            except (OSError, ValueError) as error:  # imageio names its own faults; this is the rest, in one line
                raise InputError(f"{key.replace('_', ' ')} '{params[key]}' cannot be read: "
                                 f"{short_error(error)}") from error

    def restored_size(self, params: Mapping[str, Any], size: tuple[int, int], *, simulated: bool) -> tuple[int, int]:
        # Every input's size passes here before any weights load: the place to refuse a --kernel-code that does
        # not cover this image (one code cell per 128 x 128 pixels, sides rounded up).
        code = params.get("loaded_code")
        if code is not None:
            w, h = size
            cells = (-(-h // BKSE_CELL), -(-w // BKSE_CELL))
            if tuple(code.shape[-2:]) != cells:
                raise UsageError(f"kernel code '{params['kernel_code']}' has {code.shape[-2]} x {code.shape[-1]} "
                                 f"cells, but a {w}x{h} image needs {cells[0]} x {cells[1]} (one per "
                                 f"{BKSE_CELL} x {BKSE_CELL} pixels, sides rounded up)")
        return size

    def kernel_shape(self, params: Mapping[str, Any]) -> tuple[int, int] | None:
        if params["blur"] == "bkse":
            return None  # a network, no kernel to convolve with
        for key in ("loaded_kernel", "loaded_grid"):
            if params.get(key) is not None:
                return int(params[key].shape[-2]), int(params[key].shape[-1])
        if params["kernel"] is not None or params["kernel_grid"] is not None:
            return None  # a file not read yet
        return params["kernel_size"], params["kernel_size"]

    def kernel_from_flag(self, params: Mapping[str, Any]) -> bool:
        return params["kernel"] is None and params["kernel_grid"] is None and params["blur"] != "bkse"

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if params["blur"] == "bkse":
            code = params["kernel_code"]
            return {"blur": "bkse", "weights": BKSE_MODEL, "kernel_code": str(code) if code is not None else "seed"}
        if params["kernel"] is not None:
            return {"kernel": str(params["kernel"])}
        if params["kernel_grid"] is not None:
            info: dict[str, Any] = {"kernel_grid": str(params["kernel_grid"])}
            if params.get("loaded_grid") is not None:
                info["grid"] = list(params["loaded_grid"].shape[:2])
            return info
        info = {"blur": params["blur"], "kernel_size": params["kernel_size"]}
        if params["blur"] == "gaussian":
            info["sigma"] = params["sigma"]
        elif params["blur"] == "motion":
            info["intensity"] = params["intensity"]
        else:
            info["grid"] = params["grid"]
        return info

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        if params["blur"] == "bkse":
            from ..registry import ensure_local, load_registry

            registry = load_registry()
            _, folder = ensure_local(BKSE_MODEL, offline=True, registry=registry)  # present: checked by load()
            weights = Path(folder) / registry.get(BKSE_MODEL).files[0].path  # type: ignore[arg-type]
            return "bkse", {"weights": weights, "code": params.get("loaded_code")}
        if params.get("loaded_kernel") is not None:
            return "kernel_blur", {"kernel": params["loaded_kernel"]}
        if params["kernel"] is not None:
            return "kernel_blur", {"kernel_path": str(params["kernel"])}
        if params.get("loaded_grid") is not None:
            return "varying_blur", {"kernels": params["loaded_grid"]}
        if params["blur"] in VARYING_BLURS:
            return "varying_blur", {"field": params["blur"], "grid": params["grid"],
                                    "kernel_size": params["kernel_size"]}
        if params["blur"] == "motion":
            return "motion_blur", {"kernel_size": params["kernel_size"], "intensity": params["intensity"]}
        return "gaussian_blur", {"kernel_size": params["kernel_size"], "sigma": params["sigma"]}


class Denoise(TaskSpec):
    name = "denoise"
    summary = "Remove Gaussian (--noise-sigma, [0, 1] scale) or Poisson (--noise poisson --poisson-rate) noise."
    example = "diffrestore denoise noisy.png --noise-sigma 0.1"
    simulated_noise_sigma = 0.1
    operator_name = "identity"


class Colorize(TaskSpec):
    name = "colorize"
    summary = "Add colour to a grayscale image (an RGB input is reduced to its luminance first)."
    example = "diffrestore colorize old_photo.jpg"
    min_channels = 3
    operator_name = "colorize"

    def measures_luminance_of_gray(self) -> bool:
        return False  # the luminance is the operator itself

    def measure_file(self, operator: Any, image: torch.Tensor, channels: int) -> torch.Tensor:
        return image if image.shape[1] == 1 else operator(image)  # a gray file is the luminance already

    def x_channels(self, input_channels: int, prior_channels: int) -> int:
        return prior_channels

    def check_channels(self, input_channels: int, prior_channels: int, name: str) -> None:
        if prior_channels != 3:
            raise UsageError(f"colorize needs an RGB model, but {name} has {prior_channels} channel(s)")
        if input_channels not in (1, 3):
            super().check_channels(input_channels, prior_channels, name)

    def to_output(self, x: torch.Tensor, input_channels: int) -> torch.Tensor:
        return x


class PhaseRetrieval(TaskSpec):
    name = "phase-retrieval"
    aliases = ("phase", "phase_retrieval")
    summary = ("Recover an image from the magnitude of its Fourier transform. Measurements are not pictures, so "
               "this command always simulates: each input is the clean image, and PSNR / SSIM are printed.")
    example = "diffrestore phase-retrieval object.png --oversampling 2"
    always_simulated = True
    flags = (
        Flag("oversampling", "--oversampling", float, "Zero-padding factor of the Fourier transform.", default=2.0,
             low=1.0, metavar="FACTOR"),
    )

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"oversampling": params["oversampling"]}

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "phase_retrieval", {"oversampling": params["oversampling"]}


class HighDynamicRange(TaskSpec):
    name = "hdr"
    summary = "Recover the range lost to clipping: the input is clip(scale * x)."
    example = "diffrestore hdr overexposed.png --scale 2"
    flags = (
        Flag("scale", "--scale", float, "Exposure gain of the clipping: the file is clip(scale * x).", default=2.0,
             short="-s", low=1.0, low_open=True, metavar="GAIN"),
    )

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"scale": params["scale"]}

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "hdr", {"scale": float(params["scale"])}


PHOTO_TASKS: tuple[TaskSpec, ...] = (Inpaint(), Superres(), Deblur(), Denoise(), Colorize(), PhaseRetrieval(),
                                     HighDynamicRange())
