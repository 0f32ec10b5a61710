"""Property-based fuzzing of everything that parses a user's file: the image, mask and kernel loaders and the
models.toml parser. Random bytes and mutated valid files (truncated, bytes flipped, forged PNG / TIFF / BMP / .npy
headers and dimensions) either load or raise one of our own errors (diffrestore.errors), never anything else, and
never allocate past the pixel guard (DIFFRESTORE_MAX_PIXELS, set small here).

Bounded and reproducible: a fixed number of examples per test, no deadline, derandomized (the same examples on
every run and in CI), no example database written.
"""

from __future__ import annotations

import contextlib
import io
import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffrestore.errors import DiffrestoreError
from diffrestore.imageio import MAX_PIXELS_ENV, load_image, load_kernel, load_mask, probe_image
from diffrestore.imageio import png as imageio_png
from diffrestore.registry import load_registry
from diffrestore.registry.parse import DEFAULT_REGISTRY

LIMIT = 64 * 64  # the pixel guard during these tests
SIZE = (12, 10)  # (W, H) of the seed images, well within the limit
# What one load may allocate through Python and numpy: a few copies of a LIMIT-pixel float32 RGBA image and of
# the file's bytes, plus slack for bookkeeping. A forged header that slipped past the guard would ask for
# gigabytes (and a forged 5000 x 5000 .npy asked for 100 MB before the guard read .npy headers).
BUDGET = 8 * LIMIT * 4 * 4 + (4 << 20)

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (SIZE[1], SIZE[0], 4), dtype=np.uint8)
    gray = rgb[:, :, 0].copy()
    npy = io.BytesIO()
    np.save(npy, rng.random((5, 7)).astype(np.float32))
    return {
        "rgb.png": _encoded(rgb, "PNG"),
        "rgba.png": _encoded(rgba, "PNG"),
        "rgba16.png": imageio_png._png_encode(rgba.astype(np.uint16) * 257, bit_depth=16),
        "gray.png": _encoded(gray, "PNG"),
        "photo.jpg": _encoded(rgb, "JPEG"),
        "raw.tif": _encoded(rgb, "TIFF"),
        "lzw.tif": _encoded(rgba, "TIFF", compression="tiff_lzw"),
        "gray.bmp": _encoded(gray, "BMP"),
        "rgb.bmp": _encoded(rgb, "BMP"),
        "rgb.webp": _encoded(rgb, "WEBP", lossless=True),
        "kernel.npy": npy.getvalue(),
    }


SEEDS = _seeds()


# ----------------------------------------------------------------------------------------------------------------
# Forging headers: each returns the file with its claimed width and height replaced


def _forge_png(data: bytes, width: int, height: int) -> bytes:
    # IHDR starts at byte 8: length (4), type (4), width (4), height (4), ...; recompute its CRC so the forged
    # header is believed and the decoder, not the CRC check, meets the lie.
    body = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + body + struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF) + data[33:]


def _forge_bmp(data: bytes, width: int, height: int) -> bytes:
    # BITMAPINFOHEADER: width and height are signed 32-bit at bytes 18 and 22 (a negative height = top-down).
    return data[:18] + struct.pack("<ii", _signed(width), _signed(height)) + data[26:]


def _forge_tiff(data: bytes, width: int, height: int) -> bytes:
    # Rewrite the ImageWidth (256) and ImageLength (257) entries of the first IFD, whatever their type.
    out = bytearray(data)
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                struct.pack_into(order + "HI", out, entry + 2, 4, 1)  # make it a LONG so large values fit
            struct.pack_into(order + "I", out, entry + 8, value & 0xFFFFFFFF)
    return bytes(out)


def _forge_npy(data: bytes, width: int, height: int) -> bytes:
    from numpy.lib import format as npy

    stream = io.BytesIO(data)
    npy.read_magic(stream)
    npy.read_array_header_1_0(stream)
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (height, width)})
    return header.getvalue() + data[stream.tell():]


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


FORGERS: dict[str, Callable[[bytes, int, int], bytes]] = {
    ".png": _forge_png,
    ".bmp": _forge_bmp,
    ".tif": _forge_tiff,
    ".npy": _forge_npy,
}

# Sizes around the guard and the integer limits of the formats, and anything else.
DIMENSIONS = st.one_of(
    st.sampled_from([0, 1, 2, 63, 64, 65, LIMIT, LIMIT + 1, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1]),
    st.integers(min_value=0, max_value=2**32 - 1),
)


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file changed in one or more ways, under its own name (so the format's suffix rules apply)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    suffix = Path(name).suffix
    if suffix in FORGERS and draw(st.booleans()):
        data = bytearray(FORGERS[suffix](bytes(data), draw(DIMENSIONS), draw(DIMENSIONS)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return name, bytes(data)


SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8L",
              b"\x93NUMPY\x01\x00", b"GIF89a"]
random_files = st.tuples(
    st.sampled_from(["x.png", "x.jpg", "x.tif", "x.bmp", "x.webp", "x.npy"]),
    st.one_of(
        st.binary(max_size=600),
        # a real signature followed by noise gets past the first checks of each opener
        st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=400)).map(b"".join),
    ),
)


