"""The core LIME and KernelSHAP share: segments, coalitions, a weighted linear surrogate.

Both methods explain an image through ``M`` segments (superpixels or grid cells). A
*coalition* ``z ∈ {0, 1}^M`` keeps the segments where ``z = 1`` and fills the others; the
perturbation engine scores the image under each coalition (per-image masks, since every
image has its own segments); a weighted least-squares fit of the scores on ``z`` gives
one coefficient per segment, and a pixel's value is its segment's coefficient. The two
methods differ only in which coalitions they draw, how they weight them and how they
constrain the fit: that is all a subclass says.

We write this ourselves: the ``lime`` and ``shap`` packages work on numpy images one at a
time and are not dependencies (captum is a test-only peer); here the masks stream through
spyglass's perturbation engine like every other black-box method.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import slic
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._perturbations import check_fill
from spyglass.engines.grid import cell_of_pixel
from spyglass.engines.perturbation import inpainting, perturbation_scores
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_int, check_seed

__all__ = ["SEGMENTATIONS", "CoalitionMasks", "SurrogateAttribution", "segment", "weighted_least_squares"]

SEGMENTATIONS: tuple[str, ...] = ("slic", "grid")
"""Named segmentations: SLIC superpixels (scikit-image) or a regular grid."""

Segmentation = Callable[[Tensor], Tensor | np.ndarray]
"""``segmentation(image (3, H, W)) -> (H, W)`` integer labels, one per segment."""


def segment(
    image: Tensor, segmentation: str | Segmentation, *, n_segments: int = 50, grid_size: int = 8
) -> Tensor:
    """Segments of one image ``(3, H, W)``: ``(H, W)`` long labels ``0 … M-1``, every label used.

    ``"slic"`` runs :func:`skimage.segmentation.slic` (``n_segments``, compactness 10, in
    CIELAB); ``"grid"`` cuts ``grid_size × grid_size`` cells (cell of pixel ``(r, c)``:
    ``(r·g // H)·g + c·g // W``, :func:`spyglass.engines.grid.cell_of_pixel`); a callable
    returns any integer labels, which are renumbered.
    """
    height, width = image.shape[-2:]
    if segmentation == "grid":  # refuses a grid_size larger than the image, so every cell has pixels
        return cell_of_pixel(height, width, grid_size, device=image.device)
    if segmentation == "slic":
        pixels = image.detach().permute(1, 2, 0).to("cpu", torch.float64).numpy()
        labels = slic(pixels, n_segments=n_segments, compactness=10.0, start_label=0, channel_axis=-1)
    elif callable(segmentation):
        labels = segmentation(image)
    else:
        raise ValueError(
            f"segmentation must be one of {', '.join(map(repr, SEGMENTATIONS))} or a callable "
            f"image (3, H, W) -> (H, W) integer labels; got {segmentation!r}"
        )
    array = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if array.shape != (height, width) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"the segmentation must return ({height}, {width}) integer labels; "
            f"got shape {array.shape} and dtype {array.dtype}"
        )
    _, renumbered = np.unique(array, return_inverse=True)
    return torch.from_numpy(renumbered.reshape(height, width).astype(np.int64)).to(image.device)


class CoalitionMasks:
    """Coalitions ``(R, M)`` over the segments ``labels (H, W)``, served as masks ``(B, 1, H, W)``."""

    def __init__(self, coalitions: Tensor, labels: Tensor) -> None:
        self.coalitions = coalitions
        self.labels = labels

    def __len__(self) -> int:
        return int(self.coalitions.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        return self.coalitions[rows][:, self.labels].unsqueeze(1)


def weighted_least_squares(
    x: Tensor, y: Tensor, weights: Tensor, *, alpha: float = 0.0, intercept: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Minimise :math:`\sum_k w_k (y_k - b - x_k^\top \beta)^2 + \alpha \lVert\beta\rVert^2`.

    ``b`` is fitted (and not penalised) when ``intercept``, else fixed at 0: the objective of
    scikit-learn's ``Ridge(alpha).fit(x, y, sample_weight=w)``. Solved in float64 by least
    squares on the rows scaled by :math:`\sqrt{w}` (with :math:`\sqrt{\alpha} I` appended),
    which also gives the minimum-norm solution of an under-determined problem.

    Returns ``(β (p,), b ())``.
    """
    x, y, weights = x.to(torch.float64), y.to(torch.float64), weights.to(torch.float64)
    offset = torch.zeros((), dtype=torch.float64, device=x.device)
    if intercept:
        share = weights / weights.sum()
        x_mean, y_mean = share @ x, share @ y
        x, y = x - x_mean, y - y_mean
    root = weights.sqrt()
    design, response = x * root[:, None], y * root
    if alpha > 0:
        p = x.shape[1]
        design = torch.cat([design, alpha**0.5 * torch.eye(p, dtype=x.dtype, device=x.device)])
        response = torch.cat([response, torch.zeros(p, dtype=y.dtype, device=y.device)])
    # gelsd (SVD) copes with rank-deficient designs; it runs on the CPU, where this tiny solve belongs.
    solution = torch.linalg.lstsq(design.cpu(), response.cpu()[:, None], driver="gelsd").solution[:, 0]
    beta = solution.to(x.device)
    if intercept:
        offset = y_mean - x_mean @ beta
    return beta, offset


@dataclass
class _Plan:
    """One image's segments, coalitions ``(R, M)`` and regression weights ``(R,)``."""

    labels: Tensor
    coalitions: Tensor
    weights: Tensor


class SurrogateAttribution(Attribution):
    """Segments → coalitions → scores → weighted linear fit → map (LIME, KernelSHAP).

    Subclasses choose the coalitions and their weights (:meth:`coalitions`) and fit the
    surrogate (:meth:`fit`). Coalitions are drawn from ``seed`` and the number of
    segments only, so an image's map does not depend on the other images of the batch,
    on its place among them, or on ``batch_size``.
    """

    kind = "black-box"
    settings = levels(
        cheap={"segmentation": "grid", "grid_size": 4, "nb_samples": 64}, quick={"nb_samples": 32}
    )

    def __init__(
        self,
        model: nn.Module,
        *,
        segmentation: str | Segmentation = "slic",
        n_segments: int = 50,
        grid_size: int = 8,
        nb_samples: int = 1000,
        value: float | Sequence[float] | Tensor | None = None,
        seed: int = 0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        if not (isinstance(segmentation, str) and segmentation in SEGMENTATIONS) and not callable(
            segmentation
        ):
            raise ValueError(
                f"segmentation must be one of {', '.join(map(repr, SEGMENTATIONS))} or a callable "
                f"image (3, H, W) -> (H, W) integer labels; got {segmentation!r}"
            )
        self.segmentation = segmentation
        self.n_segments = check_int(n_segments, "n_segments", 1)
        self.grid_size = check_int(grid_size, "grid_size", 1)
        self.nb_samples = check_int(nb_samples, "nb_samples", 2)
        self.fill = check_fill(value, model)
        self.seed = check_seed(seed)

    @abstractmethod
    def coalitions(self, nb_segments: int) -> tuple[Tensor, Tensor]:
        """Coalitions ``(R, M)`` in {0, 1} (R at most ``nb_samples``) and their weights ``(R,)``."""

    @abstractmethod
    def fit(self, coalitions: Tensor, weights: Tensor, scores: Tensor) -> Tensor:
        """One coefficient per segment ``(M,)`` from the coalitions, weights and float64 scores."""

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        plans = []
        for image in images:
            labels = segment(image, self.segmentation, n_segments=self.n_segments, grid_size=self.grid_size)
            coalitions, weights = self.coalitions(int(labels.max()) + 1)
            plans.append(_Plan(labels, coalitions.to(torch.float32), weights.to(torch.float64)))
        # The engine needs as many masks per image; a short plan (few segments, all coalitions
        # enumerated) is padded with weightless rows, which cost forward passes but change nothing.
        rows = max(len(plan.coalitions) for plan in plans)
        for plan in plans:
            missing = rows - len(plan.coalitions)
            if missing:
                plan.coalitions = torch.cat(
                    [plan.coalitions, plan.coalitions.new_ones(missing, plan.coalitions.shape[1])]
                )
                plan.weights = torch.cat([plan.weights, plan.weights.new_zeros(missing)])
        scores = perturbation_scores(
            self.model,
            images,
            targets,
            lambda i: CoalitionMasks(plans[i].coalitions.to(images.device), plans[i].labels),
            perturbation=inpainting(self.fill),
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        )
        maps = []
        for plan, row in zip(plans, scores.cpu(), strict=True):
            coefficients = self.fit(plan.coalitions.to(torch.float64), plan.weights, row.to(torch.float64))
            maps.append(coefficients.to(images.device, torch.float32)[plan.labels])
        return torch.stack(maps)

    def __repr__(self) -> str:
        segments = (
            f"n_segments={self.n_segments}"
            if self.segmentation == "slic"
            else f"grid_size={self.grid_size}"
            if self.segmentation == "grid"
            else "segmentation=<callable>"
        )
        return (
            f"{type(self).__name__}({segments}, nb_samples={self.nb_samples}, batch_size={self.batch_size})"
        )
