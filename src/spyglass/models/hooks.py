"""Hooks for the length of a ``with`` block: registered together, removed together, always.

Methods read a layer's activations (Grad-CAM's probe, CRAFT, feature-visualization
objectives), rewrite a module's output (Guided Backprop) or catch a head's input (head
fine-tuning) with PyTorch hooks, and must hand the model back with none left, also when
the forward pass or the user's objective raises. :func:`hooked` makes that a property
of one construct, as zennit's ``Composite.context`` does:

>>> import torch
>>> from spyglass import models
>>> model = models.load()
>>> seen = []
>>> with models.hooked(model, {"blocks.5": lambda module, args, output: seen.append(output.shape)}):
...     _ = model(torch.rand(1, 3, 224, 224))
>>> seen
[torch.Size([1, 192, 7, 7])]
>>> any(module._forward_hooks for module in model.modules())
False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from torch import nn
from torch.utils.hooks import RemovableHandle

from spyglass.models.layers import get_layer

__all__ = ["HOOK_KINDS", "HookKind", "hooked"]

Layer = TypeVar("Layer", bound="str | nn.Module")

HookKind = Literal["forward", "forward_pre", "backward", "backward_pre"]

HOOK_KINDS: dict[str, str] = {
    "forward": "register_forward_hook",
    "forward_pre": "register_forward_pre_hook",
    "backward": "register_full_backward_hook",
    "backward_pre": "register_full_backward_pre_hook",
}
"""Each ``kind`` of :func:`hooked` and the ``nn.Module`` method that registers it."""


@contextmanager
def hooked(
    model: nn.Module,
    hooks: Mapping[Layer, Callable[..., Any]] | Iterable[tuple[Layer, Callable[..., Any]]],
    *,
    kind: HookKind = "forward",
) -> Iterator[None]:
    """Register ``hooks`` on sub-modules of ``model`` for the ``with`` block, and remove them all on exit.

    Parameters
    ----------
    model
        The model whose sub-modules are hooked.
    hooks
        ``{layer: hook}`` or ``(layer, hook)`` pairs (pairs allow several hooks on one
        layer). A layer is a name (see :func:`~spyglass.models.named_layers`: relative to a
        VisionModel's network) or a module of ``model`` (``model`` itself included).
    kind
        ``"forward"`` (``hook(module, args, output)``, may return a new output),
        ``"forward_pre"`` (``hook(module, args)``, may return new args), ``"backward"``
        (``hook(module, grad_input, grad_output)``, may return a new ``grad_input``) or
        ``"backward_pre"`` (``hook(module, grad_output)``): PyTorch's
        ``register_forward_hook``, ``register_forward_pre_hook``,
        ``register_full_backward_hook`` and ``register_full_backward_pre_hook``.

    Every layer is resolved before the first hook is registered, so a bad name leaves the
    model untouched; hooks run in the order given; on exit, by an exception or not, every
    hook registered here is removed (hooks the model had before are kept).

    Raises
    ------
    ValueError
        Unknown ``kind``, an unknown layer name, or a module that is not part of ``model``.
    TypeError
        A layer that is neither a name nor a module, or a hook that is not callable.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if kind not in HOOK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, HOOK_KINDS))}; got {kind!r}")
    pairs = list(hooks.items()) if isinstance(hooks, Mapping) else list(hooks)
    members: set[int] | None = None
    resolved: list[tuple[nn.Module, Callable[..., Any]]] = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError(f"hooks must be a mapping or (layer, hook) pairs; got an item {pair!r}")
        layer, hook = pair
        if isinstance(layer, str):
            module = get_layer(model, layer)
        elif isinstance(layer, nn.Module):
            if members is None:
                members = {id(m) for m in model.modules()}
            if id(layer) not in members:
                raise ValueError(
                    f"cannot hook a {type(layer).__name__} that is not a sub-module of the model"
                )
            module = layer
        else:
            raise TypeError(
                f"a hooked layer must be a layer name or an nn.Module; got {type(layer).__name__}"
            )
        if not callable(hook):
            label = repr(layer) if isinstance(layer, str) else f"a {type(layer).__name__}"
            raise TypeError(f"the hook for {label} must be callable; got {type(hook).__name__}")
        resolved.append((module, hook))
    handles: list[RemovableHandle] = []
    try:
        for module, hook in resolved:
            handles.append(getattr(module, HOOK_KINDS[kind])(hook))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()
