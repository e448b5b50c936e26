"""Attribution maps drawn over the images they explain.

Every map is shown over a greyed copy of its image, so that the colour belongs to the
map alone. Each map is scaled on its own and robustly, with percentiles instead of the
minimum and maximum (99 by default), so that a handful of extreme pixels do not wash out
the rest. Two kinds of maps are told apart from the data (:func:`is_signed`):

- a *signed* map has clear values of both signs (Integrated Gradients, Gradient×Input):
  0 means "no evidence", so it is divided by the 99th percentile of ``|map|``, clipped to
  ``[-1, 1]`` and drawn with a diverging colour map centred at 0 (red for the class,
  blue against it);
- any other map is *one-signed* (saliency, Grad-CAM, Sobol indices, RISE's expected
  scores): only its ranking matters, and a constant offset such as RISE's mean score
  carries no information, so it is scaled from its 1st to its 99th percentile (a robust
  min–max) and drawn with a sequential colour map.

A pixel's opacity grows with its scaled value, so where a map is near zero (signed) or
near its low end (one-signed) the image shows through.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot,
no global state, no window; save them with ``figure.savefig(path)``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from spyglass.validation import check_float, check_images, check_positive_float, check_probability

__all__ = ["DIVERGING_CMAP", "SEQUENTIAL_CMAP", "attributions", "is_signed", "overlay"]

ArrayLike: TypeAlias = Tensor | np.ndarray
ColormapLike: TypeAlias = str | Colormap

DIVERGING_CMAP = "RdBu_r"
"""Colour map of signed maps: blue below 0, white at 0, red above."""
SEQUENTIAL_CMAP = "inferno"
"""Colour map of one-signed maps: dark (low) to bright yellow (high)."""

# A map counts as signed when both its low and its high percentile reach beyond this
# fraction of its scale on their side of 0: estimator noise (a Sobol index at -0.01)
# leaves a map one-signed, Integrated Gradients' evidence against the class does not.
_SIGNED_FRACTION = 0.05


def _to_numpy(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, Tensor):
        array = values.detach().to("cpu", torch.float64).numpy()
    elif isinstance(values, np.ndarray):
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers; got an array of dtype {values.dtype}")
        array = values.astype(np.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray; got {type(values).__name__}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} NaN or infinite value(s)")
    return array


def _check_percentile(percentile: float) -> float:
    return check_float(percentile, "percentile", minimum=0, maximum=100, low_open=True)
    return float(percentile)


def _check_alpha(alpha: float) -> float:
    return check_probability(alpha, "alpha")
    return float(alpha)


def _colormap(cmap: ColormapLike | None, signed: bool) -> Colormap:
    if cmap is None:
        return colormaps[DIVERGING_CMAP if signed else SEQUENTIAL_CMAP]
    if isinstance(cmap, Colormap):
        return cmap
    if isinstance(cmap, str):
        if cmap not in colormaps:
            raise ValueError(f"unknown matplotlib colour map {cmap!r}; e.g. {DIVERGING_CMAP!r}, 'viridis'")
        return colormaps[cmap]
    raise TypeError(f"cmap must be a colour map name or a matplotlib Colormap; got {type(cmap).__name__}")


def _scale(values: np.ndarray, percentile: float) -> float:
    """The robust magnitude of a map: a percentile of |map|, or its maximum if that is 0."""
    magnitude = np.abs(values)
    scale = float(np.percentile(magnitude, percentile))
    return scale if scale > 0 else float(magnitude.max())


def _is_signed(values: np.ndarray, percentile: float) -> bool:
    scale = _scale(values, percentile)
    if scale == 0:
        return False
    low, high = np.percentile(values, [100.0 - percentile, percentile])
    return bool(low < -_SIGNED_FRACTION * scale and high > _SIGNED_FRACTION * scale)


def is_signed(maps: ArrayLike, *, percentile: float = 99.0) -> bool:
    """Whether ``maps`` should be drawn as signed (diverging colours centred at 0).

    True when the map has clear values of both signs: its ``(100 - percentile)``-th
    percentile lies below −5 % of the ``percentile``-th percentile of ``|map|``, and its
    ``percentile``-th percentile above +5 % of it. Slightly negative estimator noise, or a
    map all of one sign (RISE's expected scores), is drawn one-signed. Pass all the maps
    of one method to decide once for all of them, as :func:`attributions` does for each
    column.

    Examples
    --------
    >>> import torch
    >>> from spyglass.plots import is_signed
    >>> is_signed(torch.randn(2, 8, 8)), is_signed(torch.rand(2, 8, 8)), is_signed(-torch.rand(8, 8))
    (True, False, False)
    """
    return _is_signed(_to_numpy(maps, "maps"), _check_percentile(percentile))


def _overlay_array(
    image: np.ndarray, values: np.ndarray, *, signed: bool, cmap: Colormap, alpha: float, percentile: float
) -> np.ndarray:
    """``image`` ``(H, W, 3)`` in [0, 1] and ``values`` ``(H, W)`` → ``(H, W, 3)`` in [0, 1]."""
    if signed:
        scale = _scale(values, percentile)
        normalised = np.clip(values / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(values)
        colours = cmap((normalised + 1.0) / 2.0)[..., :3]
    else:
        low, high = (float(v) for v in np.percentile(values, [100.0 - percentile, percentile]))
        if high <= low:  # more than (100 - percentile) % of the pixels share one value
            low, high = float(values.min()), float(values.max())
        span = high - low
        normalised = np.clip((values - low) / span, 0.0, 1.0) if span > 0 else np.zeros_like(values)
        colours = cmap(normalised)[..., :3]
    # Rec. 601 luminance, squeezed towards mid-grey so that the colours stand out on it.
    grey = image @ np.array([0.299, 0.587, 0.114])
    base = (0.25 + 0.6 * grey)[..., None]
    # Opacity follows the scaled value: weak attribution leaves the image visible instead
    # of veiling it in the colour map's low end.
    weight = alpha * np.abs(normalised)[..., None]
    return np.clip((1.0 - weight) * base + weight * colours, 0.0, 1.0)


def _check_one_image(image: ArrayLike) -> np.ndarray:
    array = _to_numpy(image, "image")
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W); got {tuple(array.shape)}")
    if array.min() < 0 or array.max() > 1:
        raise ValueError(f"image values must lie in [0, 1]; got [{array.min():.4g}, {array.max():.4g}]")
    return array.transpose(1, 2, 0)


def overlay(
    image: ArrayLike,
    attribution_map: ArrayLike,
    *,
    cmap: ColormapLike | None = None,
    alpha: float = 0.8,
    percentile: float = 99.0,
    signed: bool | None = None,
) -> Image.Image:
    """One attribution map over its greyed image, as an RGB PIL image of the same size.

    Parameters
    ----------
    image
        ``(3, H, W)`` in [0, 1].
    attribution_map
        ``(H, W)``.
    cmap
        A matplotlib colour map (name or object); default :data:`DIVERGING_CMAP` for a
        signed map and :data:`SEQUENTIAL_CMAP` otherwise.
    alpha
        Opacity of the colours where the map reaches its scale; weaker values are more
        transparent.
    percentile
        Robust scale: a signed map is divided by this percentile of ``|map|``, a
        one-signed map is scaled from its ``(100 - percentile)``-th to this percentile;
        both are clipped.
    signed
        Draw the map as signed or not; default :func:`is_signed` of this map.

    Examples
    --------
    >>> import torch
    >>> from spyglass.plots import overlay
    >>> overlay(torch.rand(3, 32, 48), torch.randn(32, 48)).size
    (48, 32)
    """
    pixels = _check_one_image(image)
    values = _to_numpy(attribution_map, "attribution_map")
    if values.shape != pixels.shape[:2]:
        raise ValueError(
            f"attribution_map must have the image's shape (H, W) = {pixels.shape[:2]}; "
            f"got {tuple(values.shape)}"
        )
    percentile, alpha = _check_percentile(percentile), _check_alpha(alpha)
    signed = _is_signed(values, percentile) if signed is None else bool(signed)
    rgb = _overlay_array(
        pixels, values, signed=signed, cmap=_colormap(cmap, signed), alpha=alpha, percentile=percentile
    )
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB")


def _check_maps(
    maps: Mapping[str, ArrayLike] | ArrayLike, shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    if isinstance(maps, (Tensor, np.ndarray)):
        named: Mapping[str, ArrayLike] = {"attribution": maps}
    elif isinstance(maps, Mapping):
        named = maps
    else:
        raise TypeError(
            "maps must be an (N, H, W) tensor or array, or a dict {method name: (N, H, W)}; "
            f"got {type(maps).__name__}"
        )
    if not named:
        raise ValueError("maps is an empty dict; give at least one {method name: (N, H, W) maps}")
    checked: dict[str, np.ndarray] = {}
    for name, values in named.items():
        if not isinstance(name, str):
            raise TypeError(f"maps keys must be method names (str); got {name!r}")
        label = f"maps[{name!r}]" if isinstance(maps, Mapping) else "maps"
        array = _to_numpy(values, label)
        if array.shape != shape:
            hint = " (add a batch dimension with map[None])" if array.shape == shape[1:] else ""
            raise ValueError(
                f"{label} must have shape (N, H, W) = {shape} to match images of shape "
                f"({shape[0]}, 3, {shape[1]}, {shape[2]}); got {tuple(array.shape)}{hint}"
            )
        checked[name] = array
    return checked


def _labels(labels: Sequence[str] | None, expected: int, what: str) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or len(labels) != expected:
        got = "a string" if isinstance(labels, str) else f"{len(labels)}"
        raise ValueError(f"{what} must be a sequence of {expected} strings; got {got}")
    return [str(label) for label in labels]


def attributions(
    images: ArrayLike,
    maps: Mapping[str, ArrayLike] | ArrayLike,
    *,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cmap: ColormapLike | None = None,
    alpha: float = 0.8,
    percentile: float = 99.0,
    signed: bool | None = None,
    colorbar: bool = True,
    cell_size: float = 2.2,
    dpi: int = 100,
) -> Figure:
    """A grid of attribution maps: one row per image, one column per method.

    The first column shows the images; each further column overlays one method's maps
    (see :func:`overlay`). Each map is scaled on its own; whether a column is drawn as
    signed is decided once for all of its maps (:func:`is_signed`).

    Parameters
    ----------
    images
        ``(N, 3, H, W)`` in [0, 1].
    maps
        ``{method name: (N, H, W)}`` (tensors or arrays), one column each in dict
        order; or a single ``(N, H, W)``.
    titles
        Column titles of the maps, one per map (default: the method names).
    row_labels
        One label per image, e.g. the class explained.
    cmap, alpha, percentile
        See :func:`overlay`.
    signed
        Draw every column as signed (True) or one-signed (False); default: decide per
        column from its maps.
    colorbar
        Add a small colour bar under each column of maps (``−``/``0``/``+`` for signed
        maps, ``low``/``high`` for one-signed ones; each map has its own scale).
    cell_size
        Size of one image in inches.
    dpi
        Resolution of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        On the Agg canvas; ``figure.savefig("grid.png")`` writes it.

    Examples
    --------
    >>> import torch
    >>> from spyglass import plots
    >>> images = torch.rand(2, 3, 32, 32)
    >>> figure = plots.attributions(images, {"saliency": torch.rand(2, 32, 32),
    ...                                      "integrated_gradients": torch.randn(2, 32, 32)},
    ...                             row_labels=["tabby", "espresso"])
    >>> len(figure.axes) >= 6
    True
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    pixels = check_images(images).detach().to("cpu", torch.float64).numpy().transpose(0, 2, 3, 1)
    n, height, width = pixels.shape[:3]
    checked = _check_maps(maps, (n, height, width))
    column_titles = _labels(titles, len(checked), "titles") or list(checked)
    labels = _labels(row_labels, n, "row_labels")
    percentile, alpha = _check_percentile(percentile), _check_alpha(alpha)
    check_positive_float(cell_size, "cell_size", hint="inches")

    columns = 1 + len(checked)
    figure = Figure(
        figsize=(columns * cell_size, n * cell_size + 0.4 + (0.5 if colorbar else 0.0)),
        dpi=dpi,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_title("image")
    for i in range(n):
        axes[i, 0].imshow(pixels[i])
        if labels is not None:
            axes[i, 0].set_ylabel(textwrap.fill(labels[i], 22), fontsize=9)
    for j, (values, title) in enumerate(zip(checked.values(), column_titles, strict=True), start=1):
        column_signed = _is_signed(values, percentile) if signed is None else bool(signed)
        colours = _colormap(cmap, column_signed)
        for i in range(n):
            rgb = _overlay_array(
                pixels[i], values[i], signed=column_signed, cmap=colours, alpha=alpha, percentile=percentile
            )
            axes[i, j].imshow(rgb)
        axes[0, j].set_title(textwrap.fill(title.replace("_", " "), 20))
        if colorbar:
            norm = Normalize(-1.0, 1.0) if column_signed else Normalize(0.0, 1.0)
            bar = figure.colorbar(
                ScalarMappable(norm=norm, cmap=colours),
                ax=list(axes[:, j]),
                location="bottom",
                shrink=0.8,
                aspect=15,
                pad=0.02,
            )
            bar.set_ticks([-1.0, 0.0, 1.0] if column_signed else [0.0, 1.0])
            bar.set_ticklabels(["−", "0", "+"] if column_signed else ["low", "high"])
            bar.ax.tick_params(labelsize=8, length=2)
    return figure
