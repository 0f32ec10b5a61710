"""A task as a value. ``TaskSpec`` is one entry of the task table (``tasks.table``): the task's name and aliases,
its flags, what its input file is, and the hooks that turn flags and an input into a problem (operator, noise,
measurement), a restored size and an output. ``Task`` is a spec resolved once from the flags of one run: immutable,
every default filled in, every range and combination checked; the engine, the Python API and the CLI all read it,
and nothing downstream switches on a task's name.

The flags, their types, defaults and ranges are declared once (``Flag``); the torch parts (operators, noise
models, masks) are imported only when a problem is built, so resolving a task stays torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import UsageError
from .flags import Flag

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .masks import MaskSource

NOISE_KINDS = ("gaussian", "poisson", "none")
#: Gaussian noise std on [0, 1] that --simulate adds when none is given: the papers' sigma_y = 0.05 on [-1, 1]
SIMULATED_NOISE_SIGMA = 0.025
DEFAULT_POISSON_RATE = 100.0


def parse_noise_sigma(value: Any) -> float | str:
    """``"auto"`` or a number (text from the command line, a number from the API)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"invalid --noise-sigma '{value}'",
                             hint="give auto (estimate it from the image) or a number on the [0, 1] scale") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"invalid --noise-sigma {value!r}", hint="give auto or a number on the [0, 1] scale")
    return float(value)


#: the range of a numeric --noise-sigma (checked after "auto" is told apart)
NOISE_SIGMA_RANGE = Flag("noise_sigma", "--noise-sigma", float, "", low=0.0, high=1.0,
                         hint="the [0, 1] intensity scale of an image: a paper's 0.05 on the [-1, 1] scale is 0.025")


def noise_flags(simulated_sigma: float) -> tuple[Flag, ...]:
    """The measurement-noise flags of a photo task whose --simulate default is ``simulated_sigma``."""
    return (
        Flag("noise", "--noise", str, "Noise model of the measurement.", default="gaussian", choices=NOISE_KINDS,
             metavar="|".join(NOISE_KINDS)),
        Flag("noise_sigma", "--noise-sigma", str, show_default=False, metavar="auto|SIGMA",
             help="Std of the Gaussian measurement noise on the [0, 1] intensity scale of the image (a paper's "
             "0.05 on the [-1, 1] scale is 0.025 here), or auto: estimated from each input (wavelet MAD, floored "
             "at the file's quantisation step; printed as a note). Default: auto for real inputs, "
             f"{simulated_sigma:g} with --simulate."),
        Flag("poisson_rate", "--poisson-rate", float, "Photons per unit intensity for --noise poisson (larger = "
             "less noise).", default=DEFAULT_POISSON_RATE, low=0.0, low_open=True, metavar="RATE"),
    )


