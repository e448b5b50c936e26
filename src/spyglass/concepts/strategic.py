"""The strategic cluster graph: which concepts the model relies on, image by image.

From "A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation" (Fel et al., NeurIPS 2023). A class-level importance (the mean over images)
hides how the model decides on each image: one concept may settle a few images
completely while another contributes a little everywhere. The graph keeps the per-image
view. Every image ``x_j`` of the class gets its importance vector
``φ(x_j) ∈ ℝ^r`` (one value per concept, :meth:`Craft.importance` with
``per_image=True``); the ``N`` vectors are embedded in 2-D with UMAP (McInnes et al.,
2018), and each point is coloured by its most important concept
``d_j = argmax_i φ_i(x_j)``. Images the model decides on the same way land together: the
clusters are its *strategies* for the class.

Which concepts count as important. A concept is *important* when it is the dominant one
(``d_j = i``) for at least a share ``min_share`` of the images (default 10 %):
``share_i = |{j : d_j = i}| / N ≥ min_share``. This is a rule about prevalence as a
decision driver, not about the mean importance: a concept that is second everywhere has a
high mean but drives no strategy, and is not counted. Both numbers are returned, so a user
can apply another rule.

UMAP comes from umap-learn, the reference implementation by its authors; nothing here is
worth rewriting. It is imported when a graph is made, so that ``import spyglass`` stays
fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from spyglass.validation import check_float, check_int, check_probability, check_seed

if TYPE_CHECKING:
    from spyglass.concepts.craft import Craft

__all__ = ["StrategicClusterGraph", "strategic_cluster_graph"]


@dataclass(frozen=True)
class StrategicClusterGraph:
    """The result of :func:`strategic_cluster_graph`.

    Attributes
    ----------
    embedding
        ``(N, 2)`` float32, the UMAP coordinates of each image's importance vector.
    importance
        ``(N, r)`` float32, the per-image concept importance that was embedded.
    dominant
        ``(N,)`` long, ``argmax_i importance[j, i]``: each point's colour.
    shares
        ``(r,)`` float32, the share of images each concept dominates (sums to 1).
    mean_importance
        ``(r,)`` float32, the class-level importance (mean over the images), for comparison.
    important
        The important concepts under the rule ``shares[i] >= min_share``, most dominant
        first.
    min_share
        The threshold of the rule.
    """

    embedding: Tensor
    importance: Tensor
    dominant: Tensor
    shares: Tensor
    mean_importance: Tensor
    important: list[int]
    min_share: float

    def __len__(self) -> int:
        return int(self.embedding.shape[0])


def _check_share(value: object) -> float:
    return check_probability(value, "min_share")


def _embed(vectors: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    import umap  # umap-learn, imported on use: it compiles with numba on first call

    count = vectors.shape[0]
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, count - 1),
        min_dist=min_dist,
        # The spectral initialisation needs a connected graph of enough points; random is
        # the robust choice for the few dozen images of a small class.
        init="spectral" if count > 2 * n_neighbors else "random",
        random_state=seed,
        n_jobs=1,  # a seeded UMAP is single-threaded anyway; say so instead of warning
    )
    return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)


def strategic_cluster_graph(
    craft: Craft,
    images: Tensor | None = None,
    *,
    importance: Tensor | None = None,
    method: str = "gradient_input",
    min_share: float = 0.1,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    **importance_options: Any,
) -> StrategicClusterGraph:
    """Embed the per-image concept importance of a class in 2-D and say which concepts matter.

    See the module docstring for the method (Fel et al., NeurIPS 2023) and the rule:
    ``d_j = argmax_i φ_i(x_j)``, ``share_i = |{j : d_j = i}| / N``, concept ``i`` important
    when ``share_i ≥ min_share``; the embedding is UMAP of the rows ``φ(x_j)``.

    Parameters
    ----------
    craft
        A fitted :class:`~spyglass.concepts.Craft`.
    images
        ``(N, 3, H, W)`` in ``[0, 1]``, typically the photos of the class; their per-image
        importance is computed with ``craft.importance(images, method, per_image=True)``.
    importance
        ``(N, r)`` per-image importance computed beforehand, instead of ``images``.
    method
        The importance estimator when ``images`` are given. Default ``"gradient_input"``:
        one gradient per image, and exact for a decomposition at the last layer (the
        holistic paper's result); ``"sobol"`` costs ``nb_design · (r + 2)`` evaluations of
        the top of the model per image.
    min_share
        The rule's threshold, in ``[0, 1]``.
    n_neighbors, min_dist
        UMAP's locality and spread (``n_neighbors`` is capped at ``N − 1``).
    seed
        UMAP's random state: the same seed gives the same embedding.
    importance_options
        Passed on to :meth:`Craft.importance` (``nb_design=...``, ``steps=...``).

    Returns
    -------
    StrategicClusterGraph
        The embedding and the numbers behind it; draw it with
        :func:`spyglass.plots.strategic_cluster_graph`.

    Raises
    ------
    ValueError
        Neither or both of ``images`` and ``importance``; fewer than 4 images (UMAP needs
        neighbours); an importance matrix of the wrong shape or with non-finite values.

    Examples
    --------
    >>> import torch
    >>> from spyglass.concepts import strategic_cluster_graph
    >>> from spyglass.concepts.craft import Craft
    >>> _ = torch.manual_seed(0)
    >>> phi = torch.rand(30, 3) * torch.tensor([1.0, 0.2, 0.6])  # 30 images, 3 concepts
    >>> craft = Craft(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)), n_concepts=3)
    >>> graph = strategic_cluster_graph(craft, importance=phi)
    >>> graph.embedding.shape, graph.important
    (torch.Size([30, 2]), [0, 2])
    """
    from spyglass.concepts.craft import Craft

    if not isinstance(craft, Craft):  # unfitted is fine when importance is given: only r is read
        raise TypeError(f"craft must be a spyglass.concepts.Craft; got {type(craft).__name__}")
    if (images is None) == (importance is None):
        raise ValueError("give either images (their importance is computed) or importance (N, r), not both")
    min_share = _check_share(min_share)
    n_neighbors = check_int(n_neighbors, "n_neighbors", 2)
    # UMAP fits its curve for min_dist in [0, spread] (spread is 1 here); past it the fit fails.
    check_float(min_dist, "min_dist", minimum=0.0, maximum=1.0)
    seed = check_seed(seed)
    if importance is None:
        assert images is not None
        values = craft.importance(images, method, per_image=True, **importance_options)
    else:
        if importance_options:
            raise ValueError(
                f"importance options {sorted(importance_options)} only apply when images are given"
            )
        if not isinstance(importance, Tensor):
            raise TypeError(f"importance must be a torch.Tensor (N, r); got {type(importance).__name__}")
        values = importance
    values = values.detach().to("cpu", torch.float32)
    if values.ndim != 2 or values.shape[1] != craft.n_concepts:
        raise ValueError(
            f"importance must have shape (N, n_concepts={craft.n_concepts}); got {tuple(values.shape)}"
        )
    if values.shape[0] < 4:
        raise ValueError(
            f"a strategic cluster graph needs at least 4 images (UMAP embeds each among its "
            f"neighbours); got {values.shape[0]}"
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("importance holds NaN or infinite values; cannot embed it")
    embedding = torch.from_numpy(_embed(values.numpy(), n_neighbors, float(min_dist), seed))
    dominant = values.argmax(dim=1)
    shares = torch.bincount(dominant, minlength=craft.n_concepts).float() / values.shape[0]
    ranked = shares.argsort(descending=True, stable=True).tolist()
    # A small tolerance: a share of exactly min_share (3 of 30 at 10 %) counts despite rounding.
    important = [int(i) for i in ranked if float(shares[i]) >= min_share - 1e-9 and float(shares[i]) > 0]
    return StrategicClusterGraph(
        embedding=embedding,
        importance=values,
        dominant=dominant,
        shares=shares,
        mean_importance=values.mean(dim=0),
        important=important,
        min_share=min_share,
    )
