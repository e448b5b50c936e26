"""Saliency (Simonyan, Vedaldi & Zisserman, 2014)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.gradients import batched_gradients

__all__ = ["Saliency", "absolute_gradient"]


def absolute_gradient(
    gradients: Tensor, dim: int | tuple[int, ...], pool: Literal["max", "sum"] = "max"
) -> Tensor:
    """``|∂f|`` pooled over ``dim``: the rule of Saliency, in pixel and in concept space.

    Pixel space takes the largest over the colour channels of a pixel (``pool="max"``,
    Simonyan et al.); concept space sums over the positions at which a concept is read
    (``pool="sum"``: the concept's mask scales every position at once, so its sensitivity
    adds up over them).
    """
    magnitude = gradients.abs()
    if pool == "max":
        return magnitude.amax(dim=dim)
    if pool == "sum":
        return magnitude.sum(dim=dim)
    raise ValueError(f"pool must be 'max' or 'sum'; got {pool!r}")


@register("saliency")
class Saliency(Attribution):
    r"""Saliency: the absolute input gradient, maximised over colour channels.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR workshop 2014:

    .. math:: \phi(x)_{ij} = \max_c \left| \partial f_y(x) / \partial x_{cij} \right|

    One gradient per image: the cheapest attribution, and the noisiest.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> model = models.load()
    >>> maps = attributions.Saliency(model)(torch.rand(2, 3, 224, 224), targets=[967, 281])
    >>> maps.shape
    torch.Size([2, 224, 224])
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
            reduce=lambda gradients, _rows: absolute_gradient(gradients, 1),
            desc="saliency",
        )
