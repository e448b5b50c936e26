"""Fidelity of attribution maps: Deletion, Insertion and MuFidelity.

A faithful map ranks first the pixels the model's score depends on. Deletion removes
pixels in the map's order and watches the score fall; Insertion adds them to a blank
image and watches it rise (Petsiuk et al. 2018); MuFidelity checks that the map's sums
over random regions predict how much the score drops when those regions are removed
(Bhatt et al. 2020).

Why our own: all three are the perturbation engine with particular masks. Here the masks
of every image at every step are built one batch at a time from the map's ranking and
streamed through :func:`~spyglass.engines.perturbation_scores`, so that ``N × steps``
perturbed images are never held at once and the cost is the forward passes and little
else (the reference implementations build each image's whole stack of perturbed copies).
The same ideas in concept space are :mod:`spyglass.concepts.fidelity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from spyglass.engines.fill import check_fill
from spyglass.engines.grid import cell_of_pixel, cell_sums
from spyglass.engines.perturbation import (
    Perturbation,
    UpsampledMasks,
    blurring,
    inpainting,
    perturbation_scores,
)
from spyglass.metrics._base import MapMetric, check_maps, register
from spyglass.metrics._stats import auc, pearson_rows
from spyglass.objectives import Objective, target_logit, target_probability
from spyglass.validation import check_fraction, check_int, check_seed

__all__ = ["BASELINES", "CurveMetric", "Deletion", "Insertion", "MuFidelity", "resolve_baseline"]

BASELINES: tuple[str, ...] = ("zero", "blur", "mean")
"""Names accepted for ``baseline``: black, a Gaussian blur (σ = 10 px), each image's mean colour."""

Baseline = str | float | Sequence[float] | Tensor


def _image_mean(image: Tensor, masks: Tensor) -> Tensor:
    mean = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
    return torch.addcmul(mean, masks, image - mean)


def resolve_baseline(baseline: Baseline, model: nn.Module) -> Perturbation:
    """What a removed pixel becomes: ``"zero"`` (black), ``"blur"`` (σ = 10 px), ``"mean"``, or a colour.

    ``"mean"`` is each image's own mean colour; a float or 3 floats in [0, 1] is a fixed
    colour in image space (not normalised).

    Examples
    --------
    >>> import torch
    >>> perturb = resolve_baseline("zero", torch.nn.Identity())
    >>> perturb(torch.ones(3, 2, 2), torch.zeros(1, 1, 2, 2)).sum().item()
    0.0
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return inpainting(0.0)
        if baseline == "blur":
            return blurring()
        if baseline == "mean":
            return _image_mean
        raise ValueError(
            f"baseline must be one of {', '.join(map(repr, BASELINES))}, a float in [0, 1] or 3 floats "
            f"in [0, 1]; got {baseline!r}"
        )
    try:
        return inpainting(check_fill(baseline, model))
    except ValueError as error:
        raise ValueError(f"baseline: {error} (or one of {', '.join(map(repr, BASELINES))})") from None


class _ObjectiveMetric(MapMetric):
    """A metric of maps that reads the model through an objective ``(model, images, targets) -> (N,)``."""

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        objective: Objective,
        batch_size: int,
        progress: bool,
    ) -> None:
        super().__init__(model, images, targets, batch_size=batch_size, progress=progress)
        if not callable(objective):
            raise TypeError(f"objective must be callable (model, images, targets) -> (N,); got {objective!r}")
        self.objective = objective


class _RankedPixels:
    """The ``S + 1`` masks of one image: mask ``k`` has its ``counts[k]`` top-ranked pixels removed.

    Built one batch at a time from the ranking (``rank[p]`` is the place of pixel ``p`` in
    the map's decreasing order), so an image's stack of masks is never held.
    """

    def __init__(self, ranking: Tensor, counts: Tensor, size: tuple[int, int], insertion: bool) -> None:
        self.ranking, self.counts, self.size, self.insertion = ranking, counts, size, insertion

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        chosen = self.ranking[None, :] < self.counts[rows, None]
        keep = chosen if self.insertion else ~chosen
        return keep.view(-1, 1, *self.size).to(torch.float32)


def pixel_ranking(saliency: Tensor) -> Tensor:
    """``rank[p]``: the place of pixel ``p`` in the decreasing order of ``saliency`` (ties: index order)."""
    flat = saliency.flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    return torch.empty_like(order).scatter_(0, order, torch.arange(flat.numel(), device=order.device))


class CurveMetric(_ObjectiveMetric):
    """A metric read off a curve of scores as pixels are removed or added: Deletion and Insertion."""

    insertion: ClassVar[bool]

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        steps: int = 20,
        baseline: Baseline = "zero",
        objective: Objective = target_probability,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(
            model, images, targets, objective=objective, batch_size=batch_size, progress=progress
        )
        self.steps = check_int(steps, "steps", 1)
        pixels = self.images.shape[2] * self.images.shape[3]
        if self.steps > pixels:
            raise ValueError(f"steps must be at most the number of pixels ({pixels}); got {steps}")
        self.baseline = baseline
        self.perturbation = resolve_baseline(baseline, model)

    def curves(self, maps: Tensor) -> Tensor:
        """The score at each step, ``(N, steps + 1)`` ``float32`` on the CPU."""
        maps = check_maps(maps, self.images)
        height, width = self.images.shape[2:]
        counts = torch.round(torch.linspace(0, height * width, self.steps + 1, dtype=torch.float64)).long()

        def masks_of(index: int) -> _RankedPixels:
            return _RankedPixels(pixel_ranking(maps[index]), counts, (height, width), self.insertion)

        curves = perturbation_scores(
            self.model,
            self.images,
            self.targets,
            masks_of,
            perturbation=self.perturbation,
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        )
        return curves.detach().to("cpu", torch.float32)

    def scores(self, maps: Tensor) -> Tensor:
        """The area under each image's curve, ``(N,)``: see :func:`spyglass.metrics.auc`."""
        return auc(self.curves(maps))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps}, baseline={self.baseline!r})"