# ----------------------------------------------------------------------------------------------------------------
# The watch: only our errors, and no allocation past the guard


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Hypothesis runs many examples per test function, so no function-scoped tmp_path; one folder for the module,
    # and the pixel limit set for the module only.
    with tempfile.TemporaryDirectory(prefix="diffrestore-fuzz-") as folder, pytest.MonkeyPatch.context() as patch:
        patch.setenv(MAX_PIXELS_ENV, str(LIMIT))
        # One untraced load of every seed every way first: the lazy imports and caches of a first call are no
        # allocation of the file's.
        for name, data in SEEDS.items():
            (Path(folder) / name).write_bytes(data)
            for reader in READERS:
                with contextlib.suppress(DiffrestoreError):
                    reader(Path(folder) / name)
        yield Path(folder)


@contextlib.contextmanager
def _pillow_allocations_checked() -> Iterator[None]:
    """Fail if Pillow is asked for an image buffer above the limit: its buffers are C memory tracemalloc misses."""
    core = Image.core
    real_new, real_fill = core.new, core.fill

    def checked(real: Callable) -> Callable:
        def allocate(mode, size, *args):
            assert size[0] * size[1] <= LIMIT, f"Pillow allocated {size[0]} x {size[1]} past the guard"
            return real(mode, size, *args)

        return allocate

    core.new, core.fill = checked(real_new), checked(real_fill)
    try:
        yield
    finally:
        core.new, core.fill = real_new, real_fill


def _only_our_errors(call: Callable[[], object]) -> object:
    """Run one load: it returns or raises a DiffrestoreError; Python and numpy allocate at most BUDGET bytes."""
    tracemalloc.start()
    try:
        with _pillow_allocations_checked():
            try:
                return call()
            except DiffrestoreError as error:
                assert "\n" not in str(error)
                return error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= BUDGET, f"a load allocated {peak:,} bytes, past the guard's budget of {BUDGET:,}"


def _pixels(result: object) -> int:
    """Pixels of what a loader returned: a LoadedImage, an ImageInfo (header only) or a mask / kernel tensor."""
    result = getattr(result, "tensor", result)
    if isinstance(getattr(result, "size", None), tuple):
        width, height = result.size  # type: ignore[union-attr]
        return width * height
    return int(np.prod(result.shape[-2:]))  # type: ignore[union-attr]


READERS: tuple[Callable[[Path], object], ...] = (load_image, probe_image, lambda p: load_mask(p, SIZE), load_kernel)


def _load_every_way(path: Path) -> None:
    for reader in READERS:
        result = _only_our_errors(lambda reader=reader: reader(path))
        assert isinstance(result, DiffrestoreError) or _pixels(result) <= LIMIT


@FUZZ
@given(case=mutated_files())
def test_mutated_files_raise_only_our_errors(workdir: Path, case: tuple[str, bytes]) -> None:
    name, data = case
    (workdir / name).write_bytes(data)
    _load_every_way(workdir / name)


@FUZZ
@given(case=random_files)
def test_random_bytes_raise_only_our_errors(workdir: Path, case: tuple[str, bytes]) -> None:
    name, data = case
    (workdir / name).write_bytes(data)
    _load_every_way(workdir / name)


def test_the_seeds_load_and_a_forged_size_meets_the_guard(workdir: Path) -> None:
    # The fuzzing above is only worth something if the unmutated seeds load and a forged size is refused.
    for name, data in SEEDS.items():
        (workdir / name).write_bytes(data)
        loader = load_kernel if name.endswith(".npy") else load_image
        assert not isinstance(_only_our_errors(lambda loader=loader, name=name: loader(workdir / name)),
                              DiffrestoreError), name
    for suffix, forge in FORGERS.items():
        seed = next(data for name, data in SEEDS.items() if name.endswith(suffix))
        (workdir / f"big{suffix}").write_bytes(forge(seed, 5000, 5000))
        loader = load_kernel if suffix == ".npy" else load_image
        error = _only_our_errors(lambda loader=loader, suffix=suffix: loader(workdir / f"big{suffix}"))
        assert isinstance(error, DiffrestoreError) and "above the limit of 4,096" in str(error), (suffix, error)


