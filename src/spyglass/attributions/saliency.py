"""Saliency (Simonyan, Vedaldi & Zisserman, 2014)."""

from __future__ import annotations

from torch import Tensor

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.gradients import batched_gradients

__all__ = ["Saliency"]


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
            reduce=lambda gradients, _rows: gradients.abs().amax(dim=1),
            desc="saliency",
        )
