"""The natural-image statistics feature visualization starts from: a spectrum and a colour basis.

Both are measured once on real photos by ``scripts/make_spectrum.py`` and shipped beside
this module (``natural_spectrum.npy`` and its provenance, ``natural_spectrum.json``), so
that nothing is downloaded at run time. The amplitude is stored at the size it was
measured at and resampled by *frequency* to the size an optimisation asks for.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spyglass.validation import check_int

__all__ = ["colour_correlation", "frequency_radius", "hermitian_mask", "natural_magnitude", "provenance"]

_SPECTRUM_FILE = "natural_spectrum.npy"
_PROVENANCE_FILE = "natural_spectrum.json"


@lru_cache(maxsize=1)
def provenance() -> dict[str, object]:
    """Where the shipped spectrum comes from: source folder, photo count, size, date, method.

    Examples
    --------
    >>> from spyglass.featureviz import spectrum
    >>> spectrum.provenance()["number_of_photos"]
    3925
    """
    text = resources.files("spyglass.featureviz").joinpath(_PROVENANCE_FILE).read_text()
    result: dict[str, object] = json.loads(text)
    return result


@lru_cache(maxsize=1)
def _stored_magnitude() -> Tensor:
    with resources.files("spyglass.featureviz").joinpath(_SPECTRUM_FILE).open("rb") as file:
        return torch.from_numpy(np.load(file)).float()


def colour_correlation() -> Tensor:
    """The ``(3, 3)`` matrix ``C`` that maps decorrelated colour channels to RGB (``rgb = C z``).

    Measured on the same photos as the spectrum: ``C = U √S`` from the pixel covariance
    ``U S Uᵀ``, scaled so that its largest column has unit norm (Lucid's convention).

    Examples
    --------
    >>> from spyglass.featureviz.spectrum import colour_correlation
    >>> colour_correlation().shape
    torch.Size([3, 3])
    """
    matrix = provenance()["colour_correlation_sqrt"]
    return torch.tensor(matrix, dtype=torch.float32)


def frequency_radius(size: int) -> Tensor:
    """``(size, size // 2 + 1)`` radial frequency ``√(fy² + fx²)`` in cycles per pixel (rfft2 layout)."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    return torch.sqrt(fy**2 + fx**2)


def hermitian_mask(size: int) -> Tensor:
    """``(size // 2 + 1,)`` booleans: the rfft2 columns whose own column must be Hermitian.

    Column 0 and, for an even size, column ``size // 2`` hold frequencies ``(k, 0)`` and
    ``(-k, 0)`` side by side; a real image needs ``F(-k) = conj F(k)`` there.
    """
    mask = torch.zeros(size // 2 + 1, dtype=torch.bool)
    mask[0] = True
    if size % 2 == 0:
        mask[-1] = True
    return mask


def natural_magnitude(size: int) -> Tensor:
    """The natural-image amplitude for a ``size × size`` image, ``(3, size, size // 2 + 1)``.

    MACO's fixed magnitude (Fel, Boissin et al., NeurIPS 2023). The stored amplitude is
    resampled bilinearly at the same frequencies in cycles per pixel (``k / size``), so a
    larger image keeps the same spectral shape. Then the constant term is set to 0 (the
    mean colour is the colour mapping's business), columns 0 and ``size / 2`` are made
    symmetric in ``k ↔ -k`` (as a real image's are), and the whole is scaled so that
    ``irfft2(|M| e^{iφ})`` has unit standard deviation over its three channels for *any*
    Hermitian phase φ (Parseval: the energy depends on the magnitude alone).

    Examples
    --------
    >>> from spyglass.featureviz.spectrum import natural_magnitude
    >>> natural_magnitude(64).shape
    torch.Size([3, 64, 33])
    """
    check_int(size, "size", 8)
    stored = _stored_magnitude()
    measured = stored.shape[1]
    # Rows in fftshift order (−n/2 … n/2 − 1) so that interpolation never crosses the wrap-around.
    shifted = torch.fft.fftshift(stored, dim=1)
    rows = torch.fft.fftshift(torch.fft.fftfreq(size)) * measured + measured // 2  # index in `shifted`
    columns = torch.fft.rfftfreq(size) * measured
    grid_y = rows / (measured - 1) * 2 - 1
    grid_x = columns / (stored.shape[2] - 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(grid_x.view(1, -1), grid_y.view(-1, 1)), dim=-1)
    resampled = F.grid_sample(
        shifted[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )[0]
    magnitude = torch.fft.ifftshift(resampled, dim=1).contiguous()
    magnitude[:, 0, 0] = 0.0
    mirror = torch.roll(torch.flip(magnitude, dims=[1]), shifts=1, dims=1)  # row k -> row -k
    hermitian = hermitian_mask(size)
    magnitude[:, :, hermitian] = 0.5 * (magnitude[:, :, hermitian] + mirror[:, :, hermitian])
    # Σ_pixels x² = Σ_full |F|² / size², where every column but the Hermitian ones counts twice.
    weights = torch.where(hermitian, 1.0, 2.0)
    energy = (magnitude**2 * weights).sum() / size**2
    return magnitude * torch.sqrt(3 * size * size / energy)
