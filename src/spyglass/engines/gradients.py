"""Gradients of an objective with respect to the model's input.

Saliency, Gradient×Input, Integrated Gradients, the SmoothGrad family, Grad-CAM,
harmonization and MACO all need ``∂ objective(model, x, y) / ∂ x``.

- :func:`input_gradients` is the primitive: one batch, through ``torch.autograd.grad``
  (so no ``.grad`` is ever written on the model's parameters), in the mode the caller
  chooses, and with ``create_graph=True`` a gradient that stays in the graph, so that a
  loss on it (harmonization's) can be back-propagated into the weights.
- :func:`iter_gradients` yields it batch by batch, in eval mode, so that a method can
  reduce as it goes (Integrated Gradients sums along the path, SmoothGrad over the noise)
  with memory bounded by ``batch_size``; :func:`batched_gradients` collects everything.

All three work under :func:`torch.no_grad` and :func:`torch.inference_mode` (a notebook
user's habits): they switch gradients on, and inference mode off, for their own
computation only, and copy inference tensors (made inside that block) into ordinary ones.
The one case torch cannot serve is a model whose weights are inference tensors (built
inside the block): it is refused with a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Literal, overload

import torch
from torch import Tensor, nn

from spyglass.engines.forward import iter_batches, model_device
from spyglass.engines.sources import InputSource
from spyglass.engines.state import eval_mode, train_mode
from spyglass.objectives import Objective, target_logit
from spyglass.progress import progress_bar
from spyglass.validation import check_batch_size, check_choice, check_differentiable_model, check_scores

__all__ = ["GradientMode", "Reduction", "batched_gradients", "input_gradients", "iter_gradients"]

Reduction = Callable[[Tensor, slice], Tensor]
"""``reduce(gradients (B, ...), rows) -> (B, ...)``: what to keep of one batch's gradients."""

GradientMode = Literal["eval", "train", "as_is"]
"""The train/eval flag the model runs under while differentiated (see :func:`input_gradients`)."""

_MODES: tuple[str, ...] = ("eval", "train", "as_is")


def _autograd_on(model: nn.Module) -> AbstractContextManager[object]:
    """Inference mode off (no graph is built inside it, not even under enable_grad)."""
    if torch.is_inference_mode_enabled():
        check_differentiable_model(model)
        return torch.inference_mode(False)
    return nullcontext()


def _mode_context(model: nn.Module, mode: str) -> AbstractContextManager[object]:
    if mode == "eval":
        return eval_mode(model)
    if mode == "train":
        return train_mode(model)
    return nullcontext()


def _differentiable(inputs: Tensor, create_graph: bool) -> Tensor:
    """The tensor to differentiate with respect to: ``inputs`` itself when it is already in a graph
    and the caller keeps the graph, a fresh leaf otherwise."""
    if create_graph and inputs.requires_grad:
        return inputs
    # An inference tensor (made under torch.inference_mode) cannot join a graph: copy it.
    x = inputs.clone() if inputs.is_inference() else inputs
    return x.detach().requires_grad_(True)


def _gradient(
    model: nn.Module, x: Tensor, y: Tensor, objective: Objective, create_graph: bool
) -> tuple[Tensor, Tensor]:
    score = check_scores(objective(model, x, y), x.shape[0], objective)
    if not score.requires_grad:
        raise ValueError(
            "the objective's scores do not depend on the input through autograd (they carry no "
            "gradient): the model or the objective detaches them, or computes them without gradient"
        )
    # The gradient of the sum is each score's own gradient when each score depends only on
    # its own row (any per-image objective of a model in eval mode).
    (gradient,) = torch.autograd.grad(score.sum(), x, create_graph=create_graph)
    return gradient, score


@overload
def input_gradients(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    objective: Objective = ...,
    create_graph: bool = ...,
    mode: GradientMode = ...,
    return_scores: Literal[False] = ...,
) -> Tensor: ...


@overload
def input_gradients(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    objective: Objective = ...,
    create_graph: bool = ...,
    mode: GradientMode = ...,
    return_scores: Literal[True],
) -> tuple[Tensor, Tensor]: ...