class TaskSpec:
    """One task of the table. Subclasses set the class attributes and override the hooks they need; the
    defaults describe a task whose file is the measurement y itself, in image space, with the image's size."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()  # other names the task answers to (the API, the table)
    command_aliases: ClassVar[tuple[str, ...]] = ()  # of those, the ones that are commands of their own
    #: one line for --help, and an example command
    summary: ClassVar[str]
    example: ClassVar[str]
    #: what the input file is (for --help and docs)
    input_kind: ClassVar[str] = "photo"
    #: the task's own flags, then its noise flags
    flags: ClassVar[tuple[Flag, ...]] = ()
    simulated_noise_sigma: ClassVar[float] = SIMULATED_NOISE_SIGMA
    #: the file is always the clean image (its measurement is not a picture)
    always_simulated: ClassVar[bool] = False
    #: a real input's known pixels are written back into the output (inpainting)
    keeps_known_pixels: ClassVar[bool] = False
    #: the least number of channels the restored image has (colorize: 3, whatever the input)
    min_channels: ClassVar[int] = 1
    #: the operator of a task whose operator takes no parameters (``operators.build_operator``'s name)
    operator_name: ClassVar[str | None] = None
    #: a real input's Gaussian noise level can be estimated from the file (photos); where it cannot (a sparse-view
    #: sinogram is no picture), an unset --noise-sigma means ``simulated_noise_sigma`` for real inputs too
    noise_estimable: ClassVar[bool] = True
    #: the prior a run uses when no --model is given: a registry name (CT and MRI ship their own)
    default_model: ClassVar[str] = "builtin"

    @classmethod
    def all_flags(cls) -> tuple[Flag, ...]:
        return (*cls.flags, *noise_flags(cls.simulated_noise_sigma))

    # ---------------------------------------------------------------------------- the input file

    def input_extensions(self) -> tuple[str, ...]:
        """Extensions (lower case, with the dot) that folder and glob inputs pick up: the image formats."""
        from ..imageio import IMAGE_EXTENSIONS

        return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in IMAGE_EXTENSIONS)

    def read_input(self, path: Path) -> Any:
        """The input file decoded (an ``imageio.LoadedImage``: ``tensor`` (1, C, H, W) in tensor units, plus what
        saving an output like it needs). A task whose inputs are not pictures reads them here."""
        from .. import imageio

        return imageio.load_image(path)

    def input_parts(self, params: Mapping[str, Any], path: Path) -> int:
        """How many images the file ``path`` holds, each restored on its own (``read_input_part``): 1 by default
        (an MRI .h5 without --slice: its slices)."""
        return 1

    def read_input_part(self, path: Path, part: int) -> Any:
        """Image ``part`` of a file holding several (``input_parts``), decoded as ``read_input`` does."""
        raise NotImplementedError(f"task {self.name} reads one image per file")

    def check_input(self, params: Mapping[str, Any], loaded: Any, *, simulated: bool) -> None:
        """UsageError / InputError when a decoded input cannot be this task's file (a sinogram of the wrong
        shape), before any model loads."""

    # ---------------------------------------------------------------------------------------- outputs

    def check_output(self, path: Path, loaded: Any) -> None:
        """OutputError when the output ``path`` cannot be written for the input ``loaded`` (by default: no image
        extension to choose the format by)."""
        from ..errors import OutputError
        from ..imageio import IMAGE_EXTENSIONS
        from ..imageio.common import _SAVE_FORMATS

        if path.suffix.lower() not in _SAVE_FORMATS:
            raise OutputError(f"output {path} for the input {getattr(loaded, 'path', '?')} has no image extension "
                              "to choose its format",
                              hint=f"rename the input to end in one of {', '.join(IMAGE_EXTENSIONS)}, or give -o "
                              "NAME.png for it")

    def save_output(self, params: Mapping[str, Any], image: torch.Tensor, path: Path, *, like: Any,
                    overwrite: bool, protected: Any, output_set: Any = None) -> list[str]:
        """Write one restored image ((1, C, H, W), tensor units) to ``path`` like the input ``like``; returns
        what the format could not keep. By default an image file (``imageio.save_image``)."""
        from .. import imageio

        return list(imageio.save_image(image, path, like=like, overwrite=overwrite, protected=protected,
                                       output_set=output_set).notes)

    # ---------------------------------------------------------------- hooks on the flags (torch-free)

    def check(self, params: dict[str, Any], given: frozenset[str], *, simulated: bool) -> None:
        """Rules between flags (each flag's own range is checked already). UsageError."""

    def load(self, params: dict[str, Any]) -> None:
        """Read what the flags name (e.g. a kernel file) into ``params``, once, before any model loads."""

    def restored_size(self, params: Mapping[str, Any], size: tuple[int, int], *, simulated: bool) -> tuple[int, int]:
        """(width, height) of the restored image for an input of ``size``."""
        return size

    def kernel_shape(self, params: Mapping[str, Any]) -> tuple[int, int] | None:
        """(kh, kw) of a blur kernel the operator convolves with (the memory estimate counts its FFT grid)."""
        return None

    def kernel_from_flag(self, params: Mapping[str, Any]) -> bool:
        """Whether that kernel's size is a flag (--kernel-size) a memory refusal can suggest lowering."""
        return False

    def describe(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The operator's settings for --json and logs (the noise is added by ``Task.describe``)."""
        return {}

    # ---------------------------------------------------------------------------------- torch hooks

    def operator_spec(self, params: Mapping[str, Any], mask: Any) -> tuple[str, dict[str, Any]]:
        """(name, parameters) for ``operators.build_operator``: by default ``operator_name`` without any."""
        if self.operator_name is None:
            raise NotImplementedError(f"task {self.name} names no operator")
        return self.operator_name, {}

    def measures_luminance_of_gray(self) -> bool:
        """A gray file on an RGB prior is measured through the luminance of x (``Compose(A, Colorize)``)."""
        return True

    def measure_file(self, operator: Any, image: torch.Tensor, channels: int) -> torch.Tensor:
        """y for a real input: by default the file itself (a gray file on an RGB prior is measured through the
        luminance: see ``Task.operator``)."""
        return image

    def x_channels(self, input_channels: int, prior_channels: int) -> int:
        """How many channels the restored image has while the solver works on it."""
        return prior_channels if input_channels in (1, prior_channels) else input_channels

    def check_channels(self, input_channels: int, prior_channels: int, name: str) -> None:
        """UsageError when the prior cannot represent this image."""
        if input_channels != prior_channels and not (input_channels == 1 and prior_channels == 3):
            raise UsageError(f"the image has {input_channels} channel(s) but model {name} has {prior_channels}",
                             hint="use a model with matching channels")

    def to_output(self, x: torch.Tensor, input_channels: int) -> torch.Tensor:
        """Back to the input's channels: a gray input gets the BT.601 luminance of an RGB x (what its operator
        measured)."""
        if x.shape[1] == input_channels or input_channels != 1:
            return x
        from ..operators import Colorize

        return Colorize(tuple(x.shape[1:])).to(x.device)(x)

    def mask_source(self, params: Mapping[str, Any], input_path: Path, extensions: tuple[str, ...]) -> MaskSource:
        from .masks import MaskSource

        return MaskSource("none")

    def build_mask(self, source: MaskSource, params: Mapping[str, Any], size: tuple[int, int], *, seed: int,
                   loaded: Any = None) -> Any:
        """What ``operator_spec`` gets as ``mask`` for an image of ``size``: by default the inpainting mask (bool
        (1, 1, H, W), True = missing); a task may return its own (MRI: the k-space pattern and coil maps)."""
        from .masks import build_mask

        return build_mask(source, params, size, seed=seed, loaded=loaded)

    def clamp_output(self, x: torch.Tensor) -> torch.Tensor:
        """The restored tensor as outputs keep it: [-1, 1] for pictures (a task whose tensor is no picture, such
        as MRI's complex image on its 99th-percentile scale, keeps it whole)."""
        return x.clamp(-1.0, 1.0)

    def picture(self, x: torch.Tensor) -> torch.Tensor:
        """A restored or reference tensor as a picture (1 or 3 channels, [-1, 1]) for contact sheets: itself by
        default; MRI's complex image as its magnitude over its maximum."""
        return x

    def as_array(self, image: torch.Tensor, like: Any) -> np.ndarray:
        """A restored image ((1, C, H, W), tensor units) as the Python API's ``to_numpy`` gives it: (H, W, C) float32
        in [0, 1] ((H, W) for grey); MRI: the complex image in the data's units."""
        array = ((image[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
        return array[:, :, 0] if array.shape[2] == 1 else array

    def scored(self, x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair (restored, reference) the metrics score, in tensor units: by default the tensors themselves;
        MRI scores magnitudes against the reference's maximum."""
        return x, reference

    def noise_model(self, params: Mapping[str, Any], noise: str, sigma: float) -> Any:
        """The noise model in tensor units for ``noise`` (the --noise kind) and the Gaussian ``sigma`` on [0, 1]."""
        from .. import operators

        kind = "none" if noise == "gaussian" and sigma == 0.0 else noise
        return operators.build_noise(kind, sigma=sigma, rate=float(params["poisson_rate"]))


@dataclass(frozen=True, eq=False)
class Task:
    """A task resolved from one run's flags: read-only, defaults filled in, checked. Build it with
    ``tasks.resolve_task``; ``with_noise_sigma`` gives the copy an input's estimated noise level makes."""

    spec: TaskSpec
    params: Mapping[str, Any]
    given: frozenset[str] = frozenset()
    simulate: bool = False  # the file is the clean image (--simulate, or a task that always simulates)
    noise_sigma: float | None = None  # Gaussian std on [0, 1]; None: estimated from each input

    def __post_init__(self) -> None:
        if self.noise_sigma is None and self.noise == "gaussian" and not self.spec.noise_estimable:
            object.__setattr__(self, "noise_sigma", float(self.spec.simulated_noise_sigma))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def noise(self) -> str:
        return str(self.params["noise"])

    @property
    def estimates_noise(self) -> bool:
        """Each input's Gaussian noise level is estimated from the image itself (real inputs by default)."""
        return self.noise == "gaussian" and self.noise_sigma is None

    def with_noise_sigma(self, sigma: float | None) -> Task:
        """This task with an input's estimated noise level in place of "estimate" (None: unchanged)."""
        return self if sigma is None else dataclasses.replace(self, noise_sigma=float(sigma))

    def restored_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return self.spec.restored_size(self.params, size, simulated=self.simulate)

    def kernel_shape(self) -> tuple[int, int] | None:
        return self.spec.kernel_shape(self.params)

    def kernel_from_flag(self) -> bool:
        return self.spec.kernel_from_flag(self.params)

    def x_channels(self, input_channels: int, prior_channels: int | None = None) -> int:
        """Channels of x; with the prior not loaded yet, a floor (the input's, or the task's least)."""
        if prior_channels is None:
            return max(input_channels, self.spec.min_channels)
        return self.spec.x_channels(input_channels, prior_channels)

    def check_channels(self, input_channels: int, prior_channels: int, name: str) -> None:
        self.spec.check_channels(input_channels, prior_channels, name)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of the operator and noise this run uses."""
        info: dict[str, Any] = {"task": self.name, **self.spec.describe(self.params), "noise": self.noise}
        if self.noise == "gaussian":
            info["noise_sigma"] = "auto" if self.estimates_noise else self.noise_sigma
        elif self.noise == "poisson":
            info["poisson_rate"] = self.params["poisson_rate"]
        return info

    # ----------------------------------------------------------------------------------- inputs (torch)

    def input_extensions(self) -> tuple[str, ...]:
        return self.spec.input_extensions()

    def input_parts(self, path: Path) -> int:
        return self.spec.input_parts(self.params, path)

    def read_input(self, path: Path, *, part: int | None = None) -> Any:
        loaded = self.spec.read_input(path) if part is None else self.spec.read_input_part(path, part)
        self.spec.check_input(self.params, loaded, simulated=self.simulate)
        return loaded

    def check_output(self, path: Path, loaded: Any) -> None:
        self.spec.check_output(path, loaded)

    def save_output(self, image: torch.Tensor, path: Path, *, like: Any, overwrite: bool, protected: Any,
                    output_set: Any = None) -> list[str]:
        return self.spec.save_output(self.params, image, path, like=like, overwrite=overwrite, protected=protected,
                                     output_set=output_set)

    def mask_source(self, input_path: Path, extensions: tuple[str, ...]) -> MaskSource:
        return self.spec.mask_source(self.params, input_path, extensions)

    def build_mask(self, source: MaskSource, size: tuple[int, int], *, seed: int, loaded: Any = None) -> Any:
        """The mask (bool (1, 1, H, W), True = missing) of ``source`` for a restored image of ``size``."""
        return self.spec.build_mask(source, self.params, size, seed=seed, loaded=loaded)

    def noise_model(self) -> Any:
        """The noise model in tensor units (see operators.GaussianNoise: sigma on the [0, 1] scale)."""
        return self.spec.noise_model(self.params, self.noise, float(self.noise_sigma or 0.0))

    def operator(self, x_shape: tuple[int, int, int], *, seed: int, mask: Any = None,
                 input_channels: int | None = None) -> Any:
        """The operator for a restored image of shape ``x_shape`` = (C, H, W) measured by a file of
        ``input_channels`` channels (default: C).

        A gray file restored with an RGB prior is one look at the luminance: the task's operator is built for one
        channel and composed with the BT.601 luminance of the 3-channel x (``Compose(A, Colorize)``), so one noise
        draw counts once in the likelihood. Random operator parts (a motion-blur kernel) come from a generator
        seeded with ``seed`` alone, so every image of a run sees the same kernel and a rerun sees it again."""
        from .. import operators
        from ..run.runtime import make_generator

        name, params = self.spec.operator_spec(self.params, mask)
        channels, height, width = (int(v) for v in x_shape)
        if self.spec.measures_luminance_of_gray() and input_channels == 1 and channels == 3:
            measured = operators.build_operator(name, (1, height, width), generator=make_generator(seed), **params)
            return operators.Compose(measured, operators.Colorize((3, height, width)))
        return operators.build_operator(name, (channels, height, width), generator=make_generator(seed), **params)

    def measurement(self, operator: Any, noise: Any, image: torch.Tensor, *, channels: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(y, reference) for one image (batch 1, tensor units): simulating, y = noise(A(file)) with the noise
        drawn from ``generator`` and the file as the reference; else the task's own reading of the file."""
        import torch

        from .. import imageio

        with torch.no_grad():
            if self.simulate:
                x = imageio.to_channels(image, channels)
                return noise.sample(operator(x), generator).to(torch.float32), x
            return self.spec.measure_file(operator, image, channels).to(torch.float32), None

    def to_output(self, x: torch.Tensor, input_channels: int) -> torch.Tensor:
        return self.spec.to_output(x, input_channels)
