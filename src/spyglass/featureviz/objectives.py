"""What a feature visualization maximises: a class logit, a channel, a neuron, a direction.

An :class:`Objective` is a weighted sum of terms; each term reads either the model's
logits or the activations of one named layer (caught by a forward hook for the length
of one call) and gives one score per image. Objectives compose with ``+``, ``-`` and a
scalar ``*`` into *new* objectives; the operands are never changed, so a term can be
reused in several sums. The forms are those of Lucid / Olah et al. (2017) and, for
concept directions, the dot product × cosine^k used by MACO (Fel, Boissin et al., 2023).

Layer names are those of :func:`spyglass.models.list_layers` (``"blocks.5"``): relative
to a :class:`~spyglass.models.VisionModel`'s network, or to the module itself otherwise.
A layer that outputs ViT tokens ``(N, t + h·w, C)`` or an ``(N, h, w, C)`` grid is read as
the ``(N, C, h, w)`` map of :class:`~spyglass.models.FeatureLayout` (found from its shape on
the images of the call), the class/register tokens set aside, so ``channel``, ``neuron`` and
``direction`` mean the same on a ViT block as on a convolutional stage.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.models.feature_maps import feature_layout
from spyglass.models.hooks import hooked
from spyglass.models.layers import get_layer
from spyglass.validation import check_int, check_positive_float

__all__ = [
    "Objective",
    "channel",
    "create_objective",
    "direction",
    "list_objectives",
    "logit",
    "neuron",
    "register_objective",
]

_LOGITS = ""  # the "layer" of a term that reads the model's output

ObjectiveFactory = Callable[..., "Objective"]
_OBJECTIVES: dict[str, ObjectiveFactory] = {}


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Decorator: make a function that builds an :class:`Objective` available by ``name``.

    The CLI, the tests and the atlas enumerate :func:`list_objectives`, never a hand-kept list.
    """

    def decorate(factory: ObjectiveFactory) -> ObjectiveFactory:
        if name in _OBJECTIVES and _OBJECTIVES[name] is not factory:
            raise ValueError(f"objective {name!r} is already registered by {_OBJECTIVES[name].__name__}")
        _OBJECTIVES[name] = factory
        return factory

    return decorate


def list_objectives() -> list[str]:
    """Registered objective names, in registration order."""
    return list(_OBJECTIVES)


