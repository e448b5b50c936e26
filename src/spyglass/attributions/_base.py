"""The one verb of the attribution family: ``method(images, targets) -> maps``.

The base class checks the input once, hands the method body clean tensors, and checks
what comes back, so that a method's ``explain`` is its algorithm and little else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_batch_size, check_images, check_targets

__all__ = ["Attribution"]


class Attribution(ABC):
    """An attribution method bound to a model.

    Parameters
    ----------
    model
        The classifier to explain: a :class:`~spyglass.models.VisionModel` (images in
        [0, 1]) or any module mapping such images to logits.
    objective
        What is explained, ``(model, images, targets) -> (N,)``; default the target logit.
    batch_size
        Model evaluations per batch: bounds the memory of every method.
    progress
        Show progress bars (on a terminal).

    Calling the method returns ``(N, H, W)`` float32 maps at input resolution; the model
    is left as it was found (mode, hooks, gradients).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(f"objective must be callable (model, images, targets) -> (N,); got {objective!r}")
        self.model = model
        self.objective = objective
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def __call__(self, images: Tensor, targets: int | Tensor) -> Tensor:
        """Explain ``targets`` on ``images`` ``(N, 3, H, W)`` in [0, 1]; return ``(N, H, W)``."""
        images = check_images(images)
        num_classes = getattr(self.model, "num_classes", None)
        labels = check_targets(
            targets, images.shape[0], num_classes if isinstance(num_classes, int) else None
        )
        maps = self.explain(images, labels.to(images.device))
        expected = (images.shape[0], images.shape[2], images.shape[3])
        if maps.shape != expected:  # a defect of the method, not of the user's input
            raise RuntimeError(
                f"{type(self).__name__} returned maps of shape {tuple(maps.shape)}; expected {expected}"
            )
        return maps.detach().to(torch.float32)

    @abstractmethod
    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        """The method's algorithm on checked input: ``(N, 3, H, W)``, ``(N,)`` → ``(N, H, W)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"
