"""Metrics of a concept dictionary: how well it rebuilds, how sparse, how stable.

The three axes on which Fel et al., "A Holistic Approach to Unifying Automatic Concept
Extraction and Concept Importance Estimation" (NeurIPS 2023), compare dictionaries:

- :func:`relative_reconstruction_error`: ``‖A − U W‖_F / ‖A‖_F`` (0 for a perfect
  dictionary, 1 for codes that explain nothing);
- :func:`sparsity`: the fraction of exactly-zero coefficients (``ℓ0`` sparsity), and
  :func:`hoyer_sparsity`, Hoyer's smooth measure, for dense codes (PCA, ICA) whose ``ℓ0``
  sparsity is always 0;
- :func:`dictionary_stability`: how alike two dictionaries are (two fits on different
  seeds or subsets), the mean cosine of their concepts after the best one-to-one matching
  (:func:`match_concepts`, the Hungarian algorithm of
  :func:`scipy.optimize.linear_sum_assignment`).

Examples
--------
Two NMF fits from different random starts find the same three planted concepts:

>>> import torch
>>> from spyglass.concepts import NMF, dictionary_stability, relative_reconstruction_error
>>> generator = torch.Generator().manual_seed(0)
>>> activations = torch.rand(300, 3, generator=generator) @ torch.rand(3, 16, generator=generator) ** 3
>>> first = NMF(3, init="random", seed=0).fit(activations)
>>> second = NMF(3, init="random", seed=1).fit(activations)
>>> bool(dictionary_stability(first.components_, second.components_) > 0.99)
True
>>> codes = first.transform(activations)
>>> bool(relative_reconstruction_error(activations, codes, first.components_) < 0.01)
True
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from spyglass.concepts._base import check_activations, check_codes

__all__ = [
    "ConceptMatch",
    "dictionary_stability",
    "hoyer_sparsity",
    "match_concepts",
    "relative_reconstruction_error",
    "sparsity",
]


def relative_reconstruction_error(
    activations: Tensor, codes: Tensor, components: Tensor, *, mean: Tensor | None = None
) -> float:
    """``‖A − (U W + μ)‖_F / ‖A‖_F``.

    Parameters
    ----------
    activations
        ``A`` ``(n_samples, n_features)``.
    codes
        ``U`` ``(n_samples, n_concepts)``.
    components
        ``W`` ``(n_concepts, n_features)``.
    mean
        ``μ`` ``(n_features,)`` for learners that centre the data (``PCA.mean_``,
        ``ICA.mean_``); default none.

    Returns
    -------
    float
        0 when ``U W + μ`` rebuilds ``A`` exactly; 1 for ``U = 0`` (without ``μ``).

    Raises
    ------
    ValueError
        On shapes that do not chain, or if ``A`` is all zeros.
    """
    matrix = check_activations(activations)
    weights = check_activations(components, name="components", n_features=matrix.shape[1])
    coefficients = check_codes(codes, weights.shape[0])
    if coefficients.shape[0] != matrix.shape[0]:
        raise ValueError(
            f"codes must have one row per row of activations ({matrix.shape[0]}); got {coefficients.shape[0]}"
        )
    dtype = torch.promote_types(torch.promote_types(matrix.dtype, weights.dtype), coefficients.dtype)
    matrix, weights = matrix.to(dtype), weights.to(device=matrix.device, dtype=dtype)
    rebuilt = coefficients.to(device=matrix.device, dtype=dtype) @ weights
    if mean is not None:
        if not isinstance(mean, Tensor) or tuple(mean.shape) != (matrix.shape[1],):
            got = tuple(mean.shape) if isinstance(mean, Tensor) else type(mean).__name__
            raise ValueError(f"mean must be a tensor of shape ({matrix.shape[1]},); got {got}")
        rebuilt = rebuilt + mean.to(device=matrix.device, dtype=dtype)
    norm = float(torch.linalg.matrix_norm(matrix))
    if norm == 0:
        raise ValueError("activations are all zeros: the relative reconstruction error is undefined")
    return float(torch.linalg.matrix_norm(matrix - rebuilt)) / norm


def sparsity(codes: Tensor, *, atol: float = 0.0) -> float:
    """The fraction of coefficients that are zero (``|u| <= atol``): ``ℓ0`` sparsity in [0, 1].

    1 means every coefficient is zero; a one-hot code of ``r`` concepts scores ``1 − 1/r``.
    NMF, Semi-NMF and sparse coding give exact zeros; for dense codes use
    :func:`hoyer_sparsity`.
    """
    matrix = check_codes(codes)
    if atol < 0:
        raise ValueError(f"atol must be >= 0; got {atol!r}")
    return float((matrix.abs() <= atol).to(torch.float64).mean())


def hoyer_sparsity(codes: Tensor) -> float:
    """Hoyer's sparsity of every row, averaged: ``(√r − ‖u‖₁/‖u‖₂) / (√r − 1)`` in [0, 1].

    1 for a row with a single non-zero coefficient, 0 for a row whose coefficients all
    have the same magnitude (Hoyer, "Non-negative Matrix Factorization with Sparseness
    Constraints", JMLR 2004). Rows of zeros count as 1 (as sparse as can be). Needs at
    least 2 concepts.
    """
    matrix = check_codes(codes)
    n_concepts = matrix.shape[1]
    if n_concepts < 2:
        raise ValueError(f"Hoyer sparsity needs codes of at least 2 concepts; got {n_concepts}")
    matrix = matrix.to(torch.float64)
    l1 = matrix.abs().sum(dim=1)
    l2 = matrix.norm(dim=1)
    root = n_concepts**0.5
    ratio = torch.where(l2 > 0, l1 / l2.clamp(min=torch.finfo(torch.float64).tiny), torch.ones_like(l1))
    return float(((root - ratio) / (root - 1)).clamp(0, 1).mean())


class ConceptMatch(NamedTuple):
    """The best one-to-one matching of the concepts of ``W`` to those of ``W_ref``."""

    permutation: Tensor
    """``(r_ref,)`` long: concept ``permutation[i]`` of ``W`` matches concept ``i`` of ``W_ref``,
    so ``W[permutation]`` is aligned with ``W_ref``."""
    cosines: Tensor
    """``(r_ref,)`` float64: the cosine of each matched pair (its absolute value with ``absolute``)."""


def match_concepts(reference: Tensor, components: Tensor, *, absolute: bool = False) -> ConceptMatch:
    """Match every concept of ``reference`` to a distinct concept of ``components``.

    The matching maximises the sum of the cosine similarities of the matched pairs
    (Hungarian algorithm). Concepts are compared by direction only: NMF recovers them up
    to scale and order.

    Parameters
    ----------
    reference
        ``W_ref`` ``(r_ref, n_features)``, e.g. the planted concepts.
    components
        ``W`` ``(r, n_features)`` with ``r >= r_ref``; the extra concepts stay unmatched.
    absolute
        Compare ``|cos|``: for learners whose concepts are defined up to sign (PCA, ICA).

    Returns
    -------
    ConceptMatch
        ``permutation`` and ``cosines``, both ``(r_ref,)``, in the order of ``reference``.
        An all-zero concept has cosine 0 with everything.
    """
    ref = check_activations(reference, name="reference").to(torch.float64)
    other = check_activations(components, name="components", n_features=ref.shape[1]).to(
        device=ref.device, dtype=torch.float64
    )
    if other.shape[0] < ref.shape[0]:
        raise ValueError(
            f"components must have at least as many concepts as reference ({ref.shape[0]}) to match them "
            f"all; got {other.shape[0]} (swap the arguments?)"
        )
    tiny = torch.finfo(torch.float64).tiny
    cosine = (ref / ref.norm(dim=1, keepdim=True).clamp(min=tiny)) @ (
        other / other.norm(dim=1, keepdim=True).clamp(min=tiny)
    ).T
    if absolute:
        cosine = cosine.abs()
    rows, columns = linear_sum_assignment(cosine.cpu().numpy(), maximize=True)
    order = torch.as_tensor(rows).argsort()
    permutation = torch.as_tensor(columns)[order].long()
    matched = cosine[torch.arange(ref.shape[0], device=cosine.device), permutation.to(cosine.device)]
    return ConceptMatch(permutation=permutation, cosines=matched.cpu())


def dictionary_stability(first: Tensor, second: Tensor, *, absolute: bool = False) -> float:
    """The mean cosine of matched concepts of two dictionaries, in [-1, 1] (1: same concepts).

    Two fits of the same learner (different seeds, or different subsets of images) are
    stable when every concept of one has a twin in the other. Both dictionaries must have
    the same number of concepts; ``absolute`` compares directions up to sign (PCA, ICA).
    """
    if isinstance(first, Tensor) and isinstance(second, Tensor) and first.shape[:1] != second.shape[:1]:
        raise ValueError(
            f"dictionaries must have the same number of concepts; got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    return float(match_concepts(first, second, absolute=absolute).cosines.mean())
