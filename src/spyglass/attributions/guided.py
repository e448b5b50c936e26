"""Guided Backpropagation and DeconvNet: input gradients through rewritten ReLU backward passes.

Both are the gradient of the objective with respect to the image, except that every
ReLU-type activation module sends back a modified signal: only its positive part
(DeconvNet), or its positive part where the activation was also passing (Guided
Backprop). On each activation module, a forward pre-hook keeps the pre-activation and a
forward hook replaces the output by the same values computed through a custom autograd
function; the hooks live for one call (:func:`spyglass.models.hooked`), so the model is
left as found even when the objective raises.

We write them ourselves rather than wrap Captum: the method is what spyglass is about,
and Captum rewrites ``nn.ReLU`` modules only, so on EfficientNet-Lite0, whose
activations are ``nn.ReLU6``, it silently returns the plain gradient. Captum is a
test-only peer that our tests compare against.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution
from spyglass.attributions._registry import register
from spyglass.engines.gradients import batched_gradients
from spyglass.models.hooks import hooked
from spyglass.objectives import Objective, target_logit

__all__ = ["DeconvNet", "GuidedBackprop"]

_SUPPORTED: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)  # the modules whose backward is rewritten


class _RectifiedBackward(torch.autograd.Function):
    """``clamp(x, 0, upper)`` forward; backward keeps the positive part of the gradient.

    With ``guided`` it also keeps the ordinary gradient's gate, ``0 < x < upper``
    (Guided Backprop); without, the gate is dropped (DeconvNet).
    """

    @staticmethod
    def forward(ctx: Any, pre_activation: Tensor, upper: float, guided: bool) -> Tensor:
        ctx.upper, ctx.guided = upper, guided
        ctx.save_for_backward(pre_activation if guided else None)
        return pre_activation.clamp(0.0, None if math.isinf(upper) else upper)

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> tuple[Tensor, None, None]:
        signal = gradient.clamp_min(0.0)
        if ctx.guided:
            (pre_activation,) = ctx.saved_tensors
            signal = signal * ((pre_activation > 0) & (pre_activation < ctx.upper))
        return signal, None, None


def _upper(module: nn.Module) -> float:
    return float(module.max_val) if isinstance(module, nn.ReLU6) else math.inf


def _supported_activations(model: nn.Module) -> list[nn.Module]:
    """The activation modules of ``model`` that :class:`GuidedBackprop` rewrites."""
    return [module for module in model.modules() if isinstance(module, _SUPPORTED)]


def _no_activation_error(model: nn.Module) -> ValueError:
    others = Counter(
        type(module).__name__
        for module in model.modules()
        if type(module).__module__ == "torch.nn.modules.activation"
    )
    found = ", ".join(f"{count} {name}" for name, count in sorted(others.items())) or "none"
    return ValueError(
        f"{type(model).__name__} has no nn.ReLU or nn.ReLU6 module to rewrite (other activation "
        f"modules found: {found}); Guided Backprop and DeconvNet are defined for ReLU networks, and "
        "activations called as functions (F.relu) cannot be hooked"
    )


class _ModifiedReLUGradient(Attribution):
    """Shared body of Guided Backprop and DeconvNet: the input gradient under rewritten ReLUs."""

    kind = "propagation"

    guided: ClassVar[bool]

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        if not _supported_activations(model):
            raise _no_activation_error(model)

    def _hooks(self) -> tuple[Callable[..., Any], Callable[..., Any]]:
        pre_activations: dict[nn.Module, Tensor] = {}

        def before(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            # An in-place activation overwrites its input and rebases its autograd history:
            # keep a copy of the pre-activation (the module still runs as written, so code
            # that relies on its in-place effect sees the same values).
            inplace = getattr(module, "inplace", False)
            pre_activations[module] = args[0].clone() if inplace else args[0]

        def after(module: nn.Module, _args: object, _output: object) -> Tensor:
            pre_activation = pre_activations.pop(module)
            result: Tensor = _RectifiedBackward.apply(pre_activation, _upper(module), self.guided)
            return result

        return before, after

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        activations = _supported_activations(self.model)
        if not activations:
            raise _no_activation_error(self.model)
        before, after = self._hooks()
        with (
            hooked(self.model, [(module, before) for module in activations], kind="forward_pre"),
            hooked(self.model, [(module, after) for module in activations], kind="forward"),
        ):
            return batched_gradients(
                self.model,
                images,
                targets,
                objective=self.objective,
                batch_size=self.batch_size,
                progress=self.progress,
                reduce=lambda gradients, _rows: gradients.abs().amax(dim=1),
                desc=self.name,
            )


@register("guided_backprop")
class GuidedBackprop(_ModifiedReLUGradient):
    r"""Guided Backpropagation: the gradient, with negative signals stopped at every ReLU.

    Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All
    Convolutional Net", ICLR workshop 2015. At each rectifier with input ``z``, the
    backward signal ``R`` becomes

    .. math:: R_{\text{in}} = \mathbb{1}[0 < z < u] \, \max(R_{\text{out}}, 0), \qquad
              \phi(x)_{ij} = \max_c |R_{\text{in}}(x)_{cij}|

    with ``u = ∞`` for ``nn.ReLU`` and ``u = 6`` for ``nn.ReLU6``: the gate is where the
    activation passes its input, as in its ordinary gradient, and only positive signals
    go through. The map is reduced over colour channels like :class:`Saliency`, by the
    maximum absolute value.

    Covered: ``nn.ReLU`` and ``nn.ReLU6`` modules, in-place or not (EfficientNet-Lite0
    uses ``nn.ReLU6``; ResNets use ``nn.ReLU``). Activations called as functions
    (``F.relu``, ``torch.clamp``) and other activation modules (SiLU, GELU, …) keep their
    ordinary gradient; a model without any covered module is rejected with a
    ``ValueError``. One forward and one backward pass per image.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> guided = attributions.GuidedBackprop(models.load())
    >>> guided(torch.rand(2, 3, 224, 224), targets=[967, 281]).shape
    torch.Size([2, 224, 224])
    """

    guided = True


@register("deconvnet")
class DeconvNet(_ModifiedReLUGradient):
    r"""DeconvNet: the gradient, with every ReLU's backward replaced by a ReLU of the signal.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014:
    the "deconvolution" of a class score is the backward pass in which each rectifier
    rectifies the signal coming back instead of gating it by its forward input:

    .. math:: R_{\text{in}} = \max(R_{\text{out}}, 0), \qquad
              \phi(x)_{ij} = \max_c |R_{\text{in}}(x)_{cij}|

    For ``nn.ReLU6`` the same rule is used (no gate, no cap at 6: the cap bounds the
    forward activations, not the scale of a backward signal). Covered activations,
    channel reduction and cost as :class:`GuidedBackprop`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> attributions.DeconvNet(models.load())(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    guided = False
