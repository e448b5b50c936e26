r"""Harmonization: train a network so its saliency imitates human feature maps.

Fel, Felipe, Linsley & Serre, "Harmonizing the object recognition strategies of deep
neural networks with humans", NeurIPS 2022. The loss follows the authors' TensorFlow code
(``serre-lab/Harmonization``, ``harmonization/training/loss.py`` and ``pyramid.py``) step
for step; :func:`alignment_score` follows ``harmonization/evaluation/clickme.py``.

.. math::

    \mathcal{L} = \mathrm{CE}_{0.1}(f(x), y)
        + 10^{-5}\,\tfrac12\lVert\theta\rVert^2
        + \lambda\,\frac15 \sum_{i=0}^{4}
          \operatorname{mean}_{b,h,w}\!\big[(P^i\tilde\phi - P^i\tilde H)^2\, t_b\big]

with :math:`\phi = \operatorname{mean}_c \partial f_y/\partial x` (signed, model in training
mode, differentiated through — double backprop), :math:`\tilde\phi =
\mathrm{relu}(\mathrm{standardise}(\phi))`, :math:`\tilde H` the standardised-and-rectified
human map rescaled to :math:`\max\tilde\phi` (no gradient through that maximum), :math:`P`
one step of the binomial Gaussian pyramid and :math:`t_b \in [0, 1]` the image's token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor, nn

from spyglass.validation import (
    check_differentiable_model,
    check_images,
    check_int,
    check_model,
    check_positive_float,
    check_targets,
)

__all__ = [
    "HUMAN_SPEARMAN_CEILING",
    "AlignmentResult",
    "HarmonizationTerms",
    "alignment_score",
    "decayed_parameters",
    "gaussian_pyramid",
    "harmonization_loss",
    "signed_saliency",
    "standardize_cut",
]

HUMAN_SPEARMAN_CEILING = 0.65753
"""The human inter-rater Spearman on ClickMe that the alignment score is divided by (authors' code)."""

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.Embedding,
)
_EXCLUDED_NAMES = ("norm", "bn", "embed", "class_token", "cls_token")


@dataclass(frozen=True)
class HarmonizationTerms:
    """The parts of the harmonization loss (each a scalar tensor in the autograd graph)."""

    total: Tensor
    cross_entropy: Tensor
    weight_decay: Tensor
    pyramid: Tensor


def standardize_cut(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """Per map ``relu((h - mean) / (std + eps))`` over the last two axes, population std (ddof 0)."""
    mean = maps.mean(dim=(-2, -1), keepdim=True)
    std = maps.std(dim=(-2, -1), keepdim=True, correction=0)
    return torch.relu((maps - mean) / (std + eps))


def _tf_same_pad(size: int) -> tuple[int, int]:
    # TensorFlow "SAME" for a 5-tap kernel at stride 2: out = ceil(size / 2), the extra
    # zero (if the total is odd) goes after. Even sizes: 1 before, 2 after.
    total = max((math.ceil(size / 2) - 1) * 2 + 5 - size, 0)
    return total // 2, total - total // 2


def gaussian_pyramid(maps: Tensor, levels: int = 5) -> list[Tensor]:
    """The binomial Gaussian pyramid ``[x, P x, …, P^{levels-1} x]`` of maps ``(B, H, W)``.

    ``P`` convolves with ``outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256`` at stride 2 with
    TensorFlow's "SAME" zero padding (1 pixel before and 2 after on an even side, 2 and 2
    on an odd one), as the authors' ``pyramidal_representation`` does.

    Examples
    --------
    >>> import torch
    >>> [level.shape[-1] for level in gaussian_pyramid(torch.rand(1, 32, 32))]
    [32, 16, 8, 4, 2]
    """
    kernel_1d = torch.tensor(_BINOMIAL, dtype=maps.dtype, device=maps.device)
    kernel = (torch.outer(kernel_1d, kernel_1d) / 256.0)[None, None]
    out = [maps]
    x = maps[:, None]
    for _ in range(levels - 1):
        top, bottom = _tf_same_pad(x.shape[-2])
        left, right = _tf_same_pad(x.shape[-1])
        x = F.conv2d(F.pad(x, (left, right, top, bottom)), kernel, stride=2)
        out.append(x[:, 0])
    return out


def decayed_parameters(model: nn.Module) -> list[Tensor]:
    """The trainable weights the reference decays: all but normalisation, embedding and class tokens.

    A parameter is left out when its module is a normalisation layer or an ``nn.Embedding``,
    or when its qualified name contains ``norm``, ``bn``, ``embed``, ``class_token`` or
    ``cls_token`` (the reference skips variables named ``bn/``, ``normalization``, ``embed``,
    ``Norm``, ``norm``, ``class_token``). Biases of other layers are decayed, as there.
    """
    skipped: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}".lower()
            if isinstance(module, _NORM_TYPES) or any(word in full for word in _EXCLUDED_NAMES):
                skipped.add(id(param))
    return [p for p in model.parameters() if p.requires_grad and id(p) not in skipped]


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(module, module.training) for module in model.modules()]


