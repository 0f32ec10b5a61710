"""Sparse-view CT (``diffrestore ct``): one ``TaskSpec``. What the user's file is:

    real use     a sinogram: ``.npy`` of shape (detectors, views) or (1, detectors, views), or a 32-bit float TIFF,
                 in scikit-image's ``radon(circle=False)`` geometry (operators/radon.py); the N x N image it came
                 from has ``ceil(sqrt(2) N)`` detector rows, so N = floor(detectors / sqrt(2))
    --simulate   a CT slice: DICOM (Hounsfield units), a grey 8/16-bit PNG or TIFF, a float TIFF or ``.npy``, on
                 the linear CT scale; its sparse-view sinogram is simulated, restored and scored

Intensities. The CT scale (imageio/dicom.py) is linear in attenuation with air at 0: ``u = (HU + 1024) / 4096``.
A PNG's grey levels (0..white) and a float file's values ARE that scale; only DICOM carries HU. The prior works on
tensors ``x = 2 u - 1`` (air = -1), as every task. A sinogram ``p`` is the projection of ``u`` (air projects to 0)
in CT-scale units times pixel lengths. The operator must stay linear in ``x`` for the solvers, so the task uses
``A`` itself on tensors and moves the constant to the measurement: ``A u = (A x + A 1) / 2``, i.e. the solvers see
``y = 2 p - A 1``, where ``A 1`` is the projection of the image square. ``--noise-sigma`` is a std on ``p``
(doubled in tensor units like every sigma); ``--photons I0`` draws Beer-Lambert counts on ``p``
(operators.radon.PhotonNoise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, UsageError
from .flags import Flag
from .spec import NOISE_SIGMA_RANGE, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

#: the most views a sinogram may have (0.05-degree steps over 180 degrees)
MAX_VIEWS = 3600
#: Gaussian noise on the sinogram that --simulate adds by default, and what a real sinogram is assumed to carry:
#: on the CT-scale sinogram (1 = 3072 HU over one pixel length), about 0.1 % of a ray through 200 px of water
CT_NOISE_SIGMA = 0.05
#: the default incident photons per detector bin of --noise photons
DEFAULT_PHOTONS = 1e5
_DICOM = (".dcm", ".dicom")
_ARRAYS = (".npy", ".tif", ".tiff")


def parse_angles(value: Any) -> tuple[float, ...] | Path:
    """``--angles``: a comma-separated list of degrees (or numbers from the API), else a file to read once."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        try:
            return tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise UsageError(f"invalid --angles {value!r}", hint="give degrees, e.g. --angles 0,6,12") from None
    text = value.strip()
    try:
        angles = tuple(float(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        return Path(text)
    if not angles or not all(math.isfinite(a) for a in angles):
        raise UsageError(f"invalid --angles '{value}'", hint="give finite degrees, e.g. --angles 0,6,12")
    return angles


def parse_window(value: Any) -> tuple[float, float]:
    """``--window CENTER,WIDTH`` in Hounsfield units."""
    text = ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
    try:
        centre, width = (float(v) for v in text.split(","))
    except ValueError:
        centre, width = 0.0, -1.0
    if not (math.isfinite(centre) and math.isfinite(width) and width > 0):
        raise UsageError(f"invalid --window '{text}'", hint="give CENTER,WIDTH in HU, e.g. --window 40,400")
    return centre, width


def read_angles_file(path: Path) -> tuple[float, ...]:
    """Degrees from a text file (numbers separated by commas, spaces or lines) or a 1-D ``.npy``."""
    import numpy as np

    try:
        if path.suffix.lower() == ".npy":
            values = np.load(path, allow_pickle=False).astype(np.float32).ravel().tolist()
        else:
            values = [float(v) for v in path.read_text().replace(",", " ").split()]
    except (OSError, ValueError) as error:
        raise UsageError(f"--angles {path}: not a list of degrees ({error})",
                         hint="one number per view, in degrees, in a text file or a 1-D .npy") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(f"--angles {path}: no finite angles in the file")
    return tuple(float(v) for v in values)


@dataclass(eq=False)
class CTInput:
    """A decoded CT input: ``tensor`` (1, 1, rows, cols) is ``2 v - 1`` for the file's values ``v`` (the CT scale
    of a slice, or a sinogram's), with what writing an output like it needs."""

    tensor: torch.Tensor
    path: Path
    format: str  # "dicom", "npy", "tiff", "png"
    bit_depth: int  # 8 / 16 for integer images, 32 for floats and DICOM
    dicom: Any = None  # the imageio.dicom.CTSlice of a DICOM input
    notes: tuple[str, ...] = ()
    alpha: Any = None  # what imageio.save_image reads from a `like` (a CT file has none of these)
    icc_profile: Any = None
    exif: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tensor.shape[-1]), int(self.tensor.shape[-2])

    @property
    def channels(self) -> int:
        return 1


class CT(TaskSpec):
    name = "ct"
    summary = ("Sparse-view CT: reconstruct a slice from a parallel-beam sinogram (.npy / float TIFF, detectors x "
               "views, angles in [0, 180) degrees; --simulate: from a DICOM / PNG / TIFF slice). --method fbp, "
               "sart or tv are the classical reconstructions.")
    example = "diffrestore ct sinogram.npy --views 30 --method daps"
    default_model = "ct-phantom"
    input_kind = "sinogram (or a CT slice with --simulate)"
    simulated_noise_sigma = CT_NOISE_SIGMA
    noise_estimable = False
    min_channels = 1
    flags = (
        Flag("views", "--views", int, "Number of views, equally spaced over [0, 180) degrees: view i is at i * 180 "
             "/ VIEWS (30 views: 0, 6, ..., 174). The sinogram has one column per view and ceil(sqrt(2) N) detector "
             "rows for an N x N image (scikit-image radon(circle=False)), e.g. 363 x 30 for 256 px.", default=30,
             low=1, high=MAX_VIEWS, metavar="V"),
        Flag("angles", "--angles", str, "The view angles in degrees instead of --views: a list (0,6,12) or a file "
             "(numbers in text, or a 1-D .npy), one per sinogram column.", metavar="FILE|LIST", parse=parse_angles),
        Flag("window", "--window", tuple, "Display window of PNG / JPEG outputs in Hounsfield units. Default: the "
             "DICOM file's own window, else soft tissue 40,400; a PNG or TIFF slice's output keeps its own linear "
             "CT scale.", metavar="CENTER,WIDTH", parse=parse_window),
    )

    @classmethod
    def all_flags(cls) -> tuple[Flag, ...]:
        return (*cls.flags,
                Flag("noise", "--noise", str, "Noise of the sinogram: gaussian (--noise-sigma), photons (Beer-Lambert "
                     "photon counts, --photons; with --simulate) or none.", default="gaussian",
                     choices=("gaussian", "photons", "none"), metavar="gaussian|photons|none"),
                Flag("noise_sigma", "--noise-sigma", str, show_default=False, metavar="SIGMA",
                     help="Std of the Gaussian noise on the sinogram, in CT-scale units (air 0, 1 = 3072 HU) times "
                     f"pixel lengths, at most 1. Default {CT_NOISE_SIGMA:g}, simulated and assumed alike (a "
                     "sparse-view sinogram's noise cannot be estimated from it)."),
                Flag("photons", "--photons", float, "Incident photons per detector bin for --noise photons (given "
                     "alone, it selects it): counts ~ Poisson(I0 exp(-mu p)), mu for water at 1-mm pixels.",
                     default=DEFAULT_PHOTONS, low=0.0, low_open=True, metavar="I0"))

    # ------------------------------------------------------------------------------------------ the flags

    def check(self, params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        if "photons" in given:
            if "noise" in given and params["noise"] != "photons":
                raise UsageError(f"--photons applies to --noise photons, not --noise {params['noise']}")
            params["noise"] = "photons"
        if params["noise"] == "photons":
            if "noise_sigma" in given:
                raise UsageError("--noise-sigma and --photons cannot be combined",
                                 hint="photon noise has its own level: --photons I0")
            if not simulated:
                raise UsageError("--photons draws photon counts for --simulate",
                                 hint="for a measured sinogram give its Gaussian --noise-sigma")
        if "noise_sigma" in given and params["noise_sigma"] == "auto":
            raise UsageError("--noise-sigma auto cannot be estimated from a sparse-view sinogram",
                             hint=f"give a number (default {CT_NOISE_SIGMA:g} on the CT-scale sinogram)")
        if "noise_sigma" in given:
            NOISE_SIGMA_RANGE.check(float(params["noise_sigma"]))
        angles = params["angles"]
        if isinstance(angles, Path) and not angles.is_file():
            raise UsageError(f"--angles file not found: {angles}", hint="give a file or a list, e.g. 0,6,12")
        if isinstance(angles, tuple) and "views" in given and params["views"] != len(angles):
            raise UsageError(f"--views {params['views']} but --angles lists {len(angles)} angles",
                             hint="give one of them")
        params["views_given"] = "views" in given

    def load(self, params: dict[str, Any]) -> None:
        from ..operators.radon import view_angles

        angles = params["angles"]
        if isinstance(angles, Path):
            angles = read_angles_file(angles)
            if params.get("views_given") and params["views"] != len(angles):
                raise UsageError(f"--views {params['views']} but {params['angles']} lists {len(angles)} angles")
        params["angles_deg"] = angles if angles is not None else view_angles(int(params["views"]))
        params["views"] = len(params["angles_deg"])

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"views": params["views"], "angles_deg": [round(a, 6) for a in params["angles_deg"]]}
        if params["noise"] == "photons":
            info["photons"] = params["photons"]
        if params["window"] is not None:
            info["window"] = list(params["window"])
        return info

    # ----------------------------------------------------------------------------------------- the input

    def input_extensions(self) -> tuple[str, ...]:
        return (*_ARRAYS, ".png", *_DICOM)

    def read_input(self, path: Path) -> CTInput:
        import numpy as np
        import torch

        from ..imageio import dicom

        if dicom.is_dicom(path):
            ct_slice = dicom.read_ct_slice(path)
            unit = dicom.hu_to_unit(ct_slice.hu)
            notes = list(ct_slice.notes)
            outside = int(((unit < 0) | (unit > 1)).sum())
            if outside:  # below air is the scanner's padding outside its circle; above, metal past 3071 HU
                notes.append(f"{outside} pixel(s) outside -1024..3072 HU clipped to that range (the CT scale)")
                unit = np.clip(unit, 0.0, 1.0)
            tensor = torch.from_numpy(unit * np.float32(2) - np.float32(1))[None, None]
            return CTInput(tensor=tensor, path=path, format="dicom", bit_depth=32, dicom=ct_slice,
                           notes=tuple(notes))
        array = dicom.read_ct_array(path)
        tensor = torch.from_numpy(array.values * np.float32(2) - np.float32(1))[None, None]
        return CTInput(tensor=tensor, path=path, format=array.format, bit_depth=array.bit_depth,
                       notes=array.notes)

    def check_input(self, params: Mapping[str, Any], loaded: Any, *, simulated: bool) -> None:
        from ..operators import image_shape_for_measurement

        if simulated:
            values = (loaded.tensor + 1) / 2
            low, high = float(values.min()), float(values.max())
            if low < -0.01 or high > 1.5:
                raise UsageError(f"{loaded.path}: values from {low:g} to {high:g} are not on the CT scale (air 0, "
                                 "3072 HU = 1)", hint="convert Hounsfield units with (HU + 1024) / 4096, or give "
                                 "the DICOM file")
            if low < 0 or high > 1:
                loaded.tensor = loaded.tensor.clamp(-1.0, 1.0)
                loaded.notes = (*loaded.notes, "values outside the CT scale's 0..1 clipped")
            return
        if loaded.format == "dicom" or loaded.bit_depth != 32:
            article = "an" if loaded.bit_depth == 8 else "a"  # "an 8-bit", "a 16-bit"
            what = "a DICOM CT slice" if loaded.format == "dicom" else f"{article} {loaded.bit_depth}-bit image"
            raise UsageError(f"{loaded.path} is {what}, not a sinogram",
                             hint="add --simulate to restore it from its simulated sinogram, or give the sinogram "
                             "as .npy or a float TIFF")
        detectors, views = (int(v) for v in loaded.tensor.shape[-2:])
        try:
            image_shape_for_measurement("ct", (1, detectors, views), angles_deg=params["angles_deg"])
        except UsageError as error:
            raise UsageError(f"{loaded.path.name}: sinogram of shape ({detectors}, {views}): "
                             f"{str(error).removeprefix('ct: ')}") from None

    def restored_size(self, params: Mapping[str, Any], size: tuple[int, int], *, simulated: bool) -> tuple[int, int]:
        if simulated:
            return size
        side = math.floor(size[1] / math.sqrt(2))  # the sinogram's rows are its detectors (checked on reading)
        return side, side

    # ----------------------------------------------------------------------------------------- the problem

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        return "ct", {"angles_deg": tuple(params["angles_deg"])}

    def measure_file(self, operator: Any, image: torch.Tensor, channels: int) -> torch.Tensor:
        """The file holds ``p`` as ``2 p - 1``; the solvers see ``2 p - A 1`` (module doc)."""
        import torch

        with torch.no_grad():
            square = operator(image.new_ones(1, *operator.image_shape))
        return image + 1 - square

    def noise_model(self, params: Mapping[str, Any], noise: str, sigma: float) -> Any:
        from .. import operators
        from ..operators.radon import PhotonNoise

        if noise == "photons":
            return PhotonNoise(float(params["photons"]), tuple(params["angles_deg"]))
        return operators.build_noise("none" if noise == "none" or sigma == 0.0 else "gaussian", sigma=sigma)

    # ------------------------------------------------------------------------------------------ the output

    def check_output(self, path: Path, loaded: Any) -> None:
        from ..imageio import IMAGE_EXTENSIONS

        suffix = path.suffix.lower()
        if suffix not in (*IMAGE_EXTENSIONS, ".npy", *_DICOM):
            raise OutputError(f"output {path} has no extension ct can write",
                              hint=f"end it in .dcm, .npy or one of {', '.join(IMAGE_EXTENSIONS)}")
        if suffix in _DICOM and getattr(loaded, "dicom", None) is None:
            raise OutputError(f"output {path}: a DICOM output takes its header from a DICOM input, and "
                              f"{loaded.path.name} is none", hint="write .png, .tif or .npy")

    def save_output(self, params: Mapping[str, Any], image: torch.Tensor, path: Path, *, like: Any,
                    overwrite: bool, protected: Any, output_set: Any = None) -> list[str]:
        """DICOM in HU with the source's header; ``.npy`` and a float TIFF's ``.tif`` as CT-scale floats; other
        pictures through the display window, or, for a PNG / TIFF slice, on its own linear scale."""
        import torch

        from ..imageio import dicom

        self.check_output(path, like)
        unit = ((image[0, 0].detach().to("cpu", torch.float32) + 1) / 2).numpy()
        suffix = path.suffix.lower()
        notes: list[str] = []
        if suffix in _DICOM:
            hu = dicom.unit_to_hu(unit)
            clipped = dicom.clipped_on_write(like.dicom, hu)
            if clipped:
                notes.append(f"{clipped} pixel(s) clipped to the range the source's pixel format holds")
            views = len(params["angles_deg"])
            data = dicom.ct_slice_bytes(like.dicom, hu, description=f"restored by diffrestore ct from {views} views")
        elif suffix == ".npy" or (suffix in (".tif", ".tiff") and like.bit_depth == 32 and params["window"] is None):
            data = dicom.array_file_bytes(unit, suffix)
        else:
            return self._save_picture(params, unit, path, like=like, overwrite=overwrite, protected=protected,
                                      output_set=output_set)
        _write_file(path, data, like=like, overwrite=overwrite, protected=protected, output_set=output_set)
        return notes

    def _save_picture(self, params: Mapping[str, Any], unit: np.ndarray, path: Path, *, like: Any, overwrite: bool,
                      protected: Any, output_set: Any) -> list[str]:
        import numpy as np
        import torch

        from .. import imageio
        from ..imageio import dicom

        own_scale = params["window"] is None and like.format in ("png", "tiff") and like.bit_depth in (8, 16)
        if own_scale:
            grey, depth = unit, like.bit_depth
        else:
            window = dicom.display_window(like.dicom, params["window"])
            grey, depth = dicom.window_to_unit(dicom.unit_to_hu(unit), window), 16
        tensor = torch.from_numpy(np.clip(grey, 0, 1).astype(np.float32) * 2 - 1)[None, None]
        # the engine's ``protected`` holds every input of the run, this one included
        return list(imageio.save_image(tensor, path, overwrite=overwrite, protected=protected, bit_depth=depth,
                                       output_set=output_set).notes)


def _write_file(path: Path, data: bytes, *, like: Any, overwrite: bool, protected: Any, output_set: Any) -> None:
    """``data`` to ``path`` atomically (or staged in ``output_set``), never over an input."""
    from ..imageio.write import ProtectedFiles, write_atomic

    guard = protected if isinstance(protected, ProtectedFiles) else ProtectedFiles(protected or ())
    found = guard.find(path) or ProtectedFiles([like.path]).find(path)
    if found is not None:
        raise OutputError(f"output '{path}' is the input file '{found}'; inputs are never overwritten",
                          hint="choose another output path")
    if path.exists() and not overwrite:
        raise OutputError(f"output '{path}' already exists", hint="use --overwrite to replace it")
    if output_set is not None:
        output_set.add(path, data, overwrite=overwrite)
    else:
        write_atomic(path, data, overwrite=overwrite)


MEDICAL_TASKS: tuple[TaskSpec, ...] = (CT(),)