def create_objective(name: str, *args: object, **kwargs: object) -> Objective:
    """The objective ``name`` built from ``args``: ``create_objective("logit", 1)`` is ``logit(1)``.

    Examples
    --------
    >>> create_objective("channel", "blocks.5", 3)
    1·channel('blocks.5', 3)
    """
    if not isinstance(name, str) or name not in _OBJECTIVES:
        close = difflib.get_close_matches(str(name), list(_OBJECTIVES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown objective {name!r}; available: {', '.join(_OBJECTIVES)}.{hint}")
    return _OBJECTIVES[name](*args, **kwargs)


@dataclass(frozen=True)
class _Term:
    layer: str
    score: Callable[[Tensor], Tensor]  # activations (N, ...) -> (N,)
    weight: float
    label: str


class Objective:
    """A weighted sum of scores to maximise; call it as ``objective(model, images) -> (N,)``.

    Build objectives with :func:`logit`, :func:`channel`, :func:`neuron` and
    :func:`direction`, and combine them: ``a + b``, ``a - b``, ``2.0 * a``, ``-a``. The
    value is ``Σ_t w_t · s_t(A_t(x))`` with ``A_t`` the activations a term reads.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.featureviz import channel, logit
    >>> model = models.load()
    >>> objective = logit(1) + 0.5 * channel("blocks.5", 3)
    >>> objective(model, torch.rand(2, 3, 224, 224)).shape
    torch.Size([2])
    """

    def __init__(self, terms: tuple[_Term, ...]) -> None:
        self._terms = terms

    @property
    def layers(self) -> list[str]:
        """The layers whose activations the objective reads (logits not included)."""
        return list(dict.fromkeys(term.layer for term in self._terms if term.layer != _LOGITS))

    def check(self, model: nn.Module) -> None:
        """Raise a ``ValueError`` now if a layer of the objective is not in ``model``."""
        for layer in self.layers:
            get_layer(model, layer)

    def __call__(self, model: nn.Module, images: Tensor) -> Tensor:
        """The objective of each image, ``(N,)``, differentiable in ``images``.

        ``images`` need not lie in [0, 1]: the random views of an optimisation carry noise.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4:
            what = (
                f"shape {tuple(images.shape)}, {images.dtype}"
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise TypeError(f"images must be a float tensor (N, 3, H, W); got {what}")
        if images.shape[0] == 0:
            raise ValueError("images must hold at least one image; got an empty batch")
        captured: dict[str, Tensor] = {}

        def keep(layer: str) -> Callable[[nn.Module, object, object], None]:
            def hook(_module: nn.Module, _args: object, output: object) -> None:
                if isinstance(output, Tensor):
                    captured.setdefault(layer, output)

            return hook

        with hooked(model, {layer: keep(layer) for layer in self.layers}):
            logits = model(images)
        total = torch.zeros(images.shape[0], device=images.device, dtype=images.dtype)
        for term in self._terms:
            if term.layer == _LOGITS:
                activations = logits
            elif term.layer in captured:
                activations = _as_map(captured[term.layer], (int(images.shape[2]), int(images.shape[3])))
            else:
                raise ValueError(f"layer {term.layer!r} did not output a tensor in the forward pass")
            total = total + term.weight * term.score(activations)
        return total

    def __add__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self._terms + other._terms)

    def __sub__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-1.0) * other

    def __mul__(self, factor: object) -> Objective:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
            return NotImplemented
        return Objective(
            tuple(_Term(t.layer, t.score, t.weight * float(factor), t.label) for t in self._terms)
        )

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return (-1.0) * self

    def __repr__(self) -> str:
        return " + ".join(f"{t.weight:g}·{t.label}" for t in self._terms)


def _as_map(activations: Tensor, size: tuple[int, int]) -> Tensor:
    """Token sequences and channels-last grids as ``(N, C, h, w)`` maps; anything else unchanged."""
    if activations.ndim not in (3, 4):
        return activations
    layout = feature_layout(tuple(activations.shape[1:]), size)
    return activations if layout is None else layout.to_grid(activations)


def _check_index(name: str, value: object) -> int:
    return check_int(value, name, 0)


def _check_layer(layer: object) -> str:
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"layer must be a layer name such as 'blocks.5'; got {layer!r}")
    return layer


def _channel_axis(activations: Tensor, layer: str, index: int) -> None:
    if activations.ndim < 2:
        raise ValueError(f"layer {layer!r} outputs shape {tuple(activations.shape)}: no channel axis")
    if index >= activations.shape[1]:
        raise ValueError(
            f"channel index {index} is out of range for layer {layer!r}, which has "
            f"{activations.shape[1]} channels (0 to {activations.shape[1] - 1})"
        )


@register_objective("logit")
def logit(class_id: int) -> Objective:
    """The pre-softmax score of class ``class_id``: ``s(x) = f_c(x)``.

    The class objective of Simonyan et al. (2014) and of MACO (Fel, Boissin et al., 2023).

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.featureviz import logit
    >>> logit(1)(models.load(), torch.rand(1, 3, 224, 224)).shape
    torch.Size([1])
    """
    class_id = _check_index("class_id", class_id)

    def score(logits: Tensor) -> Tensor:
        if logits.ndim != 2 or class_id >= logits.shape[1]:
            raise ValueError(
                f"class_id {class_id} is out of range for a model with logits of shape {tuple(logits.shape)}"
            )
        return logits[:, class_id]

    return Objective((_Term(_LOGITS, score, 1.0, f"logit({class_id})"),))


@register_objective("channel")
def channel(layer: str, index: int) -> Objective:
    """The mean activation of channel ``index`` of ``layer``: ``s(x) = mean_{h,w} A_{index,h,w}(x)``.

    Olah et al., "Feature Visualization", Distill 2017. A ``(N, C)`` layer (a linear
    layer, pooled features) gives ``A_index`` itself.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.featureviz import channel
    >>> channel("blocks.5", 3)(models.load(), torch.rand(1, 3, 224, 224)).shape
    torch.Size([1])
    """
    layer = _check_layer(layer)
    index = _check_index("index", index)

    def score(activations: Tensor) -> Tensor:
        _channel_axis(activations, layer, index)
        selected = activations[:, index]
        return selected.flatten(1).mean(dim=1) if selected.ndim > 1 else selected

    return Objective((_Term(layer, score, 1.0, f"channel({layer!r}, {index})"),))


@register_objective("neuron")
def neuron(layer: str, index: int, position: tuple[int, int] | None = None) -> Objective:
    """One unit of channel ``index`` of ``layer``: ``s(x) = A_{index,i,j}(x)``.

    Olah et al., "Feature Visualization", Distill 2017. ``position=(i, j)`` indexes the
    spatial grid of a ``(N, C, H, W)`` layer; the default is its centre ``(H // 2, W // 2)``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.featureviz import neuron
    >>> neuron("blocks.5", 3, position=(2, 4))(models.load(), torch.rand(1, 3, 224, 224)).shape
    torch.Size([1])
    """
    layer = _check_layer(layer)
    index = _check_index("index", index)
    if position is not None and (
        not isinstance(position, tuple)
        or len(position) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in position)
    ):
        raise ValueError(f"position must be None or a pair of non-negative ints (i, j); got {position!r}")

    def score(activations: Tensor) -> Tensor:
        _channel_axis(activations, layer, index)
        if activations.ndim != 4:
            raise ValueError(
                f"neuron needs a (N, C, H, W) layer; {layer!r} outputs shape {tuple(activations.shape)}"
            )
        height, width = activations.shape[2:]
        i, j = position if position is not None else (height // 2, width // 2)
        if i >= height or j >= width:
            raise ValueError(f"position {(i, j)} is outside the {height}×{width} grid of layer {layer!r}")
        return activations[:, index, i, j]

    return Objective((_Term(layer, score, 1.0, f"neuron({layer!r}, {index}, {position})"),))


@register_objective("direction")
def direction(layer: str, vector: Tensor, cosine_power: float = 2.0) -> Objective:
    """A direction in the activation space of ``layer``: dot product × cosine^k.

    ``s(x) = ⟨a, v⟩ · max(cos(a, v), 0.1)^k`` with ``a`` the activations of ``layer``
    averaged over space, ``(N, C)``, and ``k = cosine_power``. The cosine factor (Olah et
    al., Lucid; used by MACO, Fel, Boissin et al., 2023, to render CRAFT concepts) stops
    the optimisation from raising the dot product by inflating the norm in other
    directions; its floor at 0.1 keeps a gradient when the two point apart.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.featureviz import direction
    >>> concept = torch.rand(1280)
    >>> direction("bn2", concept)(models.load(), torch.rand(1, 3, 224, 224)).shape
    torch.Size([1])
    """
    layer = _check_layer(layer)
    if not isinstance(vector, Tensor) or vector.ndim != 1 or not vector.is_floating_point():
        shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
        raise ValueError(f"vector must be a 1-D float tensor (one value per channel); got {shape}")
    if not bool(torch.isfinite(vector).all()) or float(vector.norm()) == 0.0:
        raise ValueError("vector must be finite and non-zero")
    check_positive_float(cosine_power, "cosine_power", allow_zero=True)
    target = vector.detach().clone()
    power = float(cosine_power)

    def score(activations: Tensor) -> Tensor:
        if activations.ndim < 2 or activations.shape[1] != target.shape[0]:
            raise ValueError(
                f"vector has {target.shape[0]} values but layer {layer!r} outputs shape "
                f"{tuple(activations.shape[1:])} ({activations.shape[1] if activations.ndim > 1 else 0} "
                "channels)"
            )
        pooled = activations.flatten(2).mean(dim=2) if activations.ndim > 2 else activations
        v = target.to(device=pooled.device, dtype=pooled.dtype)
        dot = pooled @ v
        cosine = F.cosine_similarity(pooled, v.expand_as(pooled), dim=1, eps=1e-8)
        return dot * cosine.clamp(min=0.1) ** power

    return Objective((_Term(layer, score, 1.0, f"direction({layer!r}, <{target.shape[0]}>)"),))