@pytest.mark.parametrize("name", [name for name in SEEDS if not name.endswith(".npy")])
def test_every_cut_of_a_seed_is_called_truncated(workdir: Path, name: str) -> None:
    # Cut at every byte from the shortest file that still shows its format (a BMP's 14-byte file header): never
    # accepted (Pillow read a PNG cut before IEND), never "not an image" (it said so of a PNG cut after IHDR).
    data = SEEDS[name]
    wrong = {}
    # Every byte of the headers and of the tail, every 11th in between: the pixel data is all alike.
    ends = sorted({*range(14, 160), *range(160, len(data), 11), *range(max(14, len(data) - 24), len(data))})
    for end in ends:
        (workdir / name).write_bytes(data[:end])
        for reader in (probe_image, load_image):
            error = _only_our_errors(lambda reader=reader: reader(workdir / name))
            if not isinstance(error, DiffrestoreError) or "truncated or corrupt" not in str(error):
                wrong[end] = f"{reader.__name__}: {error if isinstance(error, DiffrestoreError) else 'accepted'}"
    assert not wrong, f"{len(wrong)} of {len(ends)} cuts: {dict(list(wrong.items())[:3])}"


# ----------------------------------------------------------------------------------------------------------------
# models.toml


# Two seeds: the shipped registry (every family as it really is) and a compact one with every kind of key, where
# a mutation of a random line lands on an interesting key far more often.
COMPACT_REGISTRY = """schema_version = 1
[models.own]
family = "builtin"
aliases = ["default", "mine"]
description = "d"
licence = "L"
resolution = 0
tasks = ["any"]
verified = true
path = "weights/default"
[models.adm]
family = "adm"
description = "d"
licence = "L"
resolution = 16
tasks = ["any"]
verified = false
arch = { image_size = 16, num_channels = 32, num_res_blocks = 1, channel_mult = "1,2", learn_sigma = true }
diffusion = { steps = 1000, noise_schedule = "linear" }
[[models.adm.files]]
path = "m.pt"
sha256 = "81d535743156ec6be34d8668e6920da94f0614074d7793a16c8fa9e306237faa"
size = 10
[[models.adm.sources]]
type = "hf"
repo = "owner/repo"
revision = "0123456789abcdef0123456789abcdef01234567"
remote = { "m.pt" = "other.pt" }
[[models.adm.sources]]
type = "url"
url = "https://example.com/m.pt"
file = "m.pt"
note = "n"
[models.sd]
family = "latent-kl"
description = "d"
licence = "L"
resolution = 32
tasks = ["any"]
prompt = "p"
variant = "fp16"
latent_scale = 0.18215
verified = false
[[models.sd.files]]
path = "unet/config.json"
sha256 = ""
size = 0
[[models.sd.sources]]
type = "url"
url = "http://127.0.0.1:8000/unet/config.json"
file = "unet/config.json"
[models.tiny]
family = "tiny"
of = "pixel"
seed = 0
description = "d"
licence = "L"
resolution = 8
tasks = ["any"]
verified = true
[models.tiny.config.unet]
sample_size = 8
"""
REGISTRY_SEEDS = [COMPACT_REGISTRY, DEFAULT_REGISTRY.read_text(encoding="utf-8")]
TOML_VALUES = st.one_of(
    st.sampled_from(['""', "0", "-1", "1e400", "nan", "true", "[]", "{}", '["a", 1]', '"../x"', '"/abs"',
                     '"https://[::1"', '"http://[x"', '"a\\u0000b"', '{ a = 1 }', "[[1]]", "1979-05-27"]),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.integers().map(str),
)


@st.composite
def mutated_registries(draw: st.DrawFn) -> bytes:
    lines = draw(st.sampled_from(REGISTRY_SEEDS)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "value", "value", "swap", "junk"]))
        keyed = [n for n, line in enumerate(lines) if "=" in line and not line.startswith("#")]
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "value" and keyed:
            i = draw(st.sampled_from(keyed))
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(TOML_VALUES)}\n"
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(i, draw(st.text(max_size=30)) + "\n")
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1:]
    return data


def _parse(workdir: Path, data: bytes) -> None:
    (workdir / "models.toml").write_bytes(data)
    try:
        load_registry(workdir / "models.toml")
    except DiffrestoreError as error:
        assert "\n" not in str(error)


@FUZZ
@given(data=mutated_registries())
# Found by longer runs of this test: an unclosed IPv6 host made urllib raise ValueError; a non-UTF-8 byte made
# read_text raise UnicodeDecodeError.
@example(data=COMPACT_REGISTRY.replace("https://example.com/m.pt", "https://[::1").encode())
@example(data=b"\x80" + COMPACT_REGISTRY.encode())
def test_mutated_registry_raises_only_our_errors(workdir: Path, data: bytes) -> None:
    _parse(workdir, data)


def test_the_registry_seeds_are_valid(workdir: Path) -> None:
    for seed in REGISTRY_SEEDS:
        (workdir / "models.toml").write_text(seed, encoding="utf-8")
        assert load_registry(workdir / "models.toml").names()


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
))
def test_random_registry_raises_only_our_errors(workdir: Path, data: bytes) -> None:
    _parse(workdir, data)
