"""Read images: the header probe, decoding to arrays with EXIF orientation applied, and :func:`load_image`.

Reading
    PNG, JPEG (and phone MPO), WebP, TIFF, BMP in modes 1, L, LA, P, PA, RGB, RGBA, RGBX, CMYK, YCbCr, I;16* and
    16-bit PNG of every colour type. Palette images become RGB, or RGBA when they have transparency. CMYK is
    converted to RGB by Pillow's plain formula (no colour management) and its CMYK ICC profile is dropped.
    Pillow reads 16-bit colour PNGs as 8-bit (measured with Pillow 13.0: it keeps the high byte only), so
    16-bit RGB / RGBA / gray+alpha PNGs go through the package's small decoder (:mod:`.png`) and keep all 16 bits.
    EXIF orientation is applied to pixels (and alpha); the saved EXIF then says "orientation 1".
    A file of several pictures (multi-page TIFF, animated PNG or WebP) is refused with the page count and how to
    extract one, never read in part; a phone's MPO is one photo plus previews and is read. GIF, HEIC, AVIF, PSD,
    PDF and JPEG 2000 are refused by name. 16-bit colour TIFF is read as 8-bit (a Pillow limit; the load notes
    say so): save such images as 16-bit PNG first.

Damaged files
    Before Pillow sees a file, :mod:`.damage` walks the structure its signature names (PNG chunks and their CRCs,
    JPEG segments and the end-of-image marker, TIFF directories and strips, RIFF and BMP sizes): a file cut or
    altered there is refused as "truncated or corrupt" with what is wrong, also by :func:`probe_image`, and never
    as "not an image", which is said only of files that start like no supported format. Pillow's refusals of a
    whole file are told apart: a variant it cannot decode (12-bit JPEG, 64-bit float TIFF) is named as such.
    Signed-integer TIFF pixels are refused (Pillow reads signed 8-bit samples as unsigned).

Masks and kernels are decoded by the same code (:func:`_decode`), so they get the same formats and checks.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from .common import (
    _READ_FORMATS,
    _SUPPORTED_TEXT,
    ImageInfo,
    LoadedImage,
    _check_pixels,
    _corrupt,
    _limit,
    _pillow_guard,
    _read_bytes,
)
from .damage import pixel_data_damage, signature_format, structure_damage, unsupported_variant
from .png import _png_decode, _png_ihdr, _PNGError

# Formats people try that this tool does not read, by their leading bytes (offset, bytes, name), so that the
# refusal can say plainly which format it is instead of doubting that the file is a picture at all.
_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"8BPS", "Photoshop (PSD)"),
    (0, b"%PDF-", "PDF"),
    (0, b"\x93NUMPY", "NumPy array (.npy)"),
)


def _extract_hint(path: Path, unit: str) -> str:
    """How to get one page or frame out of a file into a PNG this tool reads."""
    target = f"{path.stem}_{unit}1.png"
    return (
        f"save the {unit} you want as its own PNG first: magick '{path}[0]' {target} with ImageMagick, where [0] is "
        f"the first {unit}, or im = Image.open('{path}'); im.seek(0); im.save('{target}') with Pillow"
    )


def _gif_frames(data: bytes) -> int | None:
    """How many frames a GIF holds: Pillow walks its blocks without decoding a pixel. None if it cannot tell."""
    try:
        with Image.open(io.BytesIO(data), formats=("GIF",)) as gif:
            return int(gif.n_frames)
    except Exception:  # a damaged GIF is refused all the same; only the count in the message is lost
        return None


def _not_readable(data: bytes, path: Path, what: str) -> ImageReadError:
    """The refusal of a file no opener recognised: by name when its format is a known other one."""
    name = next((name for at, magic, name in _OTHER_FORMATS if data[at : at + len(magic)] == magic), None)
    if name is None:
        return ImageReadError(
            f"{what} '{path}' is not an image this tool can read (supported: {_SUPPORTED_TEXT})",
            hint="is it really a picture? re-export it as PNG",
        )
    if name == "GIF":
        frames = _gif_frames(data)
        if frames is not None and frames > 1:
            return ImageReadError(
                f"{what} '{path}' is an animated GIF of {frames} frames; GIF is not a supported input format "
                f"(supported: {_SUPPORTED_TEXT})",
                hint=_extract_hint(path, "frame"),
            )
    hint = f"convert it to PNG first, e.g. with ImageMagick: magick '{path}' {path.stem}.png"
    if name.startswith("NumPy"):
        hint = "only a blur kernel can be a .npy file, and it must be named *.npy"
    return ImageReadError(
        f"{what} '{path}' is a {name} file, which is not a supported input format (supported: {_SUPPORTED_TEXT})",
        hint=hint,
    )


def _opener_error(data: bytes, name: str) -> BaseException | None:
    """Why Pillow's opener for ``name`` refused the file: ``Image.open`` only says "cannot identify image file"
    (it swallows its plugins' SyntaxError, IndexError, struct.error...), so ask that plugin again, alone."""
    if name.upper() not in Image.OPEN:
        return None
    factory, _ = Image.OPEN[name.upper()]
    try:
        factory(io.BytesIO(data), "").close()
    except Exception as exc:
        return exc
    return None


def _refused(data: bytes, path: Path, what: str, name: str, error: BaseException | None) -> ImageReadError:
    """Pillow's refusal of a whole file of a supported format: a variant it cannot decode, or damage."""
    variant = unsupported_variant(data, error) if error is not None else None
    if variant is None:
        return _corrupt(path, what, error if error is not None else f"Pillow cannot parse its {name} header")
    return ImageReadError(
        f"{what} '{path}' is a {name} of a kind this tool cannot decode ({variant})",
        hint=f"if another program opens it, convert it to an 8- or 16-bit PNG first (e.g. magick '{path}' "
        f"{path.stem}.png); if none does, it is damaged: re-export or re-download it",
    )


def _check_tiff(image: Image.Image, path: Path, what: str) -> None:
    """Signed TIFF pixels, which Pillow misreads."""
    tags = getattr(image, "tag_v2", None)
    kinds = tags.get(339) if tags is not None else None
    if image.mode != "I" and kinds is not None and 2 in (kinds if isinstance(kinds, tuple) else (kinds,)):
        # Pillow reads signed 8-bit samples as unsigned (-18 becomes 238): refuse rather than shift the picture.
        # (Signed 16- and 32-bit samples become its signed mode I, whose range _pillow_to_arrays checks.)
        raise ImageReadError(
            f"{what} '{path}' holds signed integer pixels, which have no defined black and white levels here",
            hint="convert it to unsigned 8- or 16-bit (a blur kernel may also be saved as .npy)",
        )


def _open(data: bytes, path: Path, what: str, limit: int) -> Image.Image:
    """Check the file's structure, parse the header (Pillow decodes lazily), apply the size guard and refuse files
    of several pictures. Call inside ``_pillow_guard``."""
    damage = structure_damage(data)
    if damage is not None:
        raise _corrupt(path, what, damage)
    name = signature_format(data)
    try:
        image = Image.open(io.BytesIO(data), formats=_READ_FORMATS)
    except UnidentifiedImageError:
        if name is None:
            raise _not_readable(data, path, what) from None
        raise _refused(data, path, what, name, _opener_error(data, name)) from None
    except Image.DecompressionBombError as exc:  # only if a caller re-enabled Pillow's own guard meanwhile
        raise ImageReadError(f"{what} '{path}' is too large: {exc}") from None
    except Exception as exc:  # Pillow's plugins raise IndexError, KeyError, TypeError... on damaged headers too
        if name is None:  # Pillow's BMP opener raises OSError for any file that starts with "BM", text too
            raise _not_readable(data, path, what) from None
        raise _refused(data, path, what, name, exc) from None
    _check_pixels(path, what, image.size, limit)
    damage = pixel_data_damage(data, str(image.format), getattr(image, "tag_v2", None))
    if damage is not None:
        raise _corrupt(path, what, damage)
    if image.format == "TIFF":
        _check_tiff(image, path, what)
    try:
        frames = int(getattr(image, "n_frames", 1))  # TIFF walks its page chain; APNG and WebP read a count
    except Exception as exc:
        raise _corrupt(path, what, exc) from None
    # An MPO's extra frames are previews of the same photo, so a phone JPEG is one picture.
    if frames > 1 and image.format != "MPO":
        unit = "page" if image.format == "TIFF" else "frame"
        raise ImageReadError(
            f"{what} '{path}' is a {image.format} of {frames} {unit}s; only single-{unit} files are read, so that "
            f"no {unit} is lost silently",
            hint=_extract_hint(path, unit),
        )
    return image


def probe_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> ImageInfo:
    """Check that ``path`` is a readable image of an allowed size from its header alone (cheap: no decoding)."""
    path = Path(path)
    data = _read_bytes(path, "image")
    with _pillow_guard():
        image = _open(data, path, "image", _limit(max_pixels))
        mode = image.mode
        if image.format == "PNG":
            header = _png_ihdr(data)
            if header is not None and header[2] == 16 and header[3] in (2, 4, 6):
                mode = {2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}[header[3]]
        return ImageInfo(path=path, format=str(image.format), mode=mode, size=image.size)


# --------------------------------------------------------------------------------------------------------------
# Decoding to arrays


@dataclass
class _Decoded:
    pixels: np.ndarray  # (H, W, C) uint8 / uint16 (or float32 for mode F, kernels only); C = 1 or 3
    alpha: np.ndarray | None  # (H, W), same dtype as pixels
    max_value: float  # 255, 65535, or 1.0 for float
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None
    exif: Image.Exif | None
    notes: list[str]


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as ``ImageOps.exif_transpose`` does to an image."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return np.rot90(array, k=2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _decode(path: Path, what: str, limit: int, *, allow_float: bool = False) -> _Decoded:
    data = _read_bytes(path, what)
    with _pillow_guard():
        image = _open(data, path, what, limit)
        fmt = str(image.format)
        notes: list[str] = []
        ihdr = _png_ihdr(data) if fmt == "PNG" else None
        if ihdr is not None and ihdr[2] == 16 and ihdr[3] in (2, 4, 6):
            # Pillow would keep only the high byte of each sample: decode these ourselves.
            try:
                png = _png_decode(data)
            except _PNGError as exc:
                raise _corrupt(path, what, exc) from None
            exif = Image.Exif()
            if png.exif:
                with contextlib.suppress(Exception):
                    exif.load(png.exif)
            return _finish(png.pixels, png.alpha, 65535.0, 16, png.mode, fmt, png.icc_profile, exif, notes)

        tiff_16bit_colour = (
            fmt == "TIFF"
            and image.mode in ("RGB", "RGBA", "CMYK")
            and any(isinstance(tile.args, tuple) and tile.args and ";16" in str(tile.args[0]) for tile in image.tile)
        )
        try:
            image.load()
        except Exception as exc:  # decoders raise OSError, SyntaxError, struct.error, zlib.error, IndexError...
            raise _refused(data, path, what, signature_format(data) or fmt, exc) from None
        if tiff_16bit_colour:
            notes.append("16-bit colour TIFF was read as 8-bit (Pillow cannot decode it as 16-bit); use 16-bit PNG")
        try:
            exif = image.getexif()
        except Exception:  # malformed EXIF must not stop a restoration; the pixels are fine
            exif = Image.Exif()
            notes.append("unreadable EXIF data was dropped")
        icc = image.info.get("icc_profile") or None
        mode = image.mode
        pixels, alpha, max_value, depth = _pillow_to_arrays(image, path, what, allow_float)
        if mode == "CMYK":
            dropped = "; its CMYK colour profile was dropped" if icc else ""
            icc = None  # a CMYK profile does not describe the RGB pixels we produce
            notes.append(f"converted from CMYK to RGB without colour management (Pillow's plain formula){dropped}")
        return _finish(pixels, alpha, max_value, depth, mode, fmt, icc, exif, notes)


def _pillow_to_arrays(
    image: Image.Image, path: Path, what: str, allow_float: bool
) -> tuple[np.ndarray, np.ndarray | None, float, int]:
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)[:, :, None], None, 65535.0, 16
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(
                f"{what} '{path}' holds integer pixels from {values.min()} to {values.max()}, outside 0..65535, "
                "which this tool cannot use",
                hint="convert it to 16-bit",
            )
        return values.astype(np.uint16)[:, :, None], None, 65535.0, 16
    if mode == "F":
        if not allow_float:
            raise ImageReadError(
                f"{what} '{path}' holds 32-bit float pixels, which have no defined white level",
                hint="convert it to 8- or 16-bit",
            )
        return np.asarray(image, dtype=np.float32)[:, :, None], None, 1.0, 32
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            image = image.convert("RGB")  # CMYK, YCbCr, RGBX, HSV...
        except (ValueError, OSError):
            raise ImageReadError(
                f"{what} '{path}' uses colour mode {mode}, which this tool cannot convert",
                hint="re-export it as RGB",
            ) from None
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    alpha = None
    if image.mode in ("LA", "RGBA"):
        alpha = np.ascontiguousarray(array[:, :, -1])
        array = array[:, :, :-1]
    return np.ascontiguousarray(array), alpha, 255.0, 8


