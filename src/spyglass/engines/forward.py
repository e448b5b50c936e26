"""Batched forward passes with no gradient."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from spyglass.engines.sources import InputSource
from spyglass.engines.state import eval_mode
from spyglass.progress import progress_bar
from spyglass.validation import check_batch_size

__all__ = ["batched_forward", "iter_batches", "model_device"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the first parameter or buffer of ``model`` (CPU if it has none)."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0:b], [b:2b], ...`` covering ``range(n)``."""
    check_batch_size(batch_size)
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batched_forward(
    model: nn.Module,
    inputs: InputSource,
    *,
    batch_size: int = 32,
    progress: bool = True,
    fn: Callable[[nn.Module, Tensor, slice], Tensor] | None = None,
    desc: str = "forward",
) -> Tensor:
    """Run ``model`` on ``inputs`` in batches, without gradient, and concatenate the outputs.

    Parameters
    ----------
    model
        Any module; it runs in eval mode and each sub-module's mode is restored afterwards.
    inputs
        A tensor ``(N, ...)`` or an :class:`~spyglass.engines.InputSource` that builds rows
        on demand. A tensor may live on another device than the model (e.g. a large set of
        images on the CPU): each batch is moved to the model's device in turn.
    batch_size
        Inputs per forward pass: the memory bound.
    progress
        Show a progress bar (on a terminal).
    fn
        ``fn(model, batch, rows) -> (B, ...)`` computed instead of ``model(batch)``, e.g.
        to keep only the target score and not the whole logits; ``rows`` is the slice of
        ``inputs`` the batch came from.
    desc
        Label of the progress bar.

    Returns
    -------
    Tensor
        The outputs for all ``N`` inputs, on the device of ``inputs`` when it is a tensor
        (the model's device otherwise).
    """
    check_batch_size(batch_size)
    device = model_device(model)
    out_device = inputs.device if isinstance(inputs, Tensor) else device
    outputs: list[Tensor] = []
    n = len(inputs)
    batches = iter_batches(n, batch_size)
    with eval_mode(model), torch.no_grad():
        for rows in progress_bar(
            batches, enabled=progress, total=-(-n // batch_size), desc=desc, unit="batch"
        ):
            batch = inputs[rows].to(device, non_blocking=True)
            out = model(batch) if fn is None else fn(model, batch, rows)
            outputs.append(out.to(out_device))
    return torch.cat(outputs, dim=0)
