"""Batched gradients of an objective with respect to the model's input.

Saliency, Gradient×Input, Integrated Gradients, the SmoothGrad family, Grad-CAM and
MACO all need ``∂ objective(model, x, y) / ∂ x`` on many inputs. This is the one
routine that computes it: in batches, in eval mode, through ``torch.autograd.grad`` so
that no ``.grad`` is ever written on the model's parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spyglass.engines.forward import check_batch_size, iter_batches, model_device
from spyglass.engines.state import inference_mode
from spyglass.objectives import Objective, target_logit
from spyglass.progress import progress_bar

__all__ = ["batched_gradients"]


def batched_gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    objective: Objective = target_logit,
    batch_size: int = 32,
    progress: bool = True,
    return_scores: bool = False,
    desc: str = "gradients",
) -> Tensor | tuple[Tensor, Tensor]:
    """Gradient of ``objective(model, x, y)`` with respect to ``x``, for every input.

    Parameters
    ----------
    model
        Any module (a :class:`~spyglass.models.VisionModel`, or the ``h`` of a split when
        the gradient is wanted at an intermediate layer).
    inputs
        ``(N, ...)`` points at which to differentiate.
    targets
        ``(N,)`` long class indices passed to the objective.
    objective
        ``(model, x, y) -> (N,)``; the default is the target logit. Each score must depend
        only on its own row of ``x`` (true of any per-image objective of a model in eval
        mode), so that the gradient of their sum is each score's own gradient.
    batch_size
        Inputs per forward/backward pass: the memory bound.
    progress
        Show a progress bar (on a terminal).
    return_scores
        Also return the ``(N,)`` objective values at ``inputs``.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        ``(N, ...)`` gradients on the device of ``inputs`` (and the scores if asked).
    """
    check_batch_size(batch_size)
    n = int(inputs.shape[0])
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},); got {tuple(targets.shape)}")
    device = model_device(model)
    gradients: list[Tensor] = []
    scores: list[Tensor] = []
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
            gradients.append(gradient.to(inputs.device))
            scores.append(score.detach().to(inputs.device))
    grads = torch.cat(gradients, dim=0)
    if return_scores:
        return grads, torch.cat(scores, dim=0)
    return grads