@register("deletion")
class Deletion(CurveMetric):
    r"""Deletion: the score as the most important pixels are removed first (lower is better).

    Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018. The pixels of each image are sorted by decreasing attribution (ties
    in index order) and removed in ``steps`` equal slices, all channels at once; removed
    pixels take the ``baseline``. With :math:`x^{(k)}` the image with its
    :math:`\lceil kHW/S\rfloor` top pixels removed, the curve is
    :math:`c_k = f_y(x^{(k)})`, ``k = 0 … S``, and the metric is its area

    .. math:: \mathrm{AUC} = \frac{1}{S}\sum_{k=1}^{S} \frac{c_{k-1} + c_k}{2}

    A faithful map makes the score collapse early: a small area.

    Cost: ``N · (steps + 1)`` forward passes, streamed ``batch_size`` at a time.

    Parameters
    ----------
    model
        The classifier (images in [0, 1]).
    images, targets
        ``(N, 3, H, W)`` in [0, 1] and an int or ``(N,)`` class indices.
    steps
        ``S``, the number of slices (the curve has ``S + 1`` points).
    baseline
        ``"zero"`` (black, the default, as in the paper), ``"blur"`` (a Gaussian blur,
        σ = 10 px), ``"mean"`` (the image's mean colour) or a colour (a float or 3 floats in
        [0, 1]).
    objective
        The score, ``(model, images, targets) -> (N,)``; the class probability by default,
        as in the paper (so areas lie in [0, 1] and compare across images).
    batch_size, progress
        Forward passes per batch (the memory bound); progress bars.

    Calling the metric on maps ``(N, H, W)`` returns the mean area; :meth:`scores` gives
    one area per image and :meth:`curves` the curves.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> images = torch.rand(2, 3, 224, 224)
    >>> maps = attributions.Saliency(model)(images, 1)
    >>> deletion = metrics.Deletion(model, images, 1, steps=8)
    >>> deletion.curves(maps).shape
    torch.Size([2, 9])
    >>> 0.0 <= deletion(maps) <= 1.0
    True
    """

    higher_is_better = False
    insertion = False


@register("insertion")
class Insertion(CurveMetric):
    r"""Insertion: the score as the most important pixels are added first (higher is better).

    Petsiuk, Das & Saenko, BMVC 2018. The mirror of :class:`Deletion`: the curve starts
    from the ``baseline`` image (all pixels removed) and step ``k`` restores the
    :math:`\lceil kHW/S\rfloor` top-ranked pixels; the metric is the area under
    :math:`c_k = f_y(x_{(k)})`. A faithful map makes the score rise early: a large area.
    The paper inserts into a blurred copy; the default here is ``"blur"`` for that reason.
    Same parameters, cost and calls as :class:`Deletion`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> images = torch.rand(2, 3, 224, 224)
    >>> maps = attributions.Saliency(model)(images, 1)
    >>> insertion = metrics.Insertion(model, images, 1, steps=8)
    >>> insertion.scores(maps).shape
    torch.Size([2])
    """

    higher_is_better = True
    insertion = True

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        steps: int = 20,
        baseline: Baseline = "blur",
        objective: Objective = target_probability,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(
            model,
            images,
            targets,
            steps=steps,
            baseline=baseline,
            objective=objective,
            batch_size=batch_size,
            progress=progress,
        )


