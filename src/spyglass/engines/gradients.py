"""Batched gradients of an objective with respect to the model's input.

Saliency, Gradient×Input, Integrated Gradients, the SmoothGrad family, Grad-CAM and
MACO all need ``∂ objective(model, x, y) / ∂ x`` on many inputs. This is the one
routine that computes it: in batches, in eval mode, through ``torch.autograd.grad`` so
that no ``.grad`` is ever written on the model's parameters.

:func:`iter_gradients` yields one batch at a time so that a method can reduce as it goes
(Integrated Gradients sums along the path, SmoothGrad over the noise) with memory
bounded by ``batch_size``; :func:`batched_gradients` collects everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal, overload

import torch
from torch import Tensor, nn

from spyglass.engines.forward import iter_batches, model_device
from spyglass.engines.sources import InputSource
from spyglass.engines.state import inference_mode
from spyglass.objectives import Objective, target_logit
from spyglass.progress import progress_bar
from spyglass.validation import check_batch_size

__all__ = ["Reduction", "batched_gradients", "iter_gradients"]

Reduction = Callable[[Tensor, slice], Tensor]
"""``reduce(gradients (B, ...), rows) -> (B, ...)``: what to keep of one batch's gradients."""


def iter_gradients(
    model: nn.Module,
    inputs: InputSource,
    targets: Tensor,
    *,
    objective: Objective = target_logit,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "gradients",
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Yield ``(rows, gradients, scores)`` batch by batch, on the model's device.

    Parameters
    ----------
    model
        Any module (a :class:`~spyglass.models.VisionModel`, or the ``h`` of a split when
        the gradient is wanted at an intermediate layer).
    inputs
        A tensor ``(N, ...)`` or an :class:`InputSource` that builds rows on demand.
    targets
        ``(N,)`` long class indices passed to the objective.
    objective
        ``(model, x, y) -> (B,)``; the default is the target logit. Each score must depend
        only on its own row of ``x`` (true of any per-image objective of a model in eval
        mode), so that the gradient of their sum is each score's own gradient.
    batch_size
        Inputs per forward/backward pass: the memory bound.
    progress
        Show a progress bar (on a terminal).
    """
    check_batch_size(batch_size)
    n = len(inputs)
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},); got {tuple(targets.shape)}")
    device = model_device(model)
    batches = iter_batches(n, batch_size)
    with inference_mode(model), torch.enable_grad():
        for rows in progress_bar(
            batches, enabled=progress, total=-(-n // batch_size), desc=desc, unit="batch"
        ):
            x = inputs[rows].detach().to(device).requires_grad_(True)
            y = targets[rows].to(device)
            score = objective(model, x, y)
            if score.shape != (x.shape[0],):
                raise ValueError(
                    f"objective must return one score per input, shape ({x.shape[0]},); "
                    f"got {tuple(score.shape)}"
                )
            (gradient,) = torch.autograd.grad(score.sum(), x)
            yield rows, gradient, score.detach()


@overload
def batched_gradients(
    model: nn.Module,
    inputs: InputSource,
    targets: Tensor,
    *,
    objective: Objective = ...,
    batch_size: int = ...,
    progress: bool = ...,
    return_scores: Literal[False] = ...,
    reduce: Reduction | None = ...,
    desc: str = ...,
) -> Tensor: ...


@overload
def batched_gradients(
    model: nn.Module,
    inputs: InputSource,
    targets: Tensor,
    *,
    objective: Objective = ...,
    batch_size: int = ...,
    progress: bool = ...,
    return_scores: Literal[True],
    reduce: Reduction | None = ...,
    desc: str = ...,
) -> tuple[Tensor, Tensor]: ...


def batched_gradients(
    model: nn.Module,
    inputs: InputSource,
    targets: Tensor,
    *,
    objective: Objective = target_logit,
    batch_size: int = 32,
    progress: bool = True,
    return_scores: bool = False,
    reduce: Reduction | None = None,
    desc: str = "gradients",
) -> Tensor | tuple[Tensor, Tensor]:
    """Gradient of ``objective(model, x, y)`` with respect to ``x``, for every input.

    See :func:`iter_gradients` for the parameters. ``reduce(gradients, rows)``, when given,
    turns each batch's gradients into what the caller keeps (e.g. a ``(B, H, W)`` map), so
    that only the reduced result of all ``N`` inputs is ever held, not ``N`` full
    gradients. The result lives on the device of ``inputs`` when it is a tensor (the
    model's device otherwise).

    Returns
    -------
    Tensor or (Tensor, Tensor)
        ``(N, ...)`` gradients (and the ``(N,)`` scores if ``return_scores``).
    """
    out_device = inputs.device if isinstance(inputs, Tensor) else model_device(model)
    n = len(inputs)
    # Filled in place, allocated once the first batch shows the shape: no list of pieces to
    # concatenate at the end (which would hold the result twice).
    kept_all: Tensor | None = None
    scores: Tensor | None = None
    for rows, gradient, score in iter_gradients(
        model, inputs, targets, objective=objective, batch_size=batch_size, progress=progress, desc=desc
    ):
        kept = gradient if reduce is None else reduce(gradient, rows)
        if kept_all is None or scores is None:
            kept_all = torch.empty((n, *kept.shape[1:]), dtype=kept.dtype, device=out_device)
            scores = torch.empty(n, dtype=score.dtype, device=out_device)
        kept_all[rows] = kept
        scores[rows] = score
    if kept_all is None or scores is None:
        raise ValueError("inputs is empty: there is nothing to differentiate")
    if return_scores:
        return kept_all, scores
    return kept_all
