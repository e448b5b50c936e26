"""Gradient × Input (Shrikumar et al., 2016; Ancona et al., 2018)."""

from __future__ import annotations

from torch import Tensor

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.gradients import batched_gradients

__all__ = ["GradientInput", "gradient_times_input"]


def gradient_times_input(gradients: Tensor, inputs: Tensor, dim: int | tuple[int, ...]) -> Tensor:
    """``Σ_dim inputs ⊙ gradients``: the rule of Gradient×Input, in pixel and in concept space.

    Pixel space sums over the colour channels of each pixel (``dim=1`` of ``(N, 3, H, W)``);
    concept space over the spatial positions at which a concept's coefficient is read
    (``dim=1`` of ``(N, h·w, r)``). Integrated Gradients applies it to the integrated
    gradient and ``inputs − baselines``.
    """
    return (gradients * inputs).sum(dim=dim)


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
            reduce=lambda gradients, rows: gradient_times_input(
                gradients, images[rows].to(gradients.device), 1
            ),
            desc="gradient×input",
        )
