"""Compressed-sensing MRI: multi-coil Cartesian k-space sampling ``y_c = M * F(S_c x)`` with its exact adjoint,
exact Gram solves for line masks, and the reconstructions MRI users compare against (zero-filled, RSS).

Conventions (docs/mri.md):

- An image is complex, carried as two real channels (real, imaginary): ``(N, 2, H, W)``.
- ``F`` is the centred, orthonormal 2-D DFT, ``fftshift(fft2(ifftshift(x), norm="ortho"))`` (fastMRI's ``fft2c``,
  sigpy's ``fft(center=True)``): the k-space centre (DC) sits at index ``(H // 2, W // 2)`` and ``F`` is unitary.
- ``S_c`` are ``C`` coil sensitivity maps, complex ``(C, H, W)`` (None: one coil of ones). Normalised maps
  (``sum_c |S_c|^2 = 1`` where the object is, as ESPIRiT's and InverseBench's) make the coil stack an isometry.
- ``M`` is a 0/1 sampling mask ``(H, W)`` (``operators.mri_masks``), the same for every coil.
- A measurement is the masked k-space of every coil on the full grid (zeros where not sampled), carried as real
  channels ``(N, 2C, H, W)``, interleaved: channel ``2c`` is coil ``c``'s real part, ``2c + 1`` its imaginary part.

The real representation of a complex linear map is exact for the real inner product, ``<a, b> = Re sum conj(a) b``,
so ``adjoint`` is the complex adjoint ``A^H y = sum_c conj(S_c) F^H (M y_c)`` written in channels.

Gram solves ``(s A A^T + t I)^-1`` (module doc of ``base.LinearOperator.gram_solve``), fastest first:

1. one coil with ``|S| = 1`` everywhere (maps of ones): ``A A^H = M``, diagonal (``gram_diag``);
2. a line mask (every k-space column, or every row, fully sampled or not at all; the Cartesian masks MRI scanners
   acquire), any maps: ``F = F_y (x) F_x`` and ``M = I (x) diag(m)`` commute along the fully sampled (readout)
   axis, so ``A^H A`` splits into one small Hermitian matrix per image row, ``E_y = G * K_y`` (elementwise), with
   ``G = F_x^H diag(m) F_x`` and ``K_y[i, j] = sum_c conj(S_c[y, i]) S_c[y, j]``. Their eigendecompositions
   (computed once, on first use) give ``(t I + s A^H A)^-1`` for every ``s`` and ``t`` in two small matrix
   products per row, and ``u = (v - s A z) / t`` with ``z = (t I + s A^H A)^-1 A^H v`` (push-through identity)
   solves the measurement-space system exactly. The same decomposition gives the exact ``pinv`` and ``norm``;
3. otherwise (2-D masks with several coils) the contract's conjugate gradients.

Normalised maps alone do not make ``A A^H`` diagonal: ``A A^H = M Q M`` where ``Q = F S S^H F^H`` is the
projection onto coil-consistent k-space, which does not commute with a partial mask. Only a full mask gives a
closed form there (``A^H A = I``), which route 2 covers.
"""

from __future__ import annotations

import math

import torch

from ..errors import SizeMismatchError, UsageError
from .base import LinearOperator, OperatorKind

#: Eigenvalues below this fraction of the largest are treated as zero by the exact pseudo-inverse.
PINV_RCOND = 1e-5


# ----------------------------------------------------------------------------------------- complex <-> channels


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``(N, 2K, H, W)`` real channels (pairs of real, imaginary) -> ``(N, K, H, W)`` complex."""
    n, channels, height, width = x.shape
    pairs = x.reshape(n, channels // 2, 2, height, width).movedim(2, -1).contiguous()
    return torch.view_as_complex(pairs)


def complex_to_channels(z: torch.Tensor) -> torch.Tensor:
    """``(N, K, H, W)`` complex -> ``(N, 2K, H, W)`` real channels (real, imaginary interleaved)."""
    n, k, height, width = z.shape
    return torch.view_as_real(z).movedim(-1, 2).reshape(n, 2 * k, height, width)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """``|x|`` of images carried as (real, imaginary) channels: ``(N, 2, H, W)`` -> ``(N, 1, H, W)``."""
    return torch.sqrt(x[:, 0:1] ** 2 + x[:, 1:2] ** 2)


# ------------------------------------------------------------------------------------------------ centred FFTs


def fft2c(z: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D DFT over the last two axes (DC at index ``size // 2``; exact for odd sizes too)."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=dims), norm="ortho"), dim=dims)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """The inverse (and adjoint) of ``fft2c``: the shifts swap roles, which matters for odd sizes."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims), norm="ortho"), dim=dims)


