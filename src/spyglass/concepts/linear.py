"""Affine codes: PCA and ICA, whose coefficients are a fixed linear map of centred activations.

Both centre the activations on their mean ``μ`` and write ``A − μ ≈ U W``:

- :class:`PCA`: ``W`` holds the ``r`` leading principal directions (orthonormal rows), and
  ``U = (A − μ) Wᵀ``.
- :class:`ICA` (FastICA; Hyvärinen & Oja, "Independent Component Analysis: Algorithms and
  Applications", Neural Networks 2000): ``U = (A − μ) Mᵀ`` for an unmixing matrix ``M`` that
  makes the columns of ``U`` as independent (non-Gaussian) as it can, and ``W`` is its
  mixing matrix (``W = M⁺`` on the whitened subspace), so that ``A ≈ U W + μ``.

scikit-learn fits both (its SVD and FastICA are the reference implementations); the
codes are one matrix product in torch, on the activations' device, and differentiable
as they are. Neither can learn more concepts than there are features.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.decomposition import FastICA
from torch import Tensor

from spyglass.concepts._base import MAX_ITERATIONS, DictionaryLearner, NotFittedError
from spyglass.concepts._registry import register
from spyglass.validation import check_int, check_positive_float

__all__ = ["ICA", "PCA"]


def _tensor(array: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(like)


def _fit_sklearn(model: Any, activations: Tensor, n_concepts: int, learner: str, *learned: str) -> None:
    """``model.fit(activations)``, with a sentence of ours when the data cannot be factorised.

    PCA and ICA divide by the variance along each direction they keep: directions of zero
    variance (all-equal rows, rank-1 data) give 0/0 deep inside scikit-learn, which then
    fails or returns NaN. The rank is computed only then, so a good fit pays nothing.
    """
    failed = False
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            model.fit(activations.cpu().numpy())
        except (ValueError, np.linalg.LinAlgError):
            failed = True
    if failed or not all(np.isfinite(getattr(model, name)).all() for name in learned):
        _check_rank(activations, n_concepts, learner)
        raise ValueError(
            f"{learner} could not factorise these activations (scikit-learn's fit gave no finite "
            f"result): use fewer concepts, or more varied images or crops"
        )


def _check_rank(activations: Tensor, n_concepts: int, learner: str) -> None:
    """A ValueError unless the centred activations span at least ``n_concepts`` directions."""
    centred = activations - activations.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred.double())
    # numpy's matrix_rank tolerance, at the precision the activations came in.
    tolerance = float(singular[0]) * max(centred.shape) * torch.finfo(activations.dtype).eps
    rank = int((singular > tolerance).sum()) if float(singular[0]) > 0 else 0
    if rank < n_concepts:
        raise ValueError(
            f"{learner} needs activations that vary along at least n_concepts={n_concepts} directions; "
            f"got rank {rank} after centring ({'all rows equal' if rank == 0 else 'too few directions'}): "
            f"use fewer concepts, or more varied images or crops"
        )


class _Centred(DictionaryLearner):
    """Learners that model ``A − μ``: the mean comes back in ``inverse_transform``."""

    def __init__(self, n_concepts: int, *, seed: int) -> None:
        super().__init__(n_concepts, seed=seed)
        self._mean: Tensor | None = None

    @property
    def mean_(self) -> Tensor:
        """``μ`` ``(n_features,)``, the mean of the activations the dictionary was fitted on."""
        if self._mean is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(activations) first")
        return self._mean

    def _inverse_transform(self, codes: Tensor, components: Tensor) -> Tensor:
        return codes @ components + self._like(self.mean_, codes)


@register("pca")
class PCA(_Centred):
    """Principal component analysis: ``A ≈ U W + μ`` with orthonormal concepts.

    ``W`` ``(r, n_features)`` holds the ``r`` directions of largest variance of the
    activations (scikit-learn's :class:`~sklearn.decomposition.PCA`, no whitening);
    ``U = (A − μ) Wᵀ`` are the coordinates in that basis, signed and dense.

    Parameters
    ----------
    n_concepts
        ``r``, at most the number of features.
    seed
        Seeds scikit-learn's randomised SVD (chosen by its ``"auto"`` solver for large inputs).

    Attributes
    ----------
    components_ : Tensor
        ``W`` ``(n_concepts, n_features)``, orthonormal rows, by decreasing variance.
    mean_ : Tensor
        ``μ`` ``(n_features,)``.
    explained_variance_ratio_ : Tensor
        ``(n_concepts,)``, the share of the total variance along each concept.

    Examples
    --------
    >>> import torch
    >>> from spyglass.concepts import PCA
    >>> activations = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    >>> pca = PCA(n_concepts=8).fit(activations)
    >>> codes = pca.transform(activations)
    >>> torch.allclose(pca.inverse_transform(codes), activations, atol=1e-5)
    True
    """

    max_concepts_is_features = True

    def __init__(self, n_concepts: int, *, seed: int = 0) -> None:
        super().__init__(n_concepts, seed=seed)
        self.explained_variance_ratio_: Tensor | None = None

    def _fit(self, activations: Tensor) -> None:
        model = SklearnPCA(n_components=self.n_concepts, random_state=self.seed)
        _fit_sklearn(model, activations, self.n_concepts, "PCA", "components_", "explained_variance_ratio_")
        self._components = _tensor(model.components_, activations)
        self._mean = _tensor(model.mean_, activations)
        self.explained_variance_ratio_ = _tensor(model.explained_variance_ratio_, activations)

    def _transform(self, activations: Tensor) -> Tensor:
        centred = activations - self._like(self.mean_, activations)
        return centred @ self._like(self.components_, activations).T


@register("ica")
class ICA(_Centred):
    """Independent component analysis (FastICA): ``A ≈ U W + μ`` with independent codes.

    scikit-learn's :class:`~sklearn.decomposition.FastICA` (unit-variance whitening) finds
    an unmixing matrix ``M`` ``(r, n_features)``; the codes are ``U = (A − μ) Mᵀ`` and the
    concepts are the mixing directions ``W`` (FastICA's ``mixing_.T``), the directions in
    activation space that ``A`` moves along when one code moves. ``W`` is not orthogonal
    and ``M ≠ W`` in general: ``components_`` is ``W`` and ``unmixing_`` is ``M``.

    Parameters
    ----------
    n_concepts
        ``r``, at most the number of features.
    max_iter, tol
        Passed to FastICA.
    seed
        Seeds FastICA's starting unmixing matrix.

    Attributes
    ----------
    components_ : Tensor
        ``W`` ``(n_concepts, n_features)``, the mixing directions.
    unmixing_ : Tensor
        ``M`` ``(n_concepts, n_features)``, with ``U = (A − μ) Mᵀ``.
    mean_ : Tensor
        ``μ`` ``(n_features,)``.

    Examples
    --------
    Two independent non-Gaussian sources, mixed into 4 features, come back one per code:

    >>> import torch
    >>> from spyglass.concepts import ICA
    >>> generator = torch.Generator().manual_seed(0)
    >>> sources = torch.randn(500, 2, generator=generator) ** 3
    >>> activations = sources @ torch.randn(2, 4, generator=generator)
    >>> codes = ICA(n_concepts=2).fit_transform(activations)
    >>> correlation = torch.corrcoef(torch.cat([sources.T, codes.T]))[:2, 2:].abs()
    >>> bool((correlation.amax(dim=1) > 0.99).all())
    True
    """

    max_concepts_is_features = True

    def __init__(self, n_concepts: int, *, max_iter: int = 500, tol: float = 1e-4, seed: int = 0) -> None:
        super().__init__(n_concepts, seed=seed)
        self.max_iter = check_int(max_iter, "max_iter", 1, maximum=MAX_ITERATIONS)
        self.tol = check_positive_float(tol, "tol")
        self._unmixing: Tensor | None = None

    @property
    def unmixing_(self) -> Tensor:
        """``M`` ``(n_concepts, n_features)``: the codes are ``(A − μ) Mᵀ``."""
        if self._unmixing is None:
            raise NotFittedError("this ICA is not fitted yet; call fit(activations) first")
        return self._unmixing

    def _fit(self, activations: Tensor) -> None:
        # Whitening divides by the spread along each kept direction: on fewer directions than
        # concepts FastICA returns finite garbage, so the rank is checked first (one SVD, the
        # order of the whitening's own cost).
        _check_rank(activations, self.n_concepts, "ICA")
        model = FastICA(
            n_components=self.n_concepts,
            whiten="unit-variance",
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.seed,
        )
        _fit_sklearn(model, activations, self.n_concepts, "ICA", "mixing_", "components_", "mean_")
        self._components = _tensor(model.mixing_.T, activations)
        self._unmixing = _tensor(model.components_, activations)
        self._mean = _tensor(model.mean_, activations)

    def _transform(self, activations: Tensor) -> Tensor:
        centred = activations - self._like(self.mean_, activations)
        return centred @ self._like(self.unmixing_, activations).T
