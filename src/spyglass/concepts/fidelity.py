"""Fidelity of a concept importance: C-Deletion, C-Insertion and C-μFidelity.

Fel et al., "A Holistic Approach to Unifying Automatic Concept Extraction and Concept
Importance Estimation" (NeurIPS 2023) carry the pixel fidelity metrics over to concept
space: instead of pixels, concepts are removed from (or added to) an image's activations,
and a good importance is one whose ranking, or whose sums, predict how the class score
moves.

Every score here is the one :meth:`~spyglass.concepts.Craft.importance` explains,
``s(U ⊙ m) = objective(h, Ψ(U ⊙ m) + E, class_id_)``: the image's coefficients ``U``
``(h·w, r)`` scaled by a mask ``m ∈ {0, 1}^r`` over concepts (the same at every spatial
position), rebuilt by the dictionary, with the reconstruction residual ``E = A − Ψ(U)``
kept (see :mod:`spyglass.concepts._importance` for why). So the full mask gives the
model's own score, and "all concepts removed" gives ``h(Ψ(0) + E)`` — ``h(E)`` for a
dictionary without an offset (NMF, Semi-NMF, k-means, sparse coding; PCA and ICA add back
their mean). What the dictionary misses is never removed: the metrics measure the
importance of the concepts, not the quality of the dictionary (which
:func:`~spyglass.concepts.relative_reconstruction_error` measures).

The masks of one image go through ``h`` ``craft.batch_size`` at a time, without gradient,
with the model in evaluation mode and restored afterwards.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
from torch import Tensor

from spyglass.concepts.craft import Craft
from spyglass.engines.state import eval_mode
from spyglass.metrics import auc, pearson_rows
from spyglass.validation import check_images, check_int, check_seed

__all__ = ["concept_deletion", "concept_insertion", "concept_mufidelity"]


def _check_craft(craft: object) -> Craft:
    if not isinstance(craft, Craft):
        raise TypeError(f"craft must be a fitted spyglass.concepts.Craft; got {type(craft).__name__}")
    craft.learner_  # noqa: B018 - raises NotFittedError (a ValueError) before fit
    return craft


def _check_importance(importance: object, n_images: int, n_concepts: int) -> Tensor:
    """``importance`` as ``float64`` ``(n_images, n_concepts)`` on the CPU."""
    if not isinstance(importance, Tensor):
        raise TypeError(f"importance must be a torch.Tensor; got {type(importance).__name__}")
    if importance.ndim == 1 and importance.shape[0] == n_concepts:
        importance = importance[None].expand(n_images, -1)
    if importance.shape != (n_images, n_concepts):
        raise ValueError(
            f"importance must have shape ({n_concepts},) (global) or ({n_images}, {n_concepts}) "
            f"(one row per image) for {n_images} image(s) and {n_concepts} concepts; "
            f"got {tuple(importance.shape)}"
        )
    if importance.is_complex() or importance.dtype == torch.bool:
        raise ValueError(f"importance must be real numbers; got dtype {importance.dtype}")
    values = importance.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("importance must be finite (no NaN or inf)")
    return values


def _masked_scores(craft: Craft, images: Tensor, masks: Tensor, desc: str) -> Tensor:
    """``s(U_n ⊙ masks[n, k])`` ``(N, M)`` ``float64`` on the CPU, from masks ``(N, M, r)``."""
    rows: list[Tensor] = []
    with eval_mode(craft.model):
        for space in craft._concept_spaces(images, desc):
            for image in range(space.codes.shape[0]):
                scores = space.masked_scores(image, masks[len(rows)], craft.batch_size)
                rows.append(scores.detach().to("cpu", torch.float64))
    return torch.stack(rows)


def _ordered_masks(importance: Tensor, *, insertion: bool) -> Tensor:
    """``(N, r + 1, r)``: step ``k`` has the ``k`` most important concepts removed (or present)."""
    n_images, n_concepts = importance.shape
    order = torch.argsort(importance, dim=1, descending=True, stable=True)
    # rank[n, i]: the step at which concept i goes (0-based); it is gone from step rank + 1 on.
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_concepts).expand(n_images, -1))
    steps = torch.arange(n_concepts + 1)[None, :, None]
    gone = steps > rank[:, None, :]
    return (gone if insertion else ~gone).to(torch.float64)


def _curve_metric(
    craft: object, images: Tensor, importance: object, *, insertion: bool
) -> tuple[Tensor, Tensor]:
    fitted = _check_craft(craft)
    images = check_images(images, model=fitted.model)
    weights = _check_importance(importance, images.shape[0], fitted.n_concepts)
    masks = _ordered_masks(weights, insertion=insertion)
    name = "insertion" if insertion else "deletion"
    curves = _masked_scores(fitted, images, masks, f"C-{name}")
    area = auc(curves)
    return area.to(torch.float32), curves.to(torch.float32)


@overload
def concept_deletion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: Literal[False] = ...
) -> Tensor: ...
@overload
def concept_deletion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: Literal[True]
) -> tuple[Tensor, Tensor]: ...
def concept_deletion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """C-Deletion: the class score as concepts are removed, most important first (lower is better).

    For every image the concepts are sorted by decreasing importance (ties keep their index
    order) and removed one at a time, each at every spatial position (its coefficients set
    to 0). Step ``k`` of the curve, ``k = 0 … r``, is ``s(U ⊙ m_k)`` with the ``k`` most
    important concepts removed: point 0 is the model's own score, point ``r`` is
    ``h(Ψ(0) + E)``, all concepts removed and the residual kept (see the module docstring).

    Parameters
    ----------
    craft
        A fitted :class:`~spyglass.concepts.Craft`; the class is its ``class_id_``, the score its
        ``objective``.
    images
        ``(N, 3, H, W)`` in ``[0, 1]``.
    importance
        ``(r,)``, one ranking for every image (e.g. ``craft.importance(images)``), or ``(N, r)``,
        one per image (``per_image=True``). Only the order matters.
    return_curves
        Also return the curves.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        ``float32`` ``(N,)`` on the CPU: the area under each curve by the trapezoid rule with
        the ``r + 1`` steps spread evenly over ``[0, 1]``, in the units of the score (not
        divided by the full score, which may be negative or near 0); then, with
        ``return_curves=True``, the curves ``(N, r + 1)``.

    Raises
    ------
    TypeError, ValueError
        ``craft`` not a fitted :class:`Craft` (:class:`~spyglass.concepts.NotFittedError`,
        a ``ValueError``), bad images, an importance of the wrong type, shape or with
        non-finite values.
    """
    area, curves = _curve_metric(craft, images, importance, insertion=False)
    return (area, curves) if return_curves else area


@overload
def concept_insertion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: Literal[False] = ...
) -> Tensor: ...
@overload
def concept_insertion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: Literal[True]
) -> tuple[Tensor, Tensor]: ...
def concept_insertion(
    craft: Craft, images: Tensor, importance: Tensor, *, return_curves: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """C-Insertion: the class score as concepts are added, most important first (higher is better).

    The mirror of :func:`concept_deletion`: the curve starts from all concepts removed,
    ``h(Ψ(0) + E)`` (the residual kept), and step ``k`` has only the ``k`` most important
    concepts present; point ``r`` is the model's own score. Same parameters, returns and
    errors as :func:`concept_deletion`.
    """
    area, curves = _curve_metric(craft, images, importance, insertion=True)
    return (area, curves) if return_curves else area


def concept_mufidelity(
    craft: Craft,
    images: Tensor,
    importance: Tensor,
    *,
    subset_size: int | None = None,
    nb_samples: int = 128,
    seed: int = 0,
) -> Tensor:
    """C-μFidelity: how well sums of importance predict the score lost by removing those concepts.

    ``nb_samples`` random subsets ``S`` of ``subset_size`` concepts are drawn (the same
    subsets for every image, from ``seed``); for each image, the metric is the Pearson
    correlation over the subsets between ``Σ_{i∈S} importance_i`` and
    ``s(U) − s(U ⊙ 1_{∉S})``, the drop of the score when the concepts of ``S`` are removed at
    every position (residual kept). For a decomposition at the last layer (``h`` affine in
    the activations) Gradient×Input scores exactly 1 (Fel et al., 2023).

    Parameters
    ----------
    craft, images, importance
        As in :func:`concept_deletion`; here the values matter, not only the order.
    subset_size
        Concepts per subset, in ``[1, r − 1]`` (``r`` would remove them all every time);
        default ``max(1, round(0.2 r))``, the paper's 20 %.
    nb_samples
        Subsets drawn, at least 2; ``nb_samples + 1`` evaluations of ``h`` per image.
    seed
        Seeds the subsets.

    Returns
    -------
    Tensor
        ``float32`` ``(N,)`` on the CPU, one correlation per image (their mean is the usual
        summary); NaN for an image where either side is constant over the subsets (e.g. an
        importance equal for every concept).

    Raises
    ------
    TypeError, ValueError
        As :func:`concept_deletion`; a bad ``subset_size``, ``nb_samples`` or ``seed``;
        fewer than 2 concepts.
    """
    fitted = _check_craft(craft)
    n_concepts = fitted.n_concepts
    if n_concepts < 2:
        raise ValueError("concept_mufidelity needs at least 2 concepts to draw proper subsets of them")
    if subset_size is None:
        subset_size = max(1, round(0.2 * n_concepts))
    subset_size = check_int(subset_size, "subset_size", 1)
    if subset_size >= n_concepts:
        raise ValueError(
            f"subset_size must lie in [1, {n_concepts - 1}] for {n_concepts} concepts; got {subset_size}"
        )
    nb_samples = check_int(nb_samples, "nb_samples", 2)
    generator = torch.Generator().manual_seed(check_seed(seed))
    images = check_images(images, model=fitted.model)
    weights = _check_importance(importance, images.shape[0], n_concepts)

    chosen = torch.rand(nb_samples, n_concepts, generator=generator).argsort(dim=1)[:, :subset_size]
    removed = torch.zeros(nb_samples, n_concepts, dtype=torch.float64).scatter_(1, chosen, 1.0)
    masks = torch.cat([torch.ones(1, n_concepts, dtype=torch.float64), 1.0 - removed])
    scores = _masked_scores(fitted, images, masks.expand(images.shape[0], -1, -1), "C-μFidelity")
    drops = scores[:, :1] - scores[:, 1:]
    summed = weights @ removed.T
    return pearson_rows(summed, drops).to(torch.float32)
