"""Occlusion (Zeiler & Fergus, 2014): slide a grey patch over the image, watch the score drop.

Why our own: the method is the point of the library, and it has to run on the perturbation
engine like every other black-box method, so that its memory is bounded by ``batch_size``
and its cost is the model's forward passes. Captum's ``Occlusion`` is the peer it is tested
against (same windows, same average), never a runtime dependency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._perturbations import check_fill
from spyglass.attributions._registry import register
from spyglass.engines.forward import iter_batches
from spyglass.engines.perturbation import inpainting, perturbation_scores
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_int

__all__ = ["Occlusion", "occlusion_drops"]


def occlusion_drops(scores: Tensor) -> Tensor:
    """``f(x) − f(x with part k removed)`` ``(..., K)`` from scores ``(..., K + 1)`` whose last is ``f(x)``.

    The rule of Occlusion in both spaces: a part is a window of pixels (then spread over
    its pixels) or one concept at every position. The unperturbed score comes last, in the
    same stream as the removals.
    """
    return scores[..., -1:] - scores[..., :-1]


def _window_count(length: int, patch: int, stride: int) -> int:
    """Windows along one axis: starts ``0, s, 2s, …`` until one reaches the far edge.

    The last start is ``s · ceil((L − p) / s)``, at or past ``L − p``: that window is cut by
    the border, so that every pixel is covered (Captum counts the same way).
    """
    return math.ceil((length - patch) / stride) + 1


class _SlidingWindows:
    """Row ``j < rows·cols`` hides window ``j`` (row-major); the last row hides nothing.

    Masks are built one batch at a time, ``(B, 1, H, W)``, 1 = keep. The extra, all-ones
    row gives the unperturbed score ``f(x)`` in the same stream as the occluded ones.
    """

    def __init__(self, size: tuple[int, int], patch: int, stride: int) -> None:
        self.size, self.patch, self.stride = size, patch, stride
        self.rows = _window_count(size[0], patch, stride)
        self.cols = _window_count(size[1], patch, stride)

    def __len__(self) -> int:
        return self.rows * self.cols + 1

    def __getitem__(self, rows: slice) -> Tensor:
        start, stop, _ = rows.indices(len(self))
        masks = torch.ones(stop - start, 1, *self.size)
        for offset, window in enumerate(range(start, min(stop, self.rows * self.cols))):
            top = (window // self.cols) * self.stride
            left = (window % self.cols) * self.stride
            masks[offset, :, top : top + self.patch, left : left + self.patch] = 0.0
        return masks


@register("occlusion")
class Occlusion(Attribution):
    r"""Occlusion: the score lost when a patch is greyed out, averaged over the patches.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    A ``patch × patch`` square filled with ``value`` slides over the image with step
    ``stride``; each pixel gets the mean score drop of the windows ``W`` that cover it:

    .. math:: \phi(x)_{ij} = \frac{1}{|\{W \ni (i,j)\}|} \sum_{W \ni (i,j)}
              \big( f_y(x) - f_y(x \odot (1 - \mathbb{1}_W) + v\, \mathbb{1}_W) \big)

    Windows start at ``0, s, 2s, …`` along each axis until one reaches the far edge (that
    last one is cut by the border), so every pixel is covered: ``(⌈(H − p)/s⌉ + 1) ×
    (⌈(W − p)/s⌉ + 1)`` windows. This is Captum's ``Occlusion`` with
    ``sliding_window_shapes=(3, p, p)``, ``strides=(3, s, s)`` and ``baselines=value``, whose
    maps are equal across the three channels; this class returns that one ``(H, W)`` map.

    The drops are :func:`occlusion_drops`, as in concept-space occlusion. Cost: one forward
    pass per window plus one for ``f(x)``, per image: 730 at the defaults on a 224 px image
    (27 × 27 windows).

    Parameters
    ----------
    patch
        Side of the square window, in pixels. 16 px (1/14 of a 224 px image, about half an
        object part) is fine enough to localise and coarse enough to move the score.
    stride
        Step between windows, in pixels, at most ``patch`` (no pixel left uncovered).
        Half the patch by default, so that each pixel averages up to four windows.
    value
        The fill: ``None`` (default) for the colour the model normalises to zero (its
        ``mean``; 0.5 for a model without one), the grey square of the paper; or a float
        or 3 floats (RGB) in [0, 1].

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> occlusion = attributions.Occlusion(models.load(), patch=32, stride=32)  # 49 windows
    >>> occlusion(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    kind = "black-box"
    settings = levels(cheap={"patch": 8, "stride": 4}, quick={"patch": 56, "stride": 56})

    def __init__(
        self,
        model: nn.Module,
        *,
        patch: int = 16,
        stride: int = 8,
        value: float | Sequence[float] | Tensor | None = None,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        check_int(patch, "patch", 1, hint="pixels")
        check_int(
            stride,
            "stride",
            1,
            maximum=patch,
            hint="at most the patch: a larger step leaves pixels uncovered",
        )
        self.patch, self.stride = patch, stride
        self.value = check_fill(value, model)

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        if self.patch > min(height, width):
            raise ValueError(f"patch={self.patch} exceeds the images' size {height}×{width}")
        windows = _SlidingWindows((height, width), self.patch, self.stride)
        scores = perturbation_scores(
            self.model,
            images,
            targets,
            windows,
            perturbation=inpainting(self.value),
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        )
        scores = scores.detach().to("cpu", torch.float64)
        drops = occlusion_drops(scores).reshape(-1, 1, windows.rows, windows.cols)
        # Spreading each window's drop over its pixels is a transposed convolution with a
        # patch of ones; its output runs past the border exactly where the last windows do.
        ones = torch.ones(1, 1, self.patch, self.patch, dtype=torch.float64)
        count = F.conv_transpose2d(torch.ones_like(drops[:1]), ones, stride=self.stride)[..., :height, :width]
        # A few images at a time, so the float64 temporaries stay the size of a batch, not of N maps.
        maps = torch.empty(images.shape[0], height, width, device=images.device)
        for rows in iter_batches(images.shape[0], self.batch_size):
            total = F.conv_transpose2d(drops[rows], ones, stride=self.stride)[..., :height, :width]
            maps[rows] = (total / count)[:, 0].to(maps)
        return maps