@register("mufidelity")
class MuFidelity(_ObjectiveMetric):
    r"""MuFidelity: does the sum of a region's attributions predict the score lost without it?

    Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
    IJCAI 2020. The image is cut into a ``grid_size × grid_size`` grid of ``d`` cells;
    ``nb_samples`` random subsets ``S`` of ``round(subset_percent · d)`` cells are drawn
    (the same for every image, from ``seed``); for each image the metric is the Pearson
    correlation over the subsets

    .. math:: \mu F = \operatorname{corr}_S\Big(\sum_{i \in S} \phi_i,\;
              f_y(x) - f_y(x_{[x_S = x_0]})\Big)

    between the attribution of the removed pixels and the drop of the score when they take
    the ``baseline``. 1 for a map that adds up exactly (for :math:`f(x) = \sum x` and
    :math:`\phi = x` with a zero baseline), −1 for its negation. Scale and offset of the map
    do not matter, its values do (not only their order).

    Cost: ``N · (nb_samples + 1)`` forward passes, streamed ``batch_size`` at a time.

    Parameters
    ----------
    grid_size
        Cells per side (xplique's default, 9).
    subset_percent
        Share of the cells removed in each subset, in (0, 1).
    nb_samples
        Subsets drawn, at least 2.
    baseline
        As in :class:`Deletion` (default ``"zero"``).
    objective
        The score; the target logit by default, the units most methods explain.
    seed
        Seeds the subsets.

    Calling the metric on maps returns the mean correlation over the images (images whose
    map or drops are constant over the subsets give NaN in :meth:`scores` and are left out
    of the mean).

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> images = torch.rand(2, 3, 224, 224)
    >>> maps = attributions.GradientInput(model)(images, 1)
    >>> mufidelity = metrics.MuFidelity(model, images, 1, nb_samples=16)
    >>> -1.0 <= mufidelity(maps) <= 1.0
    True
    """

    higher_is_better = True
    unmeasured = (
        "each image's map, or its score drops, are constant over the subsets (a flat map, or a model "
        "that ignores the removed cells), so no correlation is defined"
    )

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        grid_size: int = 9,
        subset_percent: float = 0.2,
        nb_samples: int = 200,
        baseline: Baseline = "zero",
        objective: Objective = target_logit,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(
            model, images, targets, objective=objective, batch_size=batch_size, progress=progress
        )
        self.grid_size = check_int(grid_size, "grid_size", 1)
        height, width = self.images.shape[2:]
        if self.grid_size > min(height, width):
            raise ValueError(f"grid_size={grid_size} exceeds the images' size {height}×{width}")
        self.subset_percent = check_fraction(subset_percent, "subset_percent")
        self.nb_samples = check_int(nb_samples, "nb_samples", 2)
        cells = self.grid_size**2
        self.subset_size = max(1, round(self.subset_percent * cells))
        if self.subset_size >= cells:
            raise ValueError(
                f"subset_percent={subset_percent} removes all {cells} cells of a {grid_size}×{grid_size} "
                "grid; use a larger grid_size or a smaller subset_percent"
            )
        self.baseline = baseline
        self.perturbation = resolve_baseline(baseline, model)
        generator = torch.Generator().manual_seed(check_seed(seed))
        chosen = torch.rand(self.nb_samples, cells, generator=generator).argsort(dim=1)[:, : self.subset_size]
        self.removed = torch.zeros(self.nb_samples, cells).scatter_(1, chosen, 1.0)
        #: Which cell each pixel belongs to (flattened): the cells the masks are upsampled to.
        self.cell_of_pixel = cell_of_pixel(height, width, self.grid_size).flatten()

    def scores(self, maps: Tensor) -> Tensor:
        """One correlation per image, ``(N,)`` ``float32``; NaN where a side is constant."""
        maps = check_maps(maps, self.images)
        size = (self.images.shape[2], self.images.shape[3])
        keep = 1.0 - self.removed.view(-1, self.grid_size, self.grid_size)
        masks = UpsampledMasks(torch.cat([torch.ones(1, *keep.shape[1:]), keep]), size, mode="nearest")
        scores = perturbation_scores(
            self.model,
            self.images,
            self.targets,
            masks,
            perturbation=self.perturbation,
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        ).to("cpu", torch.float64)
        drops = scores[:, :1] - scores[:, 1:]
        per_cell = cell_sums(maps.to("cpu", torch.float64), self.grid_size)
        summed = per_cell @ self.removed.to(torch.float64).T
        return pearson_rows(summed, drops).to(torch.float32)

    def __repr__(self) -> str:
        return (
            f"MuFidelity(grid_size={self.grid_size}, subset_percent={self.subset_percent}, "
            f"nb_samples={self.nb_samples}, baseline={self.baseline!r})"
        )