def _restore(modes: list[tuple[nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


def _second_order_problem(root: object, parameters: set[int]) -> str | None:
    """Why the graph of the input gradient cannot train the weights, or ``None``."""
    # A custom autograd Function marked @once_differentiable leaves an error node in the
    # graph of its gradient (backpropagating through it would fail deep in autograd); a
    # gradient that reaches no weight (layers under torch.no_grad, detached) trains nothing.
    seen: set[int] = set()
    stack = [root]
    reaches = False
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ in ("Error", "DelayedError"):
            return "a custom autograd Function marked @once_differentiable"
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in parameters:
            reaches = True
        stack.extend(fn for fn, _ in getattr(node, "next_functions", ()))
    if not reaches:
        return "no path to its weights (computed under torch.no_grad or detached)"
    return None


def signed_saliency(model: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(logits, φ)``: the true-class logit's input gradient averaged over channels, in the graph.

    The model runs in training mode (as the reference's ``model(images, training=True)``)
    and is put back in the modes it had; ``φ`` is ``(B, H, W)``, signed, computed with
    ``create_graph=True`` so the loss can be differentiated through it.
    """
    modes = _modes(model)
    try:
        model.train()
        with torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            logits = model(inputs)
            if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != images.shape[0]:
                shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise ValueError(f"the model must return logits of shape (N, classes); got {shape}")
            labels = check_targets(labels, images.shape[0], logits.shape[1]).to(logits.device)
            # ∂(Σ_b f_{y_b}(x_b))/∂x, seeded with a one-hot that itself requires grad: a
            # custom Function marked @once_differentiable then leaves an error node in the
            # graph (with a constant seed it would silently drop its second derivative).
            seed = F.one_hot(labels, logits.shape[1]).to(logits.dtype).requires_grad_(True)
            (gradient,) = torch.autograd.grad(logits, inputs, grad_outputs=seed, create_graph=True)
    finally:
        _restore(modes)
    parameters = {id(p) for p in model.parameters() if p.requires_grad}
    if parameters:
        problem = _second_order_problem(gradient.grad_fn, parameters)
        if problem is not None:
            raise ValueError(
                f"{type(model).__name__} is not differentiable twice: the graph of its input gradient has "
                f"{problem}, so the harmonization loss cannot train its saliency"
            )
    return logits, gradient.mean(dim=1)


def _check_maps(maps: object, images: Tensor, name: str = "human_maps") -> Tensor:
    n, _, height, width = images.shape
    expected = f"{name} must be a float tensor of shape ({n}, {height}, {width}) with values >= 0"
    if not isinstance(maps, Tensor):
        raise TypeError(f"{expected}; got {type(maps).__name__}")
    if not maps.is_floating_point():
        raise TypeError(f"{expected}; got dtype {maps.dtype}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != (n, height, width):
        raise ValueError(f"{expected}; got shape {tuple(maps.shape)} (resize the maps to the images)")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{expected}; got NaN or infinite values")
    low = float(maps.min())
    if low < 0:
        raise ValueError(f"{expected}; got a minimum of {low:.4g}")
    return maps.to(device=images.device, dtype=images.dtype)


def _check_tokens(tokens: object, n: int, like: Tensor) -> Tensor:
    if tokens is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    expected = f"tokens must be a tensor of {n} values in [0, 1] (1: the image has a human map)"
    if not isinstance(tokens, Tensor):
        raise TypeError(f"{expected}; got {type(tokens).__name__}")
    if tokens.shape != (n,):
        raise ValueError(f"{expected}; got shape {tuple(tokens.shape)}")
    tokens = tokens.to(device=like.device, dtype=like.dtype)
    if not bool(((tokens >= 0) & (tokens <= 1)).all()):
        raise ValueError(f"{expected}; got values outside [0, 1]")
    return tokens


def harmonization_loss(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    human_maps: Tensor,
    tokens: Tensor | None = None,
    *,
    label_smoothing: float = 0.1,
    weight_decay: float = 1e-5,
    strength: float = 1.0,
    levels: int = 5,
    return_terms: bool = False,
) -> Tensor | HarmonizationTerms:
    r"""The harmonization loss of Fel et al. (NeurIPS 2022), as the authors' code computes it.

    1. ``φ = mean_c ∂f_y/∂x``, signed, with the model in training mode and the graph kept;
    2. ``φ`` and the human map standardised per image (population std, eps 1e-5) and rectified;
    3. the map rescaled: ``H ← H / (max H + 1e-6) · (max φ + 1e-6)``, no gradient through ``max φ``;
    4. both taken through the binomial Gaussian pyramid (:func:`gaussian_pyramid`), levels
       0 to ``levels - 1`` (the reference computes six and compares the first five);
    5. per level the mean over the whole batch of ``(P^i φ − P^i H)² · token``, averaged
       over levels with equal weights. Images with token 0 still count in the mean, so they
       dilute the term: it is *not* renormalised by the number of tokened images, as in the
       reference;
    6. ``total = CE(label_smoothing) + weight_decay · ½‖θ‖² + strength · pyramid``, the decay
       over :func:`decayed_parameters`.

    The model's train/eval modes are left as found. Call ``.backward()`` on the result to
    train: it differentiates through the saliency (double backprop).

    Parameters
    ----------
    model
        A classifier of ``(N, 3, H, W)`` images returning logits ``(N, classes)``,
        differentiable twice.
    images
        ``(N, 3, H, W)`` in [0, 1].
    labels
        ``N`` class indices.
    human_maps
        ``(N, H, W)`` (or ``(N, 1, H, W)``) non-negative maps, e.g. ClickMe maps.
    tokens
        ``(N,)`` weights in [0, 1], 1 where the image has a map; ``None``: all 1.
    label_smoothing, weight_decay, strength
        The reference's 0.1, 1e-5 and λ = 1.
    levels
        Pyramid levels compared (5 in the reference).
    return_terms
        Return a :class:`HarmonizationTerms` instead of the total.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(1024, 3))
    >>> images, maps = torch.rand(2, 3, 16, 16), torch.rand(2, 16, 16)
    >>> harmonization_loss(model, images, torch.tensor([0, 2]), maps).backward()
    """
    model = check_differentiable_model(check_model(model))
    images = check_images(images, model=model)
    maps = _check_maps(human_maps, images)
    token = _check_tokens(tokens, images.shape[0], images)
    label_smoothing = check_positive_float(label_smoothing, "label_smoothing", allow_zero=True)
    weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    strength = check_positive_float(strength, "strength", allow_zero=True)
    levels = check_int(levels, "levels", minimum=1)
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must lie in [0, 1); got {label_smoothing}")

    logits, phi = signed_saliency(model, images, labels)
    labels = check_targets(labels, images.shape[0], logits.shape[1]).to(logits.device)
    cross_entropy = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

    saliency = standardize_cut(phi)
    human = standardize_cut(maps)
    peak = saliency.detach().amax(dim=(-2, -1), keepdim=True)
    human = human / (human.amax(dim=(-2, -1), keepdim=True) + 1e-6) * (peak + 1e-6)
    weight = token[:, None, None]
    per_level = [
        ((p_s - p_h) ** 2 * weight).mean()
        for p_s, p_h in zip(gaussian_pyramid(saliency, levels), gaussian_pyramid(human, levels), strict=True)
    ]
    pyramid = torch.stack(per_level).mean()

    decayed = decayed_parameters(model)
    decay = sum(
        (0.5 * (p**2).sum() for p in decayed), torch.zeros((), dtype=logits.dtype, device=logits.device)
    )
    total = cross_entropy + weight_decay * decay + strength * pyramid
    if return_terms:
        return HarmonizationTerms(total, cross_entropy, decay, pyramid)
    return total


# --------------------------------------------------------------------------------------------
# The alignment score


@dataclass(frozen=True)
class AlignmentResult:
    """How well a model's explanations agree with human maps (Fel et al. 2022's protocol).

    Attributes
    ----------
    score
        Mean Spearman divided by :data:`HUMAN_SPEARMAN_CEILING`; ``percent`` is ×100, the
        paper's "human feature alignment (%)".
    spearman
        The mean per-image Spearman ρ over the scored images.
    dice, iou
        Mean Dice and IoU of the top 10 % of each map (the pixels at or above its ``k``-th
        largest value, ``k`` = 10 % of the pixels, ties included: a binary map's top is its ones).
    per_image
        ρ of every image (NaN where a map is constant).
    n_images, n_constant
        Images given; images left out because their explanation or human map is constant
        (ρ is undefined there; the reference lets one such NaN make the whole score NaN).
    """

    score: float
    spearman: float
    dice: float
    iou: float
    per_image: np.ndarray
    n_images: int
    n_constant: int

    @property
    def percent(self) -> float:
        """The score ×100: "human feature alignment (%)"."""
        return 100.0 * self.score


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra**2).sum() * (rb**2).sum()))


def _top_pixels(values: np.ndarray, quantile: float) -> np.ndarray:
    """The pixels at or above the ``k``-th largest value, ``k = ⌈(1 − quantile/100)·n⌉``, ties included.

    A strict ``values > percentile`` keeps nothing of a binary map (its percentile is its top
    value); ties are kept instead, but never the map's minimum (a binary map with fewer than
    ``k`` ones keeps its ones, not every pixel). A constant map has no top: all ``False``.
    """
    k = max(1, math.ceil((1 - quantile / 100) * values.size))
    threshold = np.partition(values, values.size - k)[values.size - k]
    if threshold > values.min():
        return values >= threshold
    return values > threshold


def _top_overlap(a: np.ndarray, b: np.ndarray, quantile: float) -> tuple[float, float]:
    top_a = _top_pixels(a, quantile)
    top_b = _top_pixels(b, quantile)
    inter = float(np.logical_and(top_a, top_b).sum())
    size = float(top_a.sum() + top_b.sum())
    union = float(np.logical_or(top_a, top_b).sum())
    dice = 2 * inter / size if size else math.nan
    iou = inter / union if union else math.nan
    return dice, iou


def _default_explainer(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    from spyglass.attributions import Saliency

    saliency = Saliency(model)
    return lambda images, labels: saliency(images, targets=labels)


def alignment_score(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    human_maps: Tensor,
    explainer: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    quantile: float = 90.0,
) -> AlignmentResult:
    r"""The human feature alignment of a model's explanations (Fel et al. 2022, ClickMe protocol).

    Per image, Spearman's ρ between the explanation and the human map, both flattened at
    full resolution; the score is :math:`\bar\rho / 0.65753` (the human inter-rater
    ceiling). Also the Dice and IoU of the pixels above each map's 90th percentile. An image
    whose explanation or map is constant has no ρ: it is counted in ``n_constant`` and left
    out of all three means.

    Parameters
    ----------
    model
        The classifier explained.
    images, labels, human_maps
        ``(N, 3, H, W)`` in [0, 1], ``N`` classes, ``(N, H, W)`` non-negative maps.
    explainer
        ``explainer(images, labels) -> (N, H, W)`` maps; default Saliency (the largest
        absolute input gradient over colour channels, as the reference's Xplique Saliency).
        Channel maps ``(N, C, H, W)`` are averaged over channels.
    quantile
        The percentile above which a pixel is "top" for Dice and IoU.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> result = alignment_score(model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.rand(2, 8, 8))
    >>> result.n_images
    2
    """
    model = check_model(model)
    images = check_images(images, model=model)
    maps = _check_maps(human_maps, images)
    labels = check_targets(labels, images.shape[0])
    if not 0 < quantile < 100:
        raise ValueError(f"quantile must lie in (0, 100); got {quantile}")
    explain = _default_explainer(model) if explainer is None else explainer
    if not callable(explain):
        raise TypeError(
            f"explainer must be a callable (images, labels) -> maps; got {type(explain).__name__}"
        )
    explanations = explain(images, labels)
    if not isinstance(explanations, Tensor):
        raise TypeError(f"the explainer must return a tensor; got {type(explanations).__name__}")
    if explanations.ndim == 4:
        explanations = explanations.mean(dim=1)
    if explanations.shape != maps.shape:
        raise ValueError(
            f"the explainer returned maps of shape {tuple(explanations.shape)}; expected {tuple(maps.shape)}"
        )
    ex = explanations.detach().double().cpu().numpy()
    hu = maps.detach().double().cpu().numpy()
    rhos, dices, ious = [], [], []
    for e, h in zip(ex, hu, strict=True):
        rho = _spearman(e.ravel(), h.ravel())
        rhos.append(rho)
        if not math.isnan(rho):
            dice, iou = _top_overlap(e.ravel(), h.ravel(), quantile)
            dices.append(dice)
            ious.append(iou)
    per_image = np.asarray(rhos)
    valid = per_image[~np.isnan(per_image)]
    n_constant = int(np.isnan(per_image).sum())
    if valid.size == 0:
        raise ValueError(f"every one of the {len(rhos)} images has a constant explanation or map; no score")
    mean = float(valid.mean())
    return AlignmentResult(
        score=mean / HUMAN_SPEARMAN_CEILING,
        spearman=mean,
        dice=float(np.nanmean(dices)) if dices else math.nan,
        iou=float(np.nanmean(ious)) if ious else math.nan,
        per_image=per_image,
        n_images=len(rhos),
        n_constant=n_constant,
    )
