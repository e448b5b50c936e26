r"""Grid cells ↔ pixels: the one definition every grid-based method uses.

Sobol, HSIC, RISE's sharp variant, LIME and KernelSHAP's grid segmentation, MuFidelity's
subsets and EVA's regions all cut an ``H × W`` image into a ``g × g`` grid. They must agree
on which pixel lies in which cell, so the rule is written once, here, in exact integer
arithmetic:

.. math:: \text{row cell}(r) = \lfloor r g / H \rfloor, \qquad
          \text{column cell}(c) = \lfloor c g / W \rfloor, \qquad
          \text{cell}(r, c) = \text{row cell}(r) \cdot g + \text{column cell}(c)

the cells of a nearest-neighbour upsampling of a ``g × g`` grid. When ``g`` does not
divide the image, cells differ in size by one pixel, and the larger ones are spread
evenly. (``torch.nn.functional.interpolate(mode="nearest")`` computes the same rule in
floating point and misplaces a pixel at some sizes, e.g. ``g = 62`` at 224 px or ``g = 2``
at 82 px; this module does not.)

Each cell is a box of pixels: rows ``⌈i H / g⌉ … ⌈(i+1) H / g⌉ - 1`` (and likewise for
columns), which :func:`cell_boxes` gives.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spyglass.validation import check_int

__all__ = ["cell_boxes", "cell_of_pixel", "cell_sums", "cells_along", "upsample_cells"]


def cells_along(length: int, cells: int, *, device: torch.device | str | None = None) -> Tensor:
    """The cell of each of ``length`` positions along one axis cut into ``cells``: ``(length,)`` long.

    Position ``p`` lies in cell ``p · cells // length``. Any two positive sizes are
    accepted (with ``cells > length`` some cells get no position, as when a nearest
    resampling shrinks).

    Examples
    --------
    >>> cells_along(7, 3).tolist()
    [0, 0, 0, 1, 1, 2, 2]
    """
    length = check_int(length, "length", 1)
    cells = check_int(cells, "cells", 1)
    return torch.arange(length, device=device) * cells // length


def _check_grid(height: int, width: int, grid_size: int) -> tuple[int, int, int]:
    height = check_int(height, "height", 1)
    width = check_int(width, "width", 1)
    grid_size = check_int(grid_size, "grid_size", 1)
    if grid_size > min(height, width):
        raise ValueError(
            f"grid_size must be at most the image size so that every cell has pixels; got "
            f"grid_size={grid_size} for {height}×{width} images"
        )
    return height, width, grid_size


def cell_of_pixel(
    height: int, width: int, grid_size: int, *, device: torch.device | str | None = None
) -> Tensor:
    """Which cell of a ``grid_size × grid_size`` grid each pixel lies in: ``(height, width)`` long.

    Cells are numbered row by row, ``0 … grid_size² - 1``; every cell has at least one pixel
    (``grid_size`` may not exceed the image's smaller side).

    Examples
    --------
    >>> cell_of_pixel(3, 5, 2)
    tensor([[0, 0, 0, 1, 1],
            [0, 0, 0, 1, 1],
            [2, 2, 2, 3, 3]])
    """
    height, width, grid_size = _check_grid(height, width, grid_size)
    rows = cells_along(height, grid_size, device=device)
    columns = cells_along(width, grid_size, device=device)
    return rows[:, None] * grid_size + columns[None, :]


def _starts(length: int, cells: int) -> Tensor:
    # Cell i starts at the first position p with p · cells // length >= i, i.e. ⌈i · length / cells⌉.
    return (torch.arange(cells + 1) * length + cells - 1) // cells


def cell_boxes(height: int, width: int, grid_size: int) -> Tensor:
    """Each cell's box of pixels: ``(grid_size², 4)`` long rows ``(top, left, bottom, right)``.

    Boxes are half-open (``image[..., top:bottom, left:right]`` is the cell), in the
    numbering of :func:`cell_of_pixel`, and they tile the image.

    Examples
    --------
    >>> cell_boxes(3, 5, 2).tolist()
    [[0, 0, 2, 3], [0, 3, 2, 5], [2, 0, 3, 3], [2, 3, 3, 5]]
    """
    height, width, grid_size = _check_grid(height, width, grid_size)
    rows, columns = _starts(height, grid_size), _starts(width, grid_size)
    top, left = rows[:-1].repeat_interleave(grid_size), columns[:-1].repeat(grid_size)
    bottom, right = rows[1:].repeat_interleave(grid_size), columns[1:].repeat(grid_size)
    return torch.stack([top, left, bottom, right], dim=1)


def upsample_cells(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Cell values ``(..., h, w)`` spread over their pixels: ``(..., H, W)``, exactly.

    Pixel ``(r, c)`` takes the value of cell ``(r h // H, c w // W)``: a nearest-neighbour
    resampling in integer arithmetic, so a ``g × g`` grid of masks lands on the cells of
    :func:`cell_of_pixel`. The values are copied, never blended.

    Examples
    --------
    >>> upsample_cells(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), (3, 3))
    tensor([[1., 1., 2.],
            [1., 1., 2.],
            [3., 3., 4.]])
    """
    if not isinstance(masks, Tensor) or masks.dim() < 2:
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a tensor (..., h, w); got {shape}")
    if len(size) != 2:
        raise ValueError(f"size must be (height, width); got {size!r}")
    height, width = size
    rows = cells_along(height, masks.shape[-2], device=masks.device)
    columns = cells_along(width, masks.shape[-1], device=masks.device)
    return masks[..., rows[:, None], columns[None, :]]


def cell_sums(maps: Tensor, grid_size: int) -> Tensor:
    """The sum of each map over each cell: ``(N, H, W)`` → ``(N, grid_size²)``, in the maps' dtype.

    Examples
    --------
    >>> cell_sums(torch.arange(6.0).view(1, 2, 3), 2)
    tensor([[1., 2., 7., 5.]])
    """
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor (N, H, W); got {shape}")
    cells = cell_of_pixel(maps.shape[1], maps.shape[2], grid_size, device=maps.device).flatten()
    sums = torch.zeros(maps.shape[0], grid_size * grid_size, dtype=maps.dtype, device=maps.device)
    return sums.index_add_(1, cells, maps.flatten(1))
