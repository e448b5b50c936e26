"""K-means as a dictionary: every row is explained by exactly one concept, its nearest centroid.

With the centroids ``W`` ``(r, n_features)`` (scikit-learn's :class:`~sklearn.cluster.KMeans`,
Lloyd's algorithm from k-means++ starts), the code of a row ``a`` is the one-hot vector of
its nearest centroid, so that ``U W`` replaces every row by its centroid (vector
quantisation). This is the hardest-sparsity end of the dictionaries compared by Fel et al.,
"A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation" (NeurIPS 2023).

A one-hot code is piecewise constant in ``a``: its true gradient is zero almost everywhere
and undefined on the cluster boundaries, which would make every gradient-based concept
attribution vanish. ``differentiable_transform`` therefore returns the *soft* assignment

    u_k = softmax_k(−‖a − w_k‖² / τ),

the code of a Gaussian mixture with shared isotropic variance ``τ / 2`` and these centroids:
rows sum to 1, tend to the one-hot codes as ``τ → 0``, and have an exact gradient. Its values
differ from ``transform``'s (documented on :class:`KMeans`).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from torch import Tensor

from spyglass.concepts._base import MAX_ITERATIONS, DictionaryLearner
from spyglass.concepts._registry import register
from spyglass.validation import check_int, check_positive_float

__all__ = ["KMeans"]


def _squared_distances(activations: Tensor, centroids: Tensor) -> Tensor:
    """``‖a_i − w_k‖²`` for every row and centroid, ``(n, r)``, never negative."""
    squared = (
        activations.square().sum(dim=1, keepdim=True)
        - 2 * activations @ centroids.T
        + centroids.square().sum(dim=1)
    )
    return squared.clamp(min=0)


@register("kmeans")
class KMeans(DictionaryLearner):
    """K-means clustering: ``A ≈ U W`` with one-hot ``U`` and the centroids as concepts.

    ``transform`` gives the one-hot code of the nearest centroid; ``differentiable_transform``
    gives the soft assignment ``softmax(−‖a − w_k‖² / τ)`` instead (a one-hot code has no
    useful gradient; see the module documentation), whose rows sum to 1 and whose argmax
    is the nearest centroid.

    Parameters
    ----------
    n_concepts
        ``r``, the number of clusters.
    n_init, max_iter
        Passed to scikit-learn's :class:`~sklearn.cluster.KMeans` (k-means++ starts, best
        of ``n_init`` runs).
    temperature
        ``τ`` of the soft assignment; ``None`` uses the mean squared distance of the
        fitted rows to their centroid (``temperature_``), which makes it invariant to the
        scale of the activations.
    seed
        Seeds the k-means++ starts.

    Attributes
    ----------
    components_ : Tensor
        The centroids ``W`` ``(n_concepts, n_features)``.
    inertia_ : float
        Sum of squared distances of the fitted rows to their centroid.
    temperature_ : float
        The ``τ`` in use.

    Examples
    --------
    >>> import torch
    >>> from spyglass.concepts import KMeans
    >>> generator = torch.Generator().manual_seed(0)
    >>> centres = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    >>> activations = centres.repeat(50, 1) + 0.1 * torch.randn(100, 2, generator=generator)
    >>> kmeans = KMeans(n_concepts=2).fit(activations)
    >>> codes = kmeans.transform(activations)
    >>> codes.sum(dim=1).unique().tolist()
    [1.0]
    >>> soft = kmeans.differentiable_transform(activations)
    >>> bool((soft.argmax(dim=1) == codes.argmax(dim=1)).all())
    True
    """

    def __init__(
        self,
        n_concepts: int,
        *,
        n_init: int = 4,
        max_iter: int = 300,
        temperature: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(n_concepts, seed=seed)
        self.n_init = check_int(n_init, "n_init", 1, maximum=MAX_ITERATIONS)
        self.max_iter = check_int(max_iter, "max_iter", 1, maximum=MAX_ITERATIONS)
        self.temperature = None if temperature is None else check_positive_float(temperature, "temperature")
        self.inertia_: float = float("nan")
        self.temperature_: float = float("nan")

    def _fit(self, activations: Tensor) -> None:
        model = SklearnKMeans(
            n_clusters=self.n_concepts, n_init=self.n_init, max_iter=self.max_iter, random_state=self.seed
        )
        model.fit(activations.cpu().numpy())
        self._components = torch.from_numpy(np.ascontiguousarray(model.cluster_centers_)).to(activations)
        self.inertia_ = float(model.inertia_)
        if self.temperature is not None:
            self.temperature_ = self.temperature
        else:
            # Rows that sit exactly on their centroids leave no scale: fall back to that of the data.
            spread = self.inertia_ / activations.shape[0]
            scale = float(activations.square().sum(dim=1).mean())
            self.temperature_ = max(spread, 1e-6 * scale, float(torch.finfo(activations.dtype).tiny))

    def _transform(self, activations: Tensor) -> Tensor:
        distances = _squared_distances(activations, self._like(self.components_, activations))
        nearest = distances.argmin(dim=1)
        return torch.nn.functional.one_hot(nearest, self.n_concepts).to(activations.dtype)

    def _differentiable_transform(self, activations: Tensor) -> Tensor:
        distances = _squared_distances(activations, self._like(self.components_, activations))
        return torch.softmax(-distances / self.temperature_, dim=1)
