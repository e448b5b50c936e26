"""Deletion and Insertion curves: the score of each method's maps as pixels go or come.

One panel per metric, one line per method: the curve averaged over the images, with its
area (the metric's value) in the legend. Built on :class:`matplotlib.figure.Figure` with
the Agg canvas, like every spyglass plot.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["fidelity_curves"]

_LABELS = {"deletion": "pixels removed", "insertion": "pixels inserted"}


def fidelity_curves(
    curves: Mapping[str, Mapping[str, Tensor]],
    *,
    ylabel: str = "score",
    panel_size: float = 4.5,
    dpi: int = 100,
) -> Figure:
    """Mean Deletion/Insertion curves of several methods, one panel per metric.

    Parameters
    ----------
    curves
        ``{metric: {method: curves (N, S + 1)}}``, e.g. from
        :meth:`spyglass.metrics.Deletion.curves`; the points are spread evenly over the
        share of pixels, 0 to 1.
    ylabel
        What the curves measure (the metric's objective).
    panel_size, dpi
        Size of each panel in inches; resolution.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> figure = plots.fidelity_curves({"deletion": {"saliency": torch.rand(3, 11)}})
    >>> figure.axes[0].get_title()
    'deletion'
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping {metric: {method: curves (N, S + 1)}}")
    figure = Figure(figsize=(panel_size * len(curves), panel_size * 0.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    for column, (metric, by_method) in enumerate(curves.items(), start=1):
        ax = figure.add_subplot(1, len(curves), column)
        for method, values in by_method.items():
            if not isinstance(values, Tensor) or values.ndim != 2 or values.shape[1] < 2:
                shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
                raise ValueError(
                    f"curves[{metric!r}][{method!r}] must be a tensor (N, S + 1) with S >= 1; got {shape}"
                )
            mean = values.detach().to("cpu", torch.float64).mean(dim=0).numpy()
            x = np.linspace(0.0, 1.0, mean.size)
            area = float(((mean[1:] + mean[:-1]) / 2).sum() / (mean.size - 1))  # trapezoid rule on [0, 1]
            ax.plot(x, mean, label=f"{method} ({area:.3f})", linewidth=1.5)
        ax.set_title(metric)
        ax.set_xlabel(f"share of {_LABELS.get(metric, 'pixels')}")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0.0, 1.0)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
        ax.legend(fontsize=8, title="method (area)", title_fontsize=8, frameon=False)
    return figure
