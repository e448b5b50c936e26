"""Plots: matplotlib figures of spyglass's results, built without pyplot.

Figures are :class:`matplotlib.figure.Figure` objects on the non-interactive Agg canvas,
so plotting never opens a window or touches pyplot's global state; save them with
``figure.savefig(path)``.

>>> import torch
>>> from spyglass import plots
>>> figure = plots.attributions(torch.rand(1, 3, 32, 32), {"saliency": torch.rand(1, 32, 32)})
>>> plots.overlay(torch.rand(3, 32, 32), torch.rand(32, 32)).size
(32, 32)
"""

from spyglass.plots.attributions import (
    DIVERGING_CMAP,
    SEQUENTIAL_CMAP,
    attributions,
    is_signed,
    overlay,
)
from spyglass.plots.concepts import (
    concept_crops,
    concept_importance,
    concept_maps,
    strategic_cluster_graph,
)
from spyglass.plots.featureviz import transparent_image, visualizations
from spyglass.plots.metrics import fidelity_curves

__all__ = [
    "DIVERGING_CMAP",
    "SEQUENTIAL_CMAP",
    "attributions",
    "concept_crops",
    "concept_importance",
    "concept_maps",
    "fidelity_curves",
    "is_signed",
    "overlay",
    "strategic_cluster_graph",
    "transparent_image",
    "visualizations",
]
