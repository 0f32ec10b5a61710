"""Save images: output-path checks, what each format can keep, quantisation and the atomic write.

Saving
    The output format follows the output extension. Values are clamped to [-1, 1] and rounded (never min-max
    normalised). Bit depth, alpha, ICC profile, EXIF and grayscale are kept where the format can hold them:

    ========  =========  ======  ===  ====  ==========================================================
    format    16-bit     alpha   ICC  EXIF  what is given up
    ========  =========  ======  ===  ====  ==========================================================
    PNG       yes        yes     yes  yes   nothing (16-bit written by this package's own encoder)
    TIFF      gray only  yes     yes  yes   16-bit colour or 16-bit + alpha -> 8-bit
    WebP      no         yes     yes  yes   16 -> 8 bit; grayscale is stored as RGB (WebP has no gray)
    JPEG      no         no      yes  yes   16 -> 8 bit; alpha dropped; lossy (quality 95, 4:4:4)
    BMP       no         no      no   no    16 -> 8 bit; alpha, ICC and EXIF dropped
    ========  =========  ======  ===  ====  ==========================================================

    Dropping alpha keeps the colour values as they are (no compositing onto a background): when the alpha was
    the inpainting mask, the colours under it are exactly what was restored. Every such loss is listed in
    :attr:`SavedImage.notes` so the caller can tell the user. WebP is written lossless with ``exact`` so colour
    under transparent pixels survives too.

    Writes are atomic (temp file in the same folder, then rename), never replace an input file, and never
    replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, features

from ..errors import OutputError
from .common import _SAVE_FORMATS, IMAGE_EXTENSIONS, LoadedImage, SavedImage
from .png import _png_encode

if TYPE_CHECKING:
    import torch


class ProtectedFiles:
    """Files that must never be written (a run's inputs), each found once: whether an output is one of them is
    then two dict look-ups, so a folder of N inputs costs O(N) to check, not O(N^2). The same file is found
    through another spelling (``..``, symbolic links) by its resolved path and through a hard link (or a
    case-insensitive file system) by its device and inode. One ``lstat`` per path: a folder's resolved path is
    found once, and a file's is that plus its name unless the file is itself a symbolic link."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]] = ()) -> None:
        self._by_path: dict[str, Path] = {}
        self._by_inode: dict[tuple[int, int], Path] = {}
        self._folders: dict[str, str] = {}
        for raw in paths:
            self.add(Path(raw))

    def _identify(self, path: Path) -> tuple[str, tuple[int, int] | None]:
        text = os.fspath(path)
        folder, name = os.path.split(text)
        try:
            info: os.stat_result | None = os.lstat(text)
        except (OSError, ValueError):
            info = None
        if name in ("", ".", "..") or (info is not None and stat.S_ISLNK(info.st_mode)):
            try:
                info = os.stat(text)
            except (OSError, ValueError):
                info = None
            key = os.path.realpath(text)
        else:
            real = self._folders.get(folder)
            if real is None:
                real = self._folders[folder] = os.path.realpath(folder or ".")
            key = os.path.join(real, name)
        return key, (None if info is None else (info.st_dev, info.st_ino))

    def add(self, path: Path) -> None:
        key, inode = self._identify(path)
        self._by_path.setdefault(key, path)
        if inode is not None:
            self._by_inode.setdefault(inode, path)

    def find(self, path: Path) -> Path | None:
        """The protected file that ``path`` names, or None."""
        key, inode = self._identify(path)
        found = self._by_path.get(key)
        if found is None and inode is not None:
            found = self._by_inode.get(inode)
        return found

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, os.PathLike)) and self.find(Path(path)) is not None


def _protected(protected: Iterable[str | os.PathLike[str]] | ProtectedFiles) -> ProtectedFiles:
    return protected if isinstance(protected, ProtectedFiles) else ProtectedFiles(protected)


def _refuse_protected(path: Path, protected: ProtectedFiles) -> None:
    other = protected.find(path)
    if other is not None:
        raise OutputError(
            f"output '{path}' is the input file '{other}'; inputs are never overwritten",
            hint="choose another output path",
        )


