"""Gradient × Input (Shrikumar et al., 2016; Ancona et al., 2018)."""

from __future__ import annotations

from torch import Tensor

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.gradients import batched_gradients

__all__ = ["GradientInput"]


@register("gradient_input")
class GradientInput(Attribution):
    r"""Gradient × Input, summed over colour channels.

    Shrikumar, Greenside, Shcherbina & Kundaje, "Not Just a Black Box: Learning Important
    Features Through Propagating Activation Differences", 2016 (analysed by Ancona et al.,
    ICLR 2018):

    .. math:: \phi(x)_{ij} = \sum_c x_{cij} \, \partial f_y(x) / \partial x_{cij}

    Exact for a linear model with a zero bias: the map then sums to ``f_y(x)``. The
    input is in pixel space (``[0, 1]``), as every spyglass method sees it.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> maps = attributions.GradientInput(models.load())(torch.rand(1, 3, 224, 224), 967)
    >>> maps.shape
    torch.Size([1, 224, 224])
    """

    kind = "gradient"

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        return batched_gradients(
            self.model,
            images,
            targets,
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            reduce=lambda gradients, rows: (gradients * images[rows].to(gradients.device)).sum(dim=1),
            desc="gradient×input",
        )
