"""Leaving a model as it was found.

Explanations are computed in eval mode (batch-norm running statistics, no dropout),
yet a method must hand the model back exactly as it came: the same train/eval flag on
*every* sub-module (users freeze parts of a network individually), no hooks, no
``.grad`` on parameters. :func:`eval_mode` and :func:`train_mode` set the flag on the
whole model for the duration of a ``with`` block and restore each sub-module's own flag
on exit.

(:func:`eval_mode` was called ``inference_mode`` before; the old name is kept for one
release as a deprecated alias, because a reader takes it for :func:`torch.inference_mode`,
which is something else: a grad-mode switch, not a train/eval flag.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from torch import nn

__all__ = ["eval_mode", "train_mode"]


@contextmanager
def _flags_restored(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    flags = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def eval_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """Put every sub-module of ``model`` in eval mode, and restore each one's flag on exit.

    Only the train/eval flag changes: gradients stay as the caller's grad mode has them
    (this is not :func:`torch.inference_mode` nor :func:`torch.no_grad`).

    Examples
    --------
    >>> import torch
    >>> from spyglass.engines import eval_mode
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    >>> with eval_mode(model):
    ...     model[1].training
    False
    >>> model[1].training
    True
    """
    return _flags_restored(model, False)


def train_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """Put every sub-module of ``model`` in train mode, and restore each one's flag on exit.

    What a training step that differentiates an explanation needs (harmonization's
    saliency is taken in train mode): batch norm normalises by the batch's statistics and
    updates its running ones, dropout drops.
    """
    return _flags_restored(model, True)


def _deprecated_inference_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    warnings.warn(
        "spyglass.engines.inference_mode is deprecated and will be removed in the next release: it sets "
        "eval mode (it is not torch.inference_mode); use spyglass.engines.eval_mode",
        DeprecationWarning,
        stacklevel=2,
    )
    return eval_mode(model)


def __getattr__(name: str) -> Callable[[nn.Module], AbstractContextManager[nn.Module]]:
    # Module-level __getattr__ (PEP 562): the old name resolves, with a warning at call time.
    if name == "inference_mode":
        return _deprecated_inference_mode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
