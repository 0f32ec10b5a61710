"""Any image size on a fixed-size prior: the denoiser runs on overlapping windows of the prior's native size and
the window outputs are blended with smooth weights at every call, so tiles agree at every step of every solver and
no solver changes (they see one denoiser of the whole image).

    D(x, sigma)[p] = sum_k w_k(p) D_native(window_k(x), sigma)[p] / sum_k w_k(p)

- Weights: a raised cosine across each window's overlap band, 1 inside (a partition of unity where windows
  overlap), floored so that pixels only one window sees keep its output.
- The window grid shifts between calls by an offset drawn from the call's sigma (a hash of its float32 bits), so
  no fixed grid is imprinted and the result does not depend on what else is in the batch or on how many calls came
  before (a per-call counter would differ between a batched run and one image at a time).
- Windows always lie inside the image: the shifted grid's first and last windows are clamped to the image's
  borders (padding beyond them would invent pixels the full-size prior never sees: measured on an exact Gaussian
  prior, reflect padding there tripled the tiled denoiser's error). Images smaller than a window are
  reflect-padded up to it (replicated where too small to reflect) and cropped back.
- At the native size the wrapper is the prior itself (bitwise).
- Tiles go through the network in chunks of ``tile_batch`` (the engine passes --batch-size on GPUs and 1 on the
  CPU, where one-window calls keep results bitwise independent of the batch, see ``PerItemCalls``).

Latent priors tile in latent space the same way (windows of the native latent size; the autoencoder is fully
convolutional, and diffusers' own VAE tiling is switched on for large images). Discrete priors do not tile: their
transformer has positional embeddings for one token grid, and blending categorical predictions of overlapping
windows has no agreed meaning for masked-token diffusion.
"""

from __future__ import annotations

import contextlib
import math
import struct
from typing import Any

import torch

from ..errors import UsageError
from .base import check_channels, sigma_per_item


def window_weights(size: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """(size,) float32: raised cosine over the first and last ``overlap`` samples, 1 between, never below 1e-3."""
    w = torch.ones(size, dtype=torch.float32, device=device)
    if overlap > 0:
        ramp = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(overlap, dtype=torch.float32, device=device) + 0.5)
                                     / overlap)
        w[:overlap] = ramp
        w[size - overlap :] = torch.minimum(w[size - overlap :], ramp.flip(0))
    return w.clamp_min(1e-3)


