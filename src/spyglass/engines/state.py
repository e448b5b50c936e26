"""Leaving a model as it was found.

Explanations must be computed in inference mode (batch-norm running statistics, no
dropout), yet a method must hand the model back exactly as it came: the same
train/eval flag on *every* sub-module (users freeze parts of a network individually),
no hooks, no ``.grad`` on parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["inference_mode"]


@contextmanager
def inference_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module of ``model`` in eval mode, and restore each one's flag on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training