def check_output_path(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] | ProtectedFiles = (),
) -> Path:
    """Raise :class:`~diffrestore.errors.OutputError` if ``path`` cannot or must not be written; return it.

    Cheap (no writing): the CLI calls it for every planned output before any weights load. ``protected`` may be
    a :class:`ProtectedFiles` built once for a whole run (a plain list is resolved on every call).
    """
    path = Path(path)
    if path.suffix.lower() not in _SAVE_FORMATS:
        raise OutputError(
            f"output '{path}' has no image extension this tool can write",
            hint=f"end it with one of {', '.join(IMAGE_EXTENSIONS)}",
        )
    _refuse_protected(path, _protected(protected))
    if path.is_dir():
        raise OutputError(f"output '{path}' is a folder", hint="give a file name")
    if os.path.lexists(path) and not overwrite:  # a dangling symlink too: os.link would refuse it late
        raise OutputError(f"output '{path}' already exists", hint="use --overwrite to replace it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"output '{path}' cannot be created: '{parent}' is a file, not a folder")
            break
    return path


def _icc_matches(icc: bytes | None, gray: bool) -> bool:
    if not icc or len(icc) < 20:
        return False
    space = icc[16:20]
    return space == (b"GRAY" if gray else b"RGB ")


def _quantise(values: np.ndarray, max_value: int) -> np.ndarray:
    dtype = np.uint16 if max_value > 255 else np.uint8
    scaled = (np.clip(values, np.float32(-1.0), np.float32(1.0)) + np.float32(1.0)) * np.float32(max_value / 2.0)
    return np.rint(scaled).astype(dtype)


def _alpha_for(like: LoadedImage | None, height: int, width: int, notes: list[str]) -> np.ndarray | None:
    if like is None or like.alpha is None:
        return None
    alpha = like.alpha
    if alpha.shape != (height, width):
        # Super-resolution changes the size: scale the alpha with the image (bilinear keeps soft edges soft).
        notes.append(f"alpha resized from {alpha.shape[1]} x {alpha.shape[0]} to {width} x {height}")
        resized = Image.fromarray(alpha.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
        alpha = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return alpha


def save_image(
    tensor: torch.Tensor | LoadedImage,
    path: str | os.PathLike[str],
    *,
    like: LoadedImage | None = None,
    overwrite: bool = False,
    protected: Iterable[str | os.PathLike[str]] | ProtectedFiles = (),
    bit_depth: int | None = None,
    output_set: OutputSet | None = None,
) -> SavedImage:
    """Write a ``(1, C, H, W)`` or ``(C, H, W)`` tensor in [-1, 1] (C = 1 or 3) to ``path``, atomically.

    A :class:`LoadedImage` may be given instead of a tensor: its tensor is written and it serves as ``like``.
    ``like`` is the :class:`LoadedImage` the result came from: its bit depth, alpha (resized if the size changed),
    ICC profile and EXIF are kept where the format allows (see the module docstring), and its file is protected.
    ``protected`` lists more files that must never be written (all inputs). ``bit_depth`` (8 or 16) overrides
    ``like``'s. The format follows the extension. Values outside [-1, 1] are clamped; NaN or inf is refused.
    With ``output_set`` the file is only staged (written under a hidden temporary name) and appears when the set
    is committed, together with the other files of its image.
    """
    import torch

    if isinstance(tensor, LoadedImage):
        like = like if like is not None else tensor
        tensor = tensor.tensor
    path = Path(path)
    if like is not None:  # the file the result came from, whether or not the caller listed it
        _refuse_protected(path, ProtectedFiles([like.path]))
    check_output_path(path, overwrite=overwrite, protected=protected)

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"save_image needs a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"save_image writes one image; got a batch of {tensor.shape[0]}: save each item")
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"save_image needs (1, C, H, W) or (C, H, W) with C = 1 or 3, got {tuple(tensor.shape)}")
    values = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
    if not np.isfinite(values).all():
        raise OutputError(
            f"output '{path}' was not written: the image contains NaN or infinite values",
            hint="the restoration diverged; try fewer steps, another preset, or float32",
        )

    depth = bit_depth if bit_depth is not None else (like.bit_depth if like is not None else 8)
    if depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {depth}")
    fmt = _SAVE_FORMATS[path.suffix.lower()]
    notes: list[str] = []
    gray = values.shape[0] == 1
    height, width = values.shape[1:]
    alpha = _alpha_for(like, height, width, notes)
    icc = like.icc_profile if like is not None else None
    exif = like.exif if like is not None else None
    if icc is not None and not _icc_matches(icc, gray):
        notes.append("ICC profile dropped: it does not describe " + ("grayscale" if gray else "RGB") + " pixels")
        icc = None

    # What each format can hold (see the table in the module docstring).
    if fmt in ("JPEG", "BMP") and alpha is not None:
        notes.append(f"alpha dropped: {fmt} has no alpha channel (colours kept as restored); use .png to keep it")
        alpha = None
    if depth == 16 and fmt != "PNG" and not (fmt == "TIFF" and gray and alpha is None):
        notes.append(f"16-bit reduced to 8-bit: {fmt} cannot store this image at 16 bits; use .png to keep them")
        depth = 8
    if fmt == "WEBP" and gray:
        notes.append("grayscale stored as RGB: WebP has no grayscale mode")
    if fmt == "BMP" and (icc or exif):
        notes.append("ICC profile and EXIF dropped: BMP cannot store them")
        icc = exif = None
    if fmt == "JPEG":
        notes.append("JPEG is lossy: pixel values will differ slightly; use .png for an exact copy")

    max_value = 65535 if depth == 16 else 255
    pixels = _quantise(values.transpose(1, 2, 0), max_value)  # (H, W, C)
    if alpha is not None:
        alpha_q = _quantise(alpha * np.float32(2.0) - np.float32(1.0), max_value)
        pixels = np.concatenate([pixels, alpha_q[:, :, None]], axis=2)
    mode = ("L" if gray else "RGB") + ("A" if alpha is not None else "")

    buffer = io.BytesIO()
    if fmt == "PNG" and depth == 16:
        buffer.write(_png_encode(pixels, bit_depth=16, icc_profile=icc, exif=exif))
    else:
        _pillow_save(buffer, pixels, mode, depth, fmt, icc, exif)
    if output_set is not None:
        output_set.add(path, buffer.getvalue(), overwrite=overwrite)
    else:
        write_atomic(path, buffer.getvalue(), overwrite=overwrite)
    return SavedImage(path=path, format=fmt, mode=mode, bit_depth=depth, notes=tuple(notes))


def _pillow_save(
    buffer: io.BytesIO, pixels: np.ndarray, mode: str, depth: int, fmt: str, icc: bytes | None, exif: bytes | None
) -> None:
    if depth == 16:  # only TIFF gray without alpha gets here
        image = Image.fromarray(pixels[:, :, 0])  # uint16 -> I;16
    elif mode == "L":
        image = Image.fromarray(pixels[:, :, 0], mode="L")
    else:
        image = Image.fromarray(pixels, mode=mode)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    elif fmt == "WEBP":
        options.update(lossless=True, exact=True)
    elif fmt == "TIFF" and features.check("libtiff"):
        options["compression"] = "tiff_deflate"
    elif fmt == "PNG":
        options["compress_level"] = 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.save(buffer, format=fmt, **options)


#: the longest file name (in bytes) common file systems take (ext4, XFS, Btrfs, tmpfs, APFS; NTFS counts 255 units)
NAME_MAX = 255
_TEMP_TAIL = ".{token}.tmp"


def temp_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``: ``.NAME.XXXXXXXX.tmp``, with NAME shortened when the whole would
    pass NAME_MAX, so that a legal 255-byte output name still gets a temporary file."""
    token = secrets.token_hex(4)
    room = NAME_MAX - len(os.fsencode("." + _TEMP_TAIL.format(token=token)))
    name = path.name
    while len(os.fsencode(name)) > room:  # cut whole characters, never a UTF-8 sequence in half
        name = name[:-1]
    return path.parent / ("." + name + _TEMP_TAIL.format(token=token))


def _make_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"output folder '{parent}' cannot be created: {exc.strerror or exc}") from None


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new hidden temporary file beside ``path``, flushed to the disk; removed again on failure."""
    _make_parent(path)
    temp = temp_name(path)
    try:
        # os.open with 0o666 lets the umask decide permissions, like any normally created file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:  # a stop signal mid-write too: never leave the temporary behind
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise OutputError(f"output '{path}' cannot be written: {exc.strerror or exc}") from None
        raise
    return temp


def _place(temp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename the written ``temp`` to ``path`` (the temporary is gone afterwards, also on failure)."""
    try:
        if overwrite:
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise OutputError(f"output '{path}' cannot be written: {exc.strerror or exc}") from None
            return
        try:
            # A hard link fails if the name exists: no window in which someone else's new file is replaced.
            os.link(temp, path)
        except FileExistsError:
            raise OutputError(f"output '{path}' already exists", hint="use --overwrite to replace it") from None
        except OSError:  # file systems without hard links
            if os.path.lexists(path):
                raise OutputError(f"output '{path}' already exists", hint="use --overwrite to replace it") from None
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise OutputError(f"output '{path}' cannot be written: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write to a hidden temp file beside ``path``, then rename: readers never see a half-written image."""
    _place(_write_temp(path, data), path, overwrite=overwrite)


class OutputSet:
    """The files of one image (samples, std map, main output) written as a set: each is first written in full
    under a hidden temporary name, and only when all are written are they renamed into place, in the order they
    were added, the last one (the main output) last and after the others' renames are on the disk. A failure
    (disk full, a stop signal, a refused name) before that leaves none of them; a process killed among the
    renames leaves some of the first files but never the last, so the main output's presence means the set is
    whole (``run/plan.check_existing`` redoes a set that is not).

    Use as a context manager: leaving it by an exception removes every temporary file and, when the renames had
    begun, the files they created (never one they replaced: its old content is gone already)."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, bool]] = []  # (temporary, path, overwrite)
        self._created: list[Path] = []

    def add(self, path: str | os.PathLike[str], data: bytes, *, overwrite: bool) -> None:
        path = Path(path)
        self._staged.append((_write_temp(path, data), path, overwrite))

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        try:
            for number, (temp, path, overwrite) in enumerate(staged):
                if number == len(staged) - 1 and number:
                    for folder in {p.parent for _, p, _ in staged[:-1]}:
                        _sync_folder(folder)  # the others first, also after a power cut
                new = not os.path.lexists(path)
                _place(temp, path, overwrite=overwrite)
                if new:
                    self._created.append(path)
        except BaseException:
            self._staged = staged  # what was not placed yet is removed with the rest
            raise
        self._created = []

    def discard(self) -> None:
        """Remove what was staged and what a commit that did not finish created."""
        for temp, _, _ in self._staged:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        for path in self._created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._staged, self._created = [], []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is not None:
            self.discard()
