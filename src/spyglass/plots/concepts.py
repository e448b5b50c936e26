"""Figures of CRAFT's concepts: their importance, their most typical crops, and where they are.

Like every spyglass figure these are :class:`matplotlib.figure.Figure` objects on the Agg
canvas, built without pyplot; save them with ``figure.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spyglass.plots.attributions import ArrayLike, _check_one_image, _to_numpy, overlay
from spyglass.validation import check_int, check_positive_float

if TYPE_CHECKING:
    from spyglass.concepts import Craft
    from spyglass.concepts.strategic import StrategicClusterGraph

__all__ = ["concept_crops", "concept_importance", "concept_maps", "strategic_cluster_graph"]


def _canvas(width: float, height: float, dpi: int) -> Figure:
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _check_importance(importance: ArrayLike, expected: int | None = None) -> np.ndarray:
    values = _to_numpy(importance, "importance")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            "importance must be a non-empty 1-d vector (one value per concept); "
            f"got shape {tuple(values.shape)}"
        )
    if expected is not None and values.size != expected:
        raise ValueError(f"importance must hold one value per concept ({expected}); got {values.size}")
    return values


def _check_size(value: object, name: str) -> None:
    check_positive_float(value, name, hint="inches")


def concept_importance(
    importance: ArrayLike,
    *,
    names: Sequence[str] | None = None,
    title: str = "concept importance",
    dpi: int = 100,
) -> Figure:
    """Horizontal bars of each concept's importance, the most important at the top.

    Parameters
    ----------
    importance
        ``(r,)``, e.g. :meth:`~spyglass.concepts.Craft.importance`.
    names
        One label per concept (default ``concept 0``, ``concept 1``, ...).
    title
        Title of the plot.
    dpi
        Resolution of the figure.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> figure = plots.concept_importance(torch.tensor([0.1, 0.5, 0.2]))
    >>> [t.get_text() for t in figure.axes[0].get_yticklabels()]
    ['concept 1', 'concept 2', 'concept 0']
    """
    values = _check_importance(importance)
    if names is None:
        labels = [f"concept {i}" for i in range(values.size)]
    else:
        if isinstance(names, str) or len(names) != values.size:
            got = "a string" if isinstance(names, str) else f"{len(names)}"
            raise ValueError(
                f"names must be a sequence of {values.size} strings (one per concept); got {got}"
            )
        labels = [str(name) for name in names]
    order = np.argsort(-values, kind="stable")
    figure = _canvas(6.0, 0.9 + 0.35 * values.size, dpi)
    ax = figure.add_subplot()
    positions = np.arange(values.size)
    ax.barh(positions, values[order], color="#c0392b", height=0.7)
    ax.set_yticks(positions, [labels[i] for i in order])
    ax.invert_yaxis()  # the most important at the top
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("importance")
    ax.set_title(title)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    span = float(np.abs(values).max()) or 1.0
    for y, value in zip(positions.tolist(), values[order].tolist(), strict=True):
        ax.text(
            value + (0.01 if value >= 0 else -0.01) * span,
            y,
            f"{value:.3g}",
            va="center",
            ha="left" if value >= 0 else "right",
            fontsize=8,
        )
    ax.margins(x=0.12)
    return figure


def concept_crops(
    craft: Craft,
    *,
    concepts: Sequence[int] | None = None,
    per_concept: int = 8,
    importance: ArrayLike | None = None,
    cell_size: float = 1.2,
    dpi: int = 100,
) -> Figure:
    """A row per concept: the ``per_concept`` fitting crops that hold the most of it.

    The crops of a row are those with the largest coefficient of the concept in
    ``craft.crops_u_``, best first, shown at their own resolution (not resized to the model's
    input). Each row is titled with its concept index and, if given, its importance.

    Parameters
    ----------
    craft
        A fitted :class:`~spyglass.concepts.Craft`.
    concepts
        The concepts shown, in this order (default: all); e.g.
        ``importance.argsort(descending=True)[:5].tolist()``.
    per_concept
        Crops per row (fewer if the Craft has fewer crops).
    importance
        ``(n_concepts,)``, the importance of every concept of the Craft (shown in the titles).
    cell_size
        Size of one crop in inches.
    dpi
        Resolution of the figure.
    """
    from spyglass.concepts import Craft

    if not isinstance(craft, Craft):
        raise TypeError(f"craft must be a spyglass.concepts.Craft; got {type(craft).__name__}")
    if not craft.is_fitted:
        raise ValueError(
            "craft is not fitted yet; call craft.fit(images, class_id) before plotting its crops"
        )
    check_int(per_concept, "per_concept", 1)
    _check_size(cell_size, "cell_size")
    chosen = craft._concept_indices(None if concepts is None else list(concepts))
    weights = None if importance is None else _check_importance(importance, craft.n_concepts)
    codes = craft.crops_u_.detach().to("cpu", torch.float64)
    crops = craft.crops_.detach().to("cpu", torch.float64).clamp(0.0, 1.0).numpy().transpose(0, 2, 3, 1)
    columns = min(per_concept, crops.shape[0])

    figure = _canvas(columns * cell_size, len(chosen) * (cell_size + 0.3), dpi)
    rows = figure.subfigures(len(chosen), 1, squeeze=False)[:, 0]
    for row, concept in zip(rows, chosen, strict=True):
        best = torch.argsort(codes[:, concept], descending=True, stable=True)[:columns].tolist()
        title = f"concept {concept}"
        if weights is not None:
            title += f"  (importance {weights[concept]:.3g})"
        row.suptitle(title, fontsize=10)
        axes = row.subplots(1, columns, squeeze=False)[0]
        for ax, index in zip(axes, best, strict=True):
            _bare(ax)
            ax.imshow(crops[index])
    return figure


def concept_maps(
    image: ArrayLike,
    maps: ArrayLike,
    *,
    importance: ArrayLike | None = None,
    concepts: Sequence[int] | None = None,
    columns: int = 5,
    alpha: float = 0.8,
    cell_size: float = 2.0,
    dpi: int = 100,
) -> Figure:
    """One image and where each concept is in it, as overlays (see :func:`overlay`).

    Parameters
    ----------
    image
        ``(3, H, W)`` in [0, 1].
    maps
        ``(r, H, W)``, e.g. ``craft.concept_maps(images)[i]`` (non-negative coefficients,
        drawn one-signed, each on its own scale).
    importance
        ``(r,)``, shown in the titles; with it the maps are ordered by decreasing importance.
    concepts
        The concept index of each map (default ``0 … r−1``), for the titles: pass it when
        ``maps`` holds a subset of the concepts.
    columns
        Panels per row (the image takes the first).
    alpha
        See :func:`overlay`.
    cell_size
        Size of one panel in inches.
    dpi
        Resolution of the figure.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> figure = plots.concept_maps(torch.rand(3, 32, 32), torch.rand(3, 32, 32))
    >>> [ax.get_title() for ax in figure.axes if ax.get_images()]
    ['image', 'concept 0', 'concept 1', 'concept 2']
    """
    pixels = _check_one_image(image)
    values = _to_numpy(maps, "maps")
    if values.ndim != 3 or values.shape[1:] != pixels.shape[:2]:
        hint = " (one image's maps: take maps[i] of an (N, r, H, W) batch)" if values.ndim == 4 else ""
        raise ValueError(
            f"maps must have shape (r, H, W) with the image's (H, W) = {pixels.shape[:2]}; "
            f"got {tuple(values.shape)}{hint}"
        )
    count = values.shape[0]
    if count == 0:
        raise ValueError("maps holds no concept; give at least one (H, W) map")
    indices = list(range(count)) if concepts is None else [int(c) for c in concepts]
    if len(indices) != count:
        raise ValueError(f"concepts must name one concept per map ({count}); got {len(indices)}")
    weights = None if importance is None else _check_importance(importance, count)
    order = list(range(count)) if weights is None else np.argsort(-weights, kind="stable").tolist()
    check_int(columns, "columns", 2, hint="the image and at least one map")
    _check_size(cell_size, "cell_size")

    panels = 1 + count
    width = min(columns, panels)
    height = -(-panels // width)
    figure = _canvas(width * cell_size, height * (cell_size + (0.5 if weights is not None else 0.3)), dpi)
    axes = figure.subplots(height, width, squeeze=False).flatten()
    for ax in axes:
        _bare(ax)
    axes[0].imshow(pixels)
    axes[0].set_title("image", fontsize=10)
    chw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    for ax, k in zip(axes[1:], order, strict=False):
        ax.imshow(np.asarray(overlay(chw, values[k], alpha=alpha, signed=False)))
        title = f"concept {indices[k]}"
        if weights is not None:
            title += f"\nimportance {weights[k]:.3g}"
        ax.set_title(title, fontsize=10)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure


def strategic_cluster_graph(
    graph: StrategicClusterGraph,
    *,
    names: Sequence[str] | None = None,
    title: str = "strategic cluster graph",
    size: float = 6.0,
    dpi: int = 100,
) -> Figure:
    """A scatter of the images' importance vectors in 2-D, coloured by their dominant concept.

    Every point is an image (:func:`spyglass.concepts.strategic_cluster_graph`); its colour is
    the concept that is most important for it. The legend gives each concept's share of the
    images it dominates; the important concepts (``share >= graph.min_share``) are listed
    first, the others greyed.

    Parameters
    ----------
    graph
        A :class:`~spyglass.concepts.StrategicClusterGraph`.
    names
        One label per concept (default ``concept 0``, ``concept 1``, ...).
    title
        Title of the plot.
    size
        Side of the square plot, in inches.
    dpi
        Resolution of the figure.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> from spyglass.concepts import StrategicClusterGraph
    >>> graph = StrategicClusterGraph(
    ...     embedding=torch.rand(6, 2), importance=torch.rand(6, 2),
    ...     dominant=torch.tensor([0, 0, 0, 0, 1, 1]), shares=torch.tensor([4 / 6, 2 / 6]),
    ...     mean_importance=torch.rand(2), important=[0, 1], min_share=0.1)
    >>> [t.get_text() for t in plots.strategic_cluster_graph(graph).axes[0].get_legend().get_texts()]
    ['concept 0 · 67%', 'concept 1 · 33%']
    """
    from spyglass.concepts.strategic import StrategicClusterGraph

    if not isinstance(graph, StrategicClusterGraph):
        raise TypeError(
            "graph must be a StrategicClusterGraph (from spyglass.concepts.strategic_cluster_graph); "
            f"got {type(graph).__name__}"
        )
    count = int(graph.shares.shape[0])
    if names is None:
        labels = [f"concept {i}" for i in range(count)]
    elif isinstance(names, str) or len(names) != count:
        raise ValueError(f"names must be a sequence of {count} strings (one per concept)")
    else:
        labels = [str(name) for name in names]
    _check_size(size, "size")
    points = graph.embedding.detach().cpu().numpy()
    dominant = graph.dominant.detach().cpu().numpy()
    shares = graph.shares.detach().cpu().numpy()
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    figure = _canvas(size, size, dpi)
    ax = figure.add_subplot()
    present = [i for i in range(count) if shares[i] > 0]
    order = list(graph.important) + [i for i in present if i not in graph.important]
    for concept in order:
        chosen = dominant == concept
        important = concept in graph.important
        ax.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=36 if important else 18,
            color=palette(concept % palette.N) if important else "#b0b0b0",
            edgecolors="white",
            linewidths=0.5,
            label=f"{labels[concept]} · {100 * shares[concept]:.0f}%",
        )
    ax.legend(title="dominant concept · share of images", fontsize=8, title_fontsize=8, loc="best")
    ax.set_title(f"{title}\n{len(points)} images; important: share ≥ {100 * graph.min_share:.0f}%")
    _bare(ax)
    return figure
