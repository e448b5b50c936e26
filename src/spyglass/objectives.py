"""What is explained: callables ``(model, images, targets) -> scores (N,)``.

Every gradient and perturbation method explains a scalar per image. Which scalar is a
separate, swappable choice (DESIGN.md): the target logit by default, the softmax
probability or log-probability, or any user function with the same signature.

The built-in objectives check what the model returns (:func:`~spyglass.validation.check_logits`):
logits ``(N, classes)`` with every target among the classes; the engines check what any
objective returns (:func:`~spyglass.validation.check_scores`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from spyglass.validation import check_logits

__all__ = ["Objective", "target_log_probability", "target_logit", "target_probability"]

Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``objective(model, images, targets) -> (N,)`` scores, differentiable in ``images``."""


def target_logit(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """The pre-softmax score of each image's target class."""
    logits = check_logits(model(images), targets)
    return logits.gather(1, targets.view(-1, 1)).squeeze(1)


def target_probability(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """The softmax probability of each image's target class."""
    logits = check_logits(model(images), targets)
    return logits.softmax(dim=1).gather(1, targets.view(-1, 1)).squeeze(1)


def target_log_probability(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
    """The log-softmax score of each image's target class."""
    logits = check_logits(model(images), targets)
    return logits.log_softmax(dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