# For a TIFF, Pillow's getexif() is the image's own tag directory: these tags describe the input's pixel layout
# (size, bits, compression, strips, ICC). Written into another file as "EXIF" they would contradict it (a TIFF
# output then cannot even be opened), so only descriptive tags (camera, date, GPS, EXIF sub-IFD) are kept.
_TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339}
    | {340, 341, 347, 529, 530, 531, 532, 34675}
)


def _finish(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    max_value: float,
    depth: int,
    mode: str,
    fmt: str,
    icc: bytes | None,
    exif: Image.Exif | None,
    notes: list[str],
) -> _Decoded:
    orientation = exif.get(0x0112, 1) if exif is not None else 1
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        pixels = np.ascontiguousarray(_orient(pixels, orientation))
        if alpha is not None:
            alpha = np.ascontiguousarray(_orient(alpha, orientation))
    if exif is not None:
        for tag in _TIFF_LAYOUT_TAGS.intersection(exif):
            del exif[tag]
        if 0x0112 in exif:
            exif[0x0112] = 1  # the pixels are upright now; a kept tag would rotate them a second time
    return _Decoded(pixels, alpha, max_value, depth, mode, fmt, icc, exif, notes)


# --------------------------------------------------------------------------------------------------------------
# Public loading


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file into a ``(1, C, H, W)`` float32 tensor in [-1, 1] plus what saving needs.

    C is 1 for grayscale files (also gray + alpha) and 3 for everything else; use :func:`to_channels` when a prior
    needs the other count. Raises :class:`~diffrestore.errors.ImageReadError` with a one-line message naming the
    file for anything that cannot be read (missing, empty, not an image, truncated, above the pixel limit).
    """
    import torch

    path = Path(path)
    decoded = _decode(path, "image", _limit(max_pixels))
    scale = np.float32(2.0 / decoded.max_value)
    values = decoded.pixels.astype(np.float32) * scale - np.float32(1.0)
    tensor = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)[None]))
    alpha = None
    if decoded.alpha is not None:
        alpha = decoded.alpha.astype(np.float32) * np.float32(1.0 / decoded.max_value)
    exif_bytes = None
    if decoded.exif is not None and len(decoded.exif):
        try:
            exif_bytes = decoded.exif.tobytes()
        except Exception:
            decoded.notes.append("EXIF data could not be re-encoded and will not be saved")
    height, width = decoded.pixels.shape[:2]
    return LoadedImage(
        tensor=tensor,
        path=path,
        format=decoded.format,
        mode=decoded.mode,
        bit_depth=decoded.bit_depth,
        size=(width, height),
        alpha=alpha,
        icc_profile=decoded.icc_profile,
        exif=exif_bytes,
        notes=tuple(decoded.notes),
    )