def _centred_dft_matrix(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``size x size`` matrix of the centred orthonormal 1-D DFT (columns: transforms of unit vectors)."""
    eye = torch.eye(size, dtype=dtype, device=device)
    return torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)


# ---------------------------------------------------------------------------------------------------- coil maps


def normalise_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Maps scaled so that ``sum_c |S_c|^2 = 1`` at every pixel where any coil sees the object (0 elsewhere)."""
    energy = (maps.abs() ** 2).sum(dim=0, keepdim=True)
    return torch.where(energy > eps, maps / energy.clamp_min(eps).sqrt(), torch.zeros_like(maps))


def simulated_maps(coils: int, size: tuple[int, int], *, radius: float = 1.5) -> torch.Tensor:
    """``coils`` smooth complex sensitivity maps ``(C, H, W)`` (complex64), normalised (``sum_c |S_c|^2 = 1``).

    Coil ``c`` sits on a circle of ``radius`` (in half-sizes of the image) around the centre at angle
    ``2 pi c / C``; its magnitude falls off as one over the distance to it and its phase turns with the direction
    from it, the shape of a birdcage coil's receive field. For tests and simulations when no maps were measured.
    """
    if coils < 1:
        raise UsageError(f"mri: coils must be >= 1, got {coils}")
    height, width = size
    ys = (torch.arange(height, dtype=torch.float32) - height // 2) / max(height / 2, 1.0)
    xs = (torch.arange(width, dtype=torch.float32) - width // 2) / max(width / 2, 1.0)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    maps = []
    for c in range(coils):
        angle = 2 * math.pi * c / coils
        dy, dx = grid_y - radius * math.sin(angle), grid_x - radius * math.cos(angle)
        distance = torch.sqrt(dx**2 + dy**2)
        maps.append(torch.polar(1.0 / distance, torch.atan2(dy, dx) + angle))
    return normalise_maps(torch.stack(maps)).to(torch.complex64)


# ----------------------------------------------------------------------------------------------------- operator


class MultiCoilMRI(LinearOperator):
    """``y_c = M * F(S_c x)`` for complex images ``(N, 2, H, W)``; measurements ``(N, 2C, H, W)`` (module doc).

    ``mask``: ``(H, W)`` of 0/1 (or bool; True / 1 = sampled), or a ``mri_masks.KSpaceMask``. ``coil_maps``:
    complex ``(C, H, W)`` or None (one coil of ones: single-coil MRI). Maps are used as given (see
    ``normalise_maps``). Buffers are real (the maps as ``(C, H, W, 2)``), so ``.to(dtype)`` never drops an imaginary
    part; the work is done in the complex type of the buffers' dtype (complex64 at run time).
    """

    name = "mri"
    kind = OperatorKind.MRI
    #: Largest ``rows x cols x cols`` (complex entries) the exact line-mask Gram solve may hold (256 MiB in
    #: complex64: a 320 x 320 image fits); larger problems use conjugate gradients.
    exact_gram_max_entries: int = 1 << 25

    def __init__(self, image_shape: tuple[int, int, int], mask: torch.Tensor, coil_maps: torch.Tensor | None = None
                 ) -> None:
        super().__init__(image_shape)
        channels, height, width = self.image_shape
        if channels != 2:
            raise UsageError(f"mri: images are complex, carried as 2 channels (real, imaginary); got {channels}")
        mask = torch.as_tensor(getattr(mask, "mask", mask))
        if mask.dim() != 2:
            raise UsageError(f"mri: the sampling mask must be 2-D (H, W), got shape {tuple(mask.shape)}")
        if tuple(mask.shape) != (height, width):
            raise SizeMismatchError(f"mri: mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                                    f"{width}x{height} (W x H)")
        sampled = mask.bool() if mask.dtype == torch.bool else mask.float() > 0.5
        self.register_buffer("mask", sampled.to(torch.float32)[None, None])  # (1, 1, H, W)
        if coil_maps is None:
            coil_maps = torch.ones(1, height, width, dtype=torch.complex64)
        coil_maps = torch.as_tensor(coil_maps)
        if coil_maps.dim() != 3 or tuple(coil_maps.shape[1:]) != (height, width):
            raise SizeMismatchError(f"mri: coil maps must have shape (C, {height}, {width}), "
                                    f"got {tuple(coil_maps.shape)}")
        if not torch.isfinite(torch.view_as_real(coil_maps.to(torch.complex64))).all():
            raise UsageError("mri: coil maps must be finite")
        self.register_buffer("maps", torch.view_as_real(coil_maps.to(torch.complex64)).clone())  # (C, H, W, 2)
        self.output_shape = (2 * self.coils, height, width)
        self._line_axis = _line_axis(sampled)

    @property
    def coils(self) -> int:
        return int(self.maps.shape[0])

    def coil_maps(self) -> torch.Tensor:
        """The maps as a complex ``(C, H, W)`` tensor."""
        return torch.view_as_complex(self.maps)

    @property
    def acceleration(self) -> float:
        """Grid points over sampled points (inf when nothing is sampled)."""
        sampled = float(self.mask.sum())
        return math.inf if sampled == 0 else self.mask.numel() / sampled

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, coils={self.coils}, acceleration={self.acceleration:.3g}"

    # --- A and A^T ---------------------------------------------------------------------------------------------

    def _forward_complex(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` complex image -> ``(N, C, H, W)`` masked k-space."""
        return fft2c(self.coil_maps()[None] * z[:, None]) * self.mask[0]

    def _adjoint_complex(self, k: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` k-space -> ``(N, H, W)`` image: ``sum_c conj(S_c) F^H (M k_c)``."""
        return (self.coil_maps().conj()[None] * ifft2c(k * self.mask[0])).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return complex_to_channels(self._forward_complex(channels_to_complex(x)[:, 0]))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_output(y)
        return complex_to_channels(self._adjoint_complex(channels_to_complex(y))[:, None])

    # --- reconstructions ---------------------------------------------------------------------------------------

    def zero_filled(self, y: torch.Tensor) -> torch.Tensor:
        """The coil-combined zero-filled image ``sum_c conj(S_c) F^H y_c / sum_c |S_c|^2`` (0 where no coil sees),
        ``(N, 2, H, W)``: the least-squares combination, which returns the image itself from fully sampled data.
        With normalised maps it is the adjoint, and InverseBench's MVUE (dataset.py's ``get_mvue``)."""
        self._check_output(y)
        energy = (self.coil_maps().abs() ** 2).sum(dim=0)
        combined = self._adjoint_complex(channels_to_complex(y))
        weight = torch.where(energy > 0, 1.0 / energy.clamp_min(torch.finfo(energy.dtype).tiny), 0.0)
        return complex_to_channels((combined * weight)[:, None])

    def rss(self, y: torch.Tensor) -> torch.Tensor:
        """Root sum of squares of the zero-filled coil images, ``sqrt(sum_c |F^H y_c|^2)``: ``(N, 1, H, W)``, real
        and non-negative (fastMRI's reference for multi-coil data; needs no maps)."""
        self._check_output(y)
        coil_images = ifft2c(channels_to_complex(y) * self.mask[0])
        return (coil_images.abs() ** 2).sum(dim=1, keepdim=True).sqrt()

    # --- Gram solves, pseudo-inverse, norm ---------------------------------------------------------------------

    def _unit_single_coil(self) -> bool:
        return self.coils == 1 and bool(((self.coil_maps().abs() ** 2 - 1).abs() <= 1e-6).all())

    def gram_diag(self) -> torch.Tensor | None:
        # one coil with |S| = 1: A A^H = M F S S^H F^H M = M, the same for the real and imaginary channel
        return self.mask[0].expand(1, 2, *self.mask.shape[-2:]) if self._unit_single_coil() else None

    def _line_eigen(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Eigenvalues ``(L, P)`` and eigenvectors ``(L, P, P)`` of ``A^H A``'s blocks along the fully sampled
        axis (``L`` lines of ``P`` pixels; module doc, route 2), computed once per device and dtype, or None
        when the mask is not made of lines or the blocks would exceed ``exact_gram_max_entries``."""
        if self._line_axis is None:
            return None
        maps = self.coil_maps()
        if self._line_axis == -2:  # lines are rows: work on the transposed problem
            maps = maps.transpose(-2, -1)
        lines, points = maps.shape[-2:]
        if lines * points * points > self.exact_gram_max_entries:
            return None
        key = (maps.device, maps.dtype)
        cached = self.__dict__.get("_line_eigen_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            profile = self.mask[0, 0].amax(dim=0 if self._line_axis == -1 else 1).to(maps.dtype)  # m (P,)
            dft = _centred_dft_matrix(points, maps.dtype, maps.device)
            g = dft.conj().T @ (profile[:, None] * dft)  # F^H diag(m) F (P, P)
            k = torch.einsum("cli,clj->lij", maps.conj(), maps)  # K_y[i, j] = sum_c conj(S_c,i) S_c,j
            gram = g[None] * k
            gram = (gram + gram.mH) / 2  # exactly Hermitian, so eigh sees the matrix we mean
            values, vectors = torch.linalg.eigh(gram)
            eigen = (values.clamp_min(0.0), vectors)
        self.__dict__["_line_eigen_cache"] = (key, eigen)
        return eigen

    def _apply_line_function(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``U diag(weights) U^H z`` per line for complex images ``z (N, H, W)``; ``weights`` broadcasts to
        ``(N, L, P)``."""
        _, vectors = self._line_eigen()  # type: ignore[misc]
        lines_first = z.transpose(-2, -1) if self._line_axis == -2 else z
        # U^H z as conj(conj(z)^T U): conjugating the small z, never the (L, P, P) eigenvectors (a full copy)
        coefficients = (lines_first.conj()[..., None, :] @ vectors[None])[..., 0, :].conj() * weights
        out = (vectors[None] @ coefficients[..., None])[..., 0]
        return out.transpose(-2, -1) if self._line_axis == -2 else out

    def gram_solve(self, v: torch.Tensor, scale: torch.Tensor | float, shift: float, *, tol=None) -> torch.Tensor:
        """``(scale A A^T + shift I)^-1 v``: elementwise for one unit coil, exact per line for line masks
        (module doc), else conjugate gradients. Exact routes ignore ``tol``; their error is float rounding times
        the system's condition number, ``1 + scale ||A||^2 / shift``."""
        if self.gram_diag() is not None or self._line_eigen() is None:
            return super().gram_solve(v, scale, shift, tol=tol)
        self._check_output(v)
        values, _ = self._line_eigen()  # type: ignore[misc]
        shift = float(shift)
        if isinstance(scale, torch.Tensor) and scale.dim() > 0:
            scale_c = scale.to(v.device, v.dtype).reshape(-1, 1, 1)
        else:
            scale_c = float(scale)
        k = channels_to_complex(v)
        # z = (t I + s A^H A)^-1 A^H v, then u = (v - s A z) / t: A A^H u = A z by the push-through identity
        z = self._apply_line_function(self._adjoint_complex(k), 1.0 / (shift + scale_c * values[None]))
        scale_k = scale_c[..., None] if isinstance(scale_c, torch.Tensor) else scale_c
        return complex_to_channels((k - scale_k * self._forward_complex(z)) / shift)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y``: the adjoint for one unit coil (``A A^H = M``, a projection), the exact ``(A^H A)^+ A^H y``
        for line masks (eigenvalues below ``PINV_RCOND`` of the largest count as zero), else CGLS."""
        self._check_output(y)
        if self._unit_single_coil():
            return self.adjoint(y)
        eigen = self._line_eigen()
        if eigen is None:
            return self.cg_pinv(y)
        values = eigen[0]
        keep = values > PINV_RCOND * values.max().clamp_min(torch.finfo(values.dtype).tiny)
        inverse = torch.where(keep, 1.0 / values.where(keep, torch.ones_like(values)), torch.zeros_like(values))
        z = self._apply_line_function(self._adjoint_complex(channels_to_complex(y)), inverse[None])
        return complex_to_channels(z[:, None])

    def _spectral_norm(self) -> float:
        if self._unit_single_coil():
            return 1.0 if bool(self.mask.any()) else 0.0
        eigen = self._line_eigen()
        if eigen is None:
            return self.estimate_norm()
        return math.sqrt(float(eigen[0].max()))


def _line_axis(sampled: torch.Tensor) -> int | None:
    """-1 when the mask is made of whole columns (it varies along W only: InverseBench's vertical lines), -2 for
    whole rows, None for a 2-D pattern. A mask of whole columns and whole rows (all or nothing) counts as columns."""
    if bool((sampled == sampled[:1]).all()):
        return -1
    if bool((sampled == sampled[:, :1]).all()):
        return -2
    return None


# ------------------------------------------------------------------------------- coil maps from the calibration


def calibration_region(mask: torch.Tensor) -> tuple[int, int]:
    """(rows, cols) of the largest fully sampled block centred on DC (``(H // 2, W // 2)``) of a bool ``(H, W)``
    mask: the autocalibration (ACS) region. (0, 0) when DC itself is not sampled."""
    height, width = mask.shape
    cy, cx = height // 2, width // 2
    if not bool(mask[cy, cx]):
        return 0, 0
    half_y = half_x = 0
    grown = True
    while grown:
        grown = False
        if cy - half_y - 1 >= 0 and cy + half_y + 1 < height and bool(
                mask[cy - half_y - 1: cy + half_y + 2, cx - half_x: cx + half_x + 1].all()):
            half_y, grown = half_y + 1, True
        if cx - half_x - 1 >= 0 and cx + half_x + 1 < width and bool(
                mask[cy - half_y: cy + half_y + 1, cx - half_x - 1: cx + half_x + 2].all()):
            half_x, grown = half_x + 1, True
    return 2 * half_y + 1, 2 * half_x + 1


def acs_maps(kspace: torch.Tensor, mask: torch.Tensor, *, threshold: float = 0.05) -> torch.Tensor:
    """Coil maps ``(C, H, W)`` estimated from the fully sampled centre of ``kspace`` ``(C, H, W)``: the coil images
    of that block (under a Hann window, so no ringing) over their root sum of squares, normalised, and zero where
    that sum is below ``threshold`` of its maximum (outside the object). The classic low-resolution estimate
    (Pruessmann et al. 1999); ESPIRiT does better near edges. UsageError without a calibration block."""
    rows, cols = calibration_region(mask.bool())
    if rows < 3 or cols < 3:
        raise UsageError("the k-space has no fully sampled centre to estimate coil maps from",
                         hint="give --coil-maps FILE")
    height, width = mask.shape
    window = torch.zeros(height, width, dtype=torch.float32)
    hann_y = torch.hann_window(rows + 2, periodic=False)[1:-1]
    hann_x = torch.hann_window(cols + 2, periodic=False)[1:-1]
    y0, x0 = height // 2 - rows // 2, width // 2 - cols // 2
    window[y0:y0 + rows, x0:x0 + cols] = hann_y[:, None] * hann_x[None, :]
    images = ifft2c(kspace.to(torch.complex64) * window)
    rss = (images.abs() ** 2).sum(dim=0).sqrt()
    inside = rss > threshold * rss.max()
    maps = images / rss.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.where(inside, maps, torch.zeros_like(maps))
