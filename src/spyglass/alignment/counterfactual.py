r"""The optimal-transport counterfactual of a 1-Lipschitz classifier: one gradient step to the boundary.

For an hKR-trained 1-Lipschitz network (an OTNN), the gradient at :math:`x` points along the
optimal transport plan between the classes, and (Serrurier, Mamalet, Fel et al., NeurIPS
2023, Prop. 2, for the optimal :math:`f^*` of separable classes)

.. math:: x' = x - f(x)\,\nabla f(x)

lies on the decision boundary, :math:`f(x') = 0`. To first order
:math:`f(x') \approx f(x)(1 - \|\nabla f(x)\|^2)`, so how close a trained network gets
depends on how near 1 its gradient norm is: dense torchlip networks are at 1 almost
everywhere; convolutional ones are not gradient-norm preserving (≈ 0.8–0.9 after training,
measured), and their :math:`x'` stops short of the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spyglass.validation import check_images

__all__ = ["OTCounterfactual", "ot_counterfactual"]


@dataclass(frozen=True)
class OTCounterfactual:
    """Counterfactuals and the scores around them.

    Attributes
    ----------
    images
        ``(N, 3, H, W)`` the counterfactuals :math:`x' = x - t\\,f(x)\\nabla f(x)` (not clipped to
        ``[0, 1]``: the transport plan may leave the image cube).
    scores
        ``(N,)`` :math:`f(x)`: the binary logit, or the margin between the explained class and
        the runner-up.
    scores_after
        ``(N,)`` the same function at :math:`x'` (0 on the boundary).
    gradient_norms
        ``(N,)`` :math:`\\|\\nabla f(x)\\|_2`.
    classes, rivals
        ``(N,)`` the class explained and the class it is compared with (binary: both 0).
    """

    images: Tensor
    scores: Tensor
    scores_after: Tensor
    gradient_norms: Tensor
    classes: Tensor
    rivals: Tensor


def _score(logits: Tensor, classes: Tensor, rivals: Tensor) -> Tensor:
    if logits.shape[1] == 1:
        return logits[:, 0]
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, classes] - logits[rows, rivals]


def ot_counterfactual(
    model: nn.Module,
    images: Tensor,
    *,
    targets: Tensor | None = None,
    step: float = 1.0,
) -> OTCounterfactual:
    r"""The OT counterfactual :math:`x' = x - t\,f(x)\,\nabla f(x)` of each image.

    For a model with one output, :math:`f` is that logit (class 1 where it is positive). For
    a multiclass model, :math:`f = f_c - f_r`, the margin between the class ``c`` explained
    (``targets``, default the predicted class) and its strongest rival ``r`` (the largest
    other logit at :math:`x`), whose zero is the boundary between ``c`` and ``r``. (The margin
    of two 1-Lipschitz logits is up to :math:`\sqrt{2}`-Lipschitz; the paper's binary setting
    is the single-output model.) ``step`` = :math:`t`: 1 is the paper's Prop. 2, larger values
    cross into the other class.

    Parameters
    ----------
    model
        A classifier of ``[0, 1]`` images; run in eval mode and left as found.
    images
        ``(N, 3, H, W)``.
    targets
        ``(N,)`` class indices to explain (multiclass only; default the prediction).
    step
        The multiple :math:`t` of :math:`f(x)\nabla f(x)` to move by.

    Returns
    -------
    OTCounterfactual

    Examples
    --------
    >>> import torch
    >>> from spyglass.alignment import lipschitz_classifier, ot_counterfactual
    >>> model = lipschitz_classifier(1, input_size=(16, 16), widths=(), hidden=(32,))
    >>> result = ot_counterfactual(model, torch.rand(2, 3, 16, 16))
    >>> bool((result.scores_after.abs() < result.scores.abs()).all())
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    images = check_images(images, model=model)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a finite positive number; got {step!r}")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            logits = model(x)
            if logits.ndim != 2:
                raise ValueError(f"model must return logits (N, C); got shape {tuple(logits.shape)}")
            n, c = logits.shape
            if c == 1:
                if targets is not None:
                    raise ValueError("targets is for multiclass models; a one-output model has one score")
                classes = rivals = torch.zeros(n, dtype=torch.long, device=logits.device)
            else:
                if targets is None:
                    classes = logits.detach().argmax(dim=1)
                else:
                    if (
                        not isinstance(targets, Tensor)
                        or targets.shape != (n,)
                        or targets.is_floating_point()
                    ):
                        raise ValueError(f"targets must be an integer tensor of shape ({n},)")
                    if int(targets.min()) < 0 or int(targets.max()) >= c:
                        raise ValueError(f"targets must be class indices in [0, {c - 1}]")
                    classes = targets.to(logits.device).long()
                others = logits.detach().clone()
                others[torch.arange(n, device=logits.device), classes] = -torch.inf
                rivals = others.argmax(dim=1)
            score = _score(logits, classes, rivals)
            (gradient,) = torch.autograd.grad(score.sum(), x)
            shape = (-1, *([1] * (images.ndim - 1)))
            moved = (images - float(step) * score.detach().view(shape) * gradient).detach()
            with torch.no_grad():
                after = _score(model(moved), classes, rivals)
    finally:
        for module, training in modes:
            module.training = training
    return OTCounterfactual(
        images=moved,
        scores=score.detach(),
        scores_after=after.detach(),
        gradient_norms=gradient.flatten(1).norm(dim=1).detach(),
        classes=classes,
        rivals=rivals,
    )
