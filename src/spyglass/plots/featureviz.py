"""Feature visualizations side by side: each image, and the image × its transparency.

MACO (Fel, Boissin et al., NeurIPS 2023) returns, with every image, a transparency map:
the accumulated absolute gradient of the objective with respect to the image, i.e. where
the model looked during the optimisation. Multiplying the image by it fades what did not
matter to black, which is how the paper shows its results.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas (no pyplot).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from spyglass.featureviz.optimize import Visualization

__all__ = ["transparent_image", "visualizations"]


def _check(visualization: object, where: str) -> Visualization:
    if not isinstance(visualization, Visualization):
        raise TypeError(
            f"{where} must be a spyglass.featureviz.Visualization (from maco or fourier); "
            f"got {type(visualization).__name__}"
        )
    image, transparency = visualization.image, visualization.transparency
    if image.ndim != 3 or image.shape[0] != 3 or transparency.shape != image.shape[1:]:
        raise ValueError(
            f"{where} must hold a (3, S, S) image and an (S, S) transparency; got "
            f"{tuple(image.shape)} and {tuple(transparency.shape)}"
        )
    return visualization


def _as_array(image: Tensor) -> np.ndarray:
    array: np.ndarray = image.detach().to("cpu", torch.float32).clamp(0, 1).permute(1, 2, 0).numpy()
    return array


def transparent_image(visualization: Visualization) -> Image.Image:
    """The image × its transparency, ``image · T`` with ``T`` in [0, 1], as a PIL RGB image.

    Examples
    --------
    >>> import torch
    >>> from spyglass.featureviz import Visualization
    >>> from spyglass.plots import transparent_image
    >>> v = Visualization(torch.rand(3, 16, 16), torch.rand(16, 16), torch.zeros(1))
    >>> transparent_image(v).size
    (16, 16)
    """
    visualization = _check(visualization, "visualization")
    weighted = visualization.image * visualization.transparency.clamp(0, 1)[None]
    return Image.fromarray((_as_array(weighted) * 255).round().astype(np.uint8))


def visualizations(
    results: Visualization | Sequence[Visualization],
    titles: Sequence[str] | None = None,
    *,
    size: float = 2.6,
    dpi: int = 100,
) -> Figure:
    """One column per feature visualization: the image on top, image × transparency below.

    The transparency of MACO (Fel, Boissin et al., NeurIPS 2023) is the accumulated
    ``|∂objective/∂image|``, scaled to [0, 1]; the lower row shows ``image · T``.

    Parameters
    ----------
    results
        One :class:`~spyglass.featureviz.Visualization` or several.
    titles
        One title per column (default: none).
    size, dpi
        Side of each panel in inches, and the figure's resolution.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> from spyglass.featureviz import Visualization
    >>> v = Visualization(torch.rand(3, 32, 32), torch.rand(32, 32), torch.zeros(1))
    >>> figure = plots.visualizations([v, v], titles=["a", "b"])
    >>> len(figure.axes)
    4
    """
    items = [results] if isinstance(results, Visualization) else list(results)
    if not items:
        raise ValueError("results must hold at least one Visualization")
    items = [_check(item, f"results[{i}]") for i, item in enumerate(items)]
    if titles is not None:
        titles = list(titles)
        if len(titles) != len(items):
            raise ValueError(
                f"titles must have one entry per visualization ({len(items)}); got {len(titles)}"
            )
    figure = Figure(figsize=(size * len(items), size * 2 + 0.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(items), squeeze=False)
    for column, item in enumerate(items):
        axes[0, column].imshow(_as_array(item.image))
        axes[1, column].imshow(np.asarray(transparent_image(item)))
        if titles is not None:
            axes[0, column].set_title(titles[column], fontsize=9)
        for ax in axes[:, column]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("image × transparency", fontsize=9)
    return figure
