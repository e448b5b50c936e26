"""Graph tracing: a model as a ``torch.fx`` graph of its operations, faithful and runnable.

:func:`split` cuts the graph at a layer, and bound propagation (EVA) walks it node by
node. :func:`trace` records the forward pass of the model in eval mode with
``torch.fx`` symbolic tracing: every operation becomes a node (``call_module`` for a
module kept whole, ``call_function`` / ``call_method`` for tensor operations,
``get_attr`` for a parameter or constant it reads), and the result is a
``torch.fx.GraphModule`` that runs those nodes and computes what the model computes.

Which modules and functions stay whole (*leaves*), and why:

- the modules of ``torch.nn`` (``Conv2d``, ``BatchNorm2d``, ``ReLU``, ``Linear``...),
  as fx does by default: they are the operations the graph is made of;
- the modules and functions that timm registers as untraceable (its
  ``register_notrace_module`` / ``register_notrace_function`` registry): for one, TF
  "same" padding (``Conv2dSame``, ``MaxPool2dSame``, used by timm's ``tf_``
  EfficientNets, the default model included) computes its padding from the input's size
  with Python control flow that fx cannot follow, so plain ``torch.fx.symbolic_trace``
  fails on those models; kept whole, they trace;
- the layers named in ``leaves=``: a layer to cut at (what :func:`split` asks for), or
  a module whose code cannot be traced.

The graph is that of the eval-mode forward pass: code that branches on
``self.training`` (drop-path, for one) is recorded in its eval branch, and the model's
train/eval flags are restored afterwards. The graph module shares the model's parameters
and buffers (nothing is copied) and is itself flagged as eval; leaf modules still run in
the mode they are in when it is called. Tracing leaves the model as found: fx stores the
tensor constants it meets as attributes of the traced module, and they are taken off the
model again and kept in the graph module only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.fx as fx
from torch import nn

from spyglass.engines.state import eval_mode
from spyglass.models.layers import _prefix, get_layer

__all__ = ["TracingError", "trace"]


class TracingError(ValueError):
    """The model's forward pass cannot be recorded as a ``torch.fx`` graph."""


def _timm_leaves() -> tuple[tuple[type[nn.Module], ...], tuple[Any, ...]]:
    try:
        from timm.models import _features_fx as timm_fx
    except ImportError:  # timm moved its private registry: trace without it
        return (), ()
    return tuple(timm_fx.get_notrace_modules()), tuple(timm_fx.get_notrace_functions())


class _LeafTracer(fx.Tracer):
    """An fx tracer that keeps the named modules, and timm's untraceable ones, whole."""

    def __init__(self, leaves: frozenset[str]) -> None:
        leaf_types, functions = _timm_leaves()
        super().__init__(autowrap_functions=functions)
        self.leaves = leaves
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name in self.leaves:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _leaf_names(model: nn.Module, leaves: Iterable[str]) -> frozenset[str]:
    """The qualified names (as in ``model.named_modules()``) of the layers in ``leaves``."""
    if isinstance(leaves, str):
        raise TypeError(f"leaves must be a list of layer names, not one string; got {leaves!r}")
    names = list(leaves)
    for name in names:
        get_layer(model, name)
    return frozenset(_prefix(model) + name for name in names)


def _trace_graph(model: nn.Module, leaves: frozenset[str]) -> tuple[fx.Graph, dict[str, Any]]:
    """The eval-mode graph of ``model`` and the constants fx attached to it (taken off it again).

    ``leaves`` are qualified names. The graph's ``get_attr`` nodes name the constants by
    their keys; :func:`_graph_module` puts them in the graph module.
    """
    before = set(vars(model))
    try:
        with eval_mode(model):
            graph = _LeafTracer(leaves).trace(model)
    except Exception as error:  # fx raises many types on untraceable code
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise TracingError(
            f"cannot trace {type(model).__name__}: torch.fx could not trace the model "
            f"({type(error).__name__}: {first_line}). Symbolic tracing records one forward pass with "
            "placeholder tensors, so Python control flow on tensor values (if x.sum() > 0: ...) stops it; "
            "keep the module whose code does that whole with trace(model, leaves=[its layer name]), or "
            "register it with timm.layers.register_notrace_module / register_notrace_function"
        ) from error
    finally:
        added = {name: vars(model).pop(name) for name in set(vars(model)) - before}
    return graph, added


def _graph_module(
    model: nn.Module, graph: fx.Graph, constants: dict[str, Any], class_name: str
) -> fx.GraphModule:
    """A ``GraphModule`` running ``graph`` on the modules, parameters and constants it names."""
    if constants:
        # GraphModule copies what the graph names from its root; the constants are put back
        # on the model for that copy only (tracing had them there), then taken off again.
        model.__dict__.update(constants)
    try:
        module = fx.GraphModule(model, graph, class_name=class_name)
    finally:
        for name in constants:
            vars(model).pop(name, None)
    # Only the wrapper's own flag: .eval() would recurse into the model's shared modules.
    module.training = False
    return module


def trace(model: nn.Module, *, leaves: Iterable[str] = ()) -> fx.GraphModule:
    """Record ``model``'s forward pass as a ``torch.fx.GraphModule`` that computes the same thing.

    Parameters
    ----------
    model
        Any ``nn.Module``; a :class:`~spyglass.models.VisionModel` is traced with its
        normalisation, so the graph takes ``[0, 1]`` images like the model.
    leaves
        Layers to keep as single ``call_module`` nodes (names as
        :func:`~spyglass.models.named_layers` gives them), beside ``torch.nn``'s modules and
        timm's registered untraceable modules and functions (see the module documentation).

    Returns
    -------
    torch.fx.GraphModule
        ``traced(x) == model(x)`` for the model in eval mode. Node targets are qualified
        names from the model's root (a VisionModel's layers appear as ``network.<layer>``).

    Raises
    ------
    TracingError
        (a ``ValueError``) The forward pass cannot be traced: the message gives fx's reason
        and how to keep the offending module whole.
    ValueError
        A name in ``leaves`` that is not a layer of the model.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> model = models.load()
    >>> traced = models.trace(model)
    >>> x = torch.rand(2, 3, 224, 224)
    >>> torch.allclose(traced(x), model(x))
    True
    >>> [node.target for node in traced.graph.nodes if node.op == "call_module"][:3]
    ['network.conv_stem', 'network.bn1', 'network.blocks.0.0.conv_dw']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    graph, constants = _trace_graph(model, _leaf_names(model, leaves))
    return _graph_module(model, graph, constants, f"Traced{type(model).__name__}")