def input_gradients(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    objective: Objective = target_logit,
    create_graph: bool = False,
    mode: GradientMode = "eval",
    return_scores: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""``∂ objective(model, x, y) / ∂ x`` on one batch, optionally kept in the graph.

    Parameters
    ----------
    model
        Any module; it is run on ``images`` as given (one batch: the caller bounds the memory).
    images
        ``(B, ...)`` inputs on the model's device.
    targets
        ``(B,)`` long class indices passed to the objective.
    objective
        ``(model, x, y) -> (B,)``; the default is the target logit. The gradient is that of
        the scores' sum, which is each score's own gradient when each score depends only on
        its own row — not the case in train mode with batch norm, whose batch statistics
        couple the rows (the sum's gradient is then what a training loss sees, and what
        harmonization's reference code takes).
    create_graph
        Keep the graph of the gradient itself, so that a loss computed from it can be
        differentiated again, with respect to the weights (double back-propagation) or to
        ``images``. When ``images`` already requires grad, the gradient is taken with respect
        to it as it is (so it stays connected to whatever produced it); otherwise, and always
        without ``create_graph``, with respect to a detached copy, and the result is detached
        from the weights.
    mode
        ``"eval"`` (the default: explanations), ``"train"`` (training steps: batch norm uses
        and updates batch statistics, dropout drops) or ``"as_is"`` (the flags the caller
        set). With ``"eval"`` and ``"train"`` each sub-module's own flag is restored on exit.
    return_scores
        Also return the ``(B,)`` scores (detached unless ``create_graph``).

    Returns
    -------
    Tensor or (Tensor, Tensor)
        The gradient, shaped like ``images`` (and the scores). No ``.grad`` is written on any
        parameter: only back-propagating a loss of the result (with ``create_graph``) does.

    Raises
    ------
    ValueError
        When the objective does not return ``(B,)`` finite scores that depend on the input;
        bad ``targets`` or ``mode``; under :func:`torch.inference_mode`, a model whose weights
        were created there.

    Examples
    --------
    The saliency of a training step, differentiated again into the weights:

    >>> import torch
    >>> from spyglass.engines import input_gradients
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
    ...                             torch.nn.Linear(8, 3))
    >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    >>> saliency = input_gradients(model, x, y, create_graph=True, mode="train")
    >>> saliency.pow(2).sum().backward()
    >>> model[1].weight.grad is not None
    True
    """
    check_choice(mode, "mode", _MODES)
    if not isinstance(images, Tensor) or images.dim() < 1:
        raise TypeError(f"images must be a tensor (B, ...); got {type(images).__name__}")
    if not isinstance(targets, Tensor) or targets.shape != (images.shape[0],):
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must be a tensor of shape ({images.shape[0]},); got {shape}")
    with _autograd_on(model), _mode_context(model, mode), torch.enable_grad():
        x = _differentiable(images, create_graph)
        # An inference tensor cannot be saved for backward either (gather saves its index).
        y = targets.clone() if targets.is_inference() else targets
        gradient, score = _gradient(model, x, y, objective, create_graph)
    if not create_graph:
        score = score.detach()
    if return_scores:
        return gradient, score
    return gradient


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
    """Yield ``(rows, gradients, scores)`` batch by batch, on the model's device, in eval mode.

    Each batch is :func:`input_gradients` of ``model`` in eval mode, without the graph.

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
    # The mode is set once for the whole stream, not per batch: the flags are restored when
    # the caller finishes (or abandons) the iteration.
    with eval_mode(model), torch.enable_grad():
        for rows in progress_bar(
            batches, enabled=progress, total=-(-n // batch_size), desc=desc, unit="batch"
        ):
            gradient, score = input_gradients(
                model,
                inputs[rows].to(device),
                targets[rows].to(device),
                objective=objective,
                mode="as_is",  # eval mode is already held for the whole stream
                return_scores=True,
            )
            yield rows, gradient, score


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