def grid_offset(sigma: float, stride: tuple[int, int]) -> tuple[int, int]:
    """A pseudo-random (dy, dx) in [0, stride) determined by sigma's float32 bits (reproducible, batch-free)."""
    bits = struct.unpack("<I", struct.pack("<f", float(sigma)))[0]
    mixed = (bits * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    mixed ^= mixed >> 15
    mixed = (mixed * 0x2C1B3C6D) & 0xFFFFFFFF
    mixed ^= mixed >> 13
    return (mixed % max(1, stride[0]), (mixed >> 16) % max(1, stride[1]))


def _grid_count(size: int, window: int, stride: int, offset: int) -> int:
    """Windows of a ``stride`` grid shifted back by ``offset`` that reach across ``size`` (before clamping)."""
    return 1 if size <= window else math.ceil((size + offset - window) / stride) + 1


def _starts(size: int, window: int, stride: int, offset: int) -> list[int]:
    """Window starts along one axis: a grid of ``stride`` shifted back by ``offset``, each start clamped into
    [0, size - window] so every window lies inside the image (no invented pixels at its borders), duplicates
    dropped. Consecutive starts are at most ``stride`` apart, so the windows cover the axis."""
    if size <= window:
        return [0]
    count = _grid_count(size, window, stride, offset)
    return sorted({min(max(k * stride - offset, 0), size - window) for k in range(count)})


def _pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect padding where the image is large enough, replicate beyond (reflect needs pad < size)."""
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w:
        return torch.nn.functional.pad(x, (left, right, top, bottom), mode="reflect")
    return torch.nn.functional.pad(x, (left, right, top, bottom), mode="replicate")


class TiledPrior:
    """A prior with a fixed native size (pixel or latent) made to take any size. Everything but ``denoise`` and
    the size checks is the wrapped prior's.

    Args: prior; overlap (None: a quarter of the window); tile_batch: windows per network call; window: the
    window size (default the prior's native size); pad_small: pad inputs smaller than a window up to it (pixel
    priors, which take nothing else) or pass them through (latent priors, whose networks take any grid)."""

    def __init__(self, prior: Any, *, overlap: int | None = None, tile_batch: int = 1,
                 window: tuple[int, int] | None = None, pad_small: bool = True) -> None:
        self.inner = prior
        self.pad_small = pad_small
        self.window = tuple(int(v) for v in (window or prior.native_size))
        h0, w0 = self.window
        self.overlap = int(overlap) if overlap is not None else min(h0, w0) // 4
        if not 0 <= self.overlap <= min(h0, w0) // 2:
            raise UsageError(f"--tile-overlap {self.overlap} must be between 0 and half the window "
                             f"({min(h0, w0) // 2} for {w0}x{h0})")
        self.tile_batch = max(1, int(tile_batch))
        self.native_size = None  # any size now
        self.shift = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ---------------------------------------------------------------------------------------------- sizes
    def check_image_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        check_channels(int(self.inner.channels), int(tuple(shape)[-3]))

    def tiles_input(self, h: int, w: int) -> bool:
        """Whether an (H, W) input (in the prior's own units) goes through windows, not straight to the prior."""
        h0, w0 = self.window
        return (h, w) != (h0, w0) and (self.pad_small or h > h0 or w > w0)

    def tiles(self, size: tuple[int, int]) -> int:
        """Windows per denoiser call for an (H, W) input (at most: the grid shift can add a row or column)."""
        (h0, w0), (h, w) = self.window, size
        if not self.tiles_input(h, w):
            return 1
        sh, sw = h0 - self.overlap, w0 - self.overlap
        return _grid_count(h, h0, sh, sh) * _grid_count(w, w0, sw, sw)  # the most any grid shift gives

    # ------------------------------------------------------------------------------------------- denoiser
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, *args: Any) -> torch.Tensor:
        h0, w0 = self.window
        n, _, h, w = x.shape
        if not self.tiles_input(h, w):
            return self.inner.denoise(x, sigma, *args)
        s = sigma_per_item(sigma, n, x.device)
        # small images: pad up to the window, crop back
        ph, pw = max(0, h0 - h), max(0, w0 - w)
        canvas = _pad(x, 0, ph, 0, pw) if ph or pw else x
        big_h, big_w = canvas.shape[-2:]
        sh, sw = (h0 - self.overlap, w0 - self.overlap)
        dy, dx = grid_offset(float(s[0]), (sh, sw)) if self.shift else (0, 0)
        rows, cols = _starts(big_h, h0, sh, dy), _starts(big_w, w0, sw, dx)
        weight = (window_weights(h0, self.overlap if len(rows) > 1 else 0, x.device)[:, None]
                  * window_weights(w0, self.overlap if len(cols) > 1 else 0, x.device)[None, :])
        corners = [(y, x_) for y in rows for x_ in cols]
        out = torch.zeros_like(canvas)
        norm = torch.zeros((big_h, big_w), dtype=canvas.dtype, device=canvas.device)
        for start in range(0, len(corners), self.tile_batch):
            chunk = corners[start : start + self.tile_batch]
            windows = torch.cat([canvas[:, :, y : y + h0, x_ : x_ + w0] for y, x_ in chunk])
            denoised = self.inner.denoise(windows, s.repeat(len(chunk)), *args)
            for k, (y, x_) in enumerate(chunk):
                out[:, :, y : y + h0, x_ : x_ + w0] += denoised[k * n : (k + 1) * n] * weight
                norm[y : y + h0, x_ : x_ + w0] += weight
        return (out / norm)[:, :, :h, :w]


def tile_prior(prior: Any, *, overlap_px: int | None, batch_size: int = 1, device: Any = "cpu") -> Any:
    """``prior`` made to take any size: pixel priors with a native size tile in pixels, latent ones in latent space
    (windows of native size / the autoencoder's factor, only for canvases larger than that; their autoencoder's own
    tiling on, where diffusers has it). Fully convolutional and discrete priors come back as they are. Windows go
    through the network ``batch_size`` at a time on GPUs, one at a time on the CPU (bitwise batch-independent
    results, see ``PerItemCalls``)."""
    tile_batch = 1 if torch.device(device).type == "cpu" else max(1, int(batch_size))
    native = getattr(prior, "native_size", None)
    kind = getattr(prior, "kind", "pixel")
    if native is None or kind == "discrete" or isinstance(prior, TiledPrior):
        return prior
    if kind == "pixel":
        return TiledPrior(prior, overlap=overlap_px, tile_batch=tile_batch)
    _, *window = prior.latent_shape(prior.padded_shape((int(prior.channels), *native)))
    factor = native[0] // window[0]  # the autoencoder's down-sampling
    overlap = None if overlap_px is None else overlap_px // factor
    autoencoder = getattr(prior, "autoencoder", None)
    if hasattr(autoencoder, "enable_tiling"):
        # diffusers' tiled VAE acts only on images above its own tile size; VQModel declares it but has none
        # (NotImplementedError), and its decoder takes any size anyway
        with contextlib.suppress(NotImplementedError):
            autoencoder.enable_tiling()
    return TiledPrior(prior, overlap=overlap, tile_batch=tile_batch, window=tuple(window), pad_small=False)


def tiling_note(prior: Any, image_shape: tuple[int, int, int]) -> tuple[int, str] | None:
    """(windows per call, a one-line note) when ``prior`` tiles an image of ``image_shape`` (C, H, W), else None."""
    if not isinstance(prior, TiledPrior):
        return None
    _, h, w = image_shape
    size, unit = (h, w), "px"
    if getattr(prior, "kind", "pixel") == "latent":  # the latent canvas the solver works on
        _, *size = prior.latent_shape(prior.padded_shape(image_shape))
        unit = "latent cells"
    if not prior.tiles_input(*size):
        return None
    n = prior.tiles(tuple(size))
    h0, w0 = prior.window
    what = "window" if n == 1 else "overlapping windows"
    return n, (f"the model works at {w0}x{h0} {unit}: this {w}x{h} image is denoised in {n} {what} per network "
               f"call (overlap {prior.overlap} {unit}; --tile-overlap)")
