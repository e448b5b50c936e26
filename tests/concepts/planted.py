"""Activations with known concepts: ``A = U W`` from a planted bank ``W``."""

import torch


def planted_nonnegative(
    *,
    n_samples: int = 500,
    n_features: int = 64,
    n_concepts: int = 5,
    noise: float = 0.0,
    density: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative ``A = U W + noise`` with peaked concepts and sparse codes; returns ``(A, W)``.

    ``noise`` is the standard deviation of the Gaussian noise relative to that of ``U W``;
    the result is clipped at 0 so that it stays a valid NMF input.
    """
    generator = torch.Generator().manual_seed(seed)
    concepts = torch.rand(n_concepts, n_features, generator=generator, dtype=dtype) ** 3
    present = torch.rand(n_samples, n_concepts, generator=generator, dtype=dtype) < density
    codes = torch.rand(n_samples, n_concepts, generator=generator, dtype=dtype) * present
    activations = codes @ concepts
    if noise > 0:
        jitter = torch.randn(n_samples, n_features, generator=generator, dtype=dtype)
        activations = (activations + noise * activations.std() * jitter).clamp(min=0)
    return activations, concepts


def planted_signed(
    *, n_samples: int = 400, n_features: int = 32, n_concepts: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed ``A = U W`` with ``U >= 0`` and Gaussian (signed) concepts; returns ``(A, W)``."""
    generator = torch.Generator().manual_seed(seed)
    concepts = torch.randn(n_concepts, n_features, generator=generator)
    codes = torch.rand(n_samples, n_concepts, generator=generator)
    return codes @ concepts, concepts
