"""How a feature visualization is parametrised: MACO's phase, or Lucid's whole spectrum.

Both build a ``(3, S, S)`` image in [0, 1] from Fourier coefficients in a decorrelated
colour space, ``image = σ(C · x)``, with ``x`` the *pre-colour* image and ``C`` the colour
square root measured on natural photos (:mod:`spyglass.featureviz.spectrum`):

- :class:`MacoImage` (Fel, Boissin et al., NeurIPS 2023): ``x = irfft2(|M| e^{iφ})`` with
  ``|M|`` the fixed amplitude of natural images; only the phase φ is learned, so the
  amplitude of ``x`` is ``|M|`` at every step, exactly;
- :class:`FourierImage` (Olah et al., Distill 2017; Lucid): ``x`` is the standardised
  ``irfft2(w ⊙ z)`` of a learned complex spectrum ``z`` scaled by ``w = 1 / max(f, 1/S)^d``.

We write our own rather than wrap Lucid or ``horama``: the amplitude here is measured
by a script in this repository (no download), the phase is kept Hermitian so that the
magnitude constraint is exact rather than approximate, and every random draw takes a
``torch.Generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spyglass.featureviz.spectrum import (
    colour_correlation,
    frequency_radius,
    hermitian_mask,
    natural_magnitude,
)
from spyglass.validation import check_int, check_positive_float

__all__ = ["FourierImage", "MacoImage"]


def _check_size(size: object) -> int:
    return check_int(size, "image_size", 16, hint="any size works: the FFT needs no power of two")


def _to_rgb(pre_colour: Tensor, colour: Tensor) -> Tensor:
    return torch.sigmoid(torch.einsum("ij,jhw->ihw", colour, pre_colour))


class MacoImage(nn.Module):
    """MACO's image: a fixed natural amplitude and a learned phase.

    Fel, Boissin et al., "Unlocking Feature Visualization for Deeper Networks with
    MAgnitude Constrained Optimization", NeurIPS 2023. ``x = irfft2(|M| e^{iφ})`` and
    ``image = σ(C · x)``. The phase is made antisymmetric (``φ(-k) = -φ(k)``) on the two
    rfft2 columns that hold both ``k`` and ``-k``, so ``x`` is exactly the real image whose
    amplitude is ``|M|``; :func:`spyglass.featureviz.spectrum.natural_magnitude` scales
    ``|M|`` so that ``x`` has zero mean and unit standard deviation.

    Parameters
    ----------
    size
        Side ``S`` of the square image.
    generator
        Draws the initial phase, ``φ ~ N(0, 1)`` (default: a fresh generator seeded 0).

    Examples
    --------
    >>> import torch
    >>> from spyglass.featureviz import MacoImage
    >>> image = MacoImage(64)
    >>> image().shape, bool(image().min() >= 0)
    (torch.Size([3, 64, 64]), True)
    >>> amplitude = torch.fft.rfft2(image.pre_colour()).abs()
    >>> torch.allclose(amplitude, image.magnitude, rtol=1e-4, atol=1e-3)
    True
    """

    magnitude: Tensor
    colour: Tensor
    _hermitian: Tensor

    def __init__(self, size: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.size = _check_size(size)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.register_buffer("magnitude", natural_magnitude(size))
        self.register_buffer("colour", colour_correlation())
        self.register_buffer("_hermitian", hermitian_mask(size), persistent=False)
        phase = torch.randn(self.magnitude.shape, generator=generator, device=generator.device)
        self.phase = nn.Parameter(phase.to(self.magnitude.device))

    def hermitian_phase(self) -> Tensor:
        """The phase actually used: ``φ`` standardised, made antisymmetric in ``k ↔ -k`` where rfft2 needs it.

        Standardising (zero mean, unit std over all coefficients) makes the step size
        shrink as the raw phase grows under NAdam's fixed ``lr = 1``: a built-in annealing,
        as in the authors' code. It changes the phase only, never the magnitude.
        """
        phase = (self.phase - self.phase.mean()) / (self.phase.std() + 1e-8)
        mirrored = torch.roll(torch.flip(phase, dims=[1]), shifts=1, dims=1)  # row k -> row -k
        antisymmetric = 0.5 * (phase - mirrored)
        return torch.where(self._hermitian, antisymmetric, phase)

    def pre_colour(self) -> Tensor:
        """``x = irfft2(|M| e^{iφ})``, ``(3, S, S)``: the image before the colour mapping."""
        spectrum = torch.polar(self.magnitude, self.hermitian_phase())
        return torch.fft.irfft2(spectrum, s=(self.size, self.size))

    def forward(self) -> Tensor:
        """The ``(3, S, S)`` RGB image in [0, 1], ``σ(C · x)``."""
        return _to_rgb(self.pre_colour(), self.colour)


class FourierImage(nn.Module):
    """Lucid's image: a learned spectrum with a 1/f prior and decorrelated colours.

    Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017.
    ``x = standardise(irfft2(z / max(f, 1/S)^d))`` and ``image = σ(C · x)``, with ``z`` a
    learned complex spectrum, ``f`` the radial frequency in cycles per pixel and ``d`` the
    decay power: every frequency is learned, the scaling only preconditions the gradient.

    Parameters
    ----------
    size
        Side ``S`` of the square image.
    decay_power
        ``d``; 1 gives Lucid's ``1/f`` scaling.
    generator
        Draws the initial spectrum, ``z ~ N(0, 1) + i N(0, 1)`` (default: seeded 0).

    Examples
    --------
    >>> from spyglass.featureviz import FourierImage
    >>> FourierImage(64)().shape
    torch.Size([3, 64, 64])
    """

    scale: Tensor
    colour: Tensor

    def __init__(
        self, size: int, *, decay_power: float = 1.0, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.size = _check_size(size)
        check_positive_float(decay_power, "decay_power", allow_zero=True)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        radius = frequency_radius(size).clamp(min=1.0 / size)
        self.register_buffer("scale", radius.pow(-float(decay_power)))
        self.register_buffer("colour", colour_correlation())
        shape = (3, size, size // 2 + 1, 2)
        spectrum = torch.randn(shape, generator=generator, device=generator.device)
        self.spectrum = nn.Parameter(spectrum.to(self.scale.device))

    def pre_colour(self) -> Tensor:
        """The standardised ``(3, S, S)`` image before the colour mapping."""
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        spatial = torch.fft.irfft2(spectrum, s=(self.size, self.size))
        return (spatial - spatial.mean()) / (spatial.std() + 1e-8)

    def forward(self) -> Tensor:
        """The ``(3, S, S)`` RGB image in [0, 1], ``σ(C · x)``."""
        return _to_rgb(self.pre_colour(), self.colour)
