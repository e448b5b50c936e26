"""Split a classifier ``f = h ∘ g`` at a named layer, by graph tracing.

Concept extraction works on the activations ``g(x)`` of a layer and needs ``h`` to map
edited activations back to logits; EVA bounds ``h``. One routine builds both for any
architecture that ``torch.fx`` can trace, with no per-architecture code:

1. trace the model with the chosen layer as a *leaf*, so it is one node whatever it
   does inside (its own control flow included);
2. ``g`` is that node's ancestors; ``h`` is everything the output needs, with the node
   replaced by a new input. The split is valid only if ``h`` no longer needs the
   image: a skip connection that jumps over the layer makes it invalid, and the error
   says so;
3. run both on a random batch and check ``h(g(x)) == f(x)`` to a tolerance.

The trace is :func:`~spyglass.models.trace`'s (which keeps timm's untraceable modules
and functions whole: what lets timm's EfficientNets be split). ``g`` and ``h`` share
their parameters with the model: nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from spyglass.engines.forward import model_device
from spyglass.engines.state import eval_mode
from spyglass.models.layers import _prefix, get_layer, named_layers
from spyglass.models.probing import _input_size, probe_layers
from spyglass.models.tracing import TracingError, _graph_module, _trace_graph

__all__ = ["LayerInfo", "list_layers", "split"]


@dataclass(frozen=True)
class LayerInfo:
    """A named sub-module of a network.

    Attributes
    ----------
    name
        Qualified name relative to the network (``"layer4"``, ``"blocks.6.0"``).
    kind
        The module's class name.
    output_shape
        Shape of its output for one image, without the batch dimension.
    splittable
        Whether :func:`split` can cut the model at this layer.
    map_shape
        ``(C, h, w)`` when the output reads as a feature map (a convolutional map, a ViT's
        token sequence, a channels-last grid: :func:`~spyglass.models.feature_layout`), else None.
    prefix_tokens
        For a token sequence, the class/register tokens set aside before the grid; else 0.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    splittable: bool
    map_shape: tuple[int, int, int] | None = None
    prefix_tokens: int = 0


def _ancestors(start: Iterable[fx.Node], stop: fx.Node | None = None) -> set[fx.Node]:
    """Every node ``start`` depends on (``start`` included), not looking past ``stop``."""
    seen: set[fx.Node] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node is not stop:
            stack.extend(node.all_input_nodes)
    return seen


@dataclass
class _Cut:
    graph: fx.Graph
    constants: dict[str, Any]
    node: fx.Node
    needed_by_h: set[fx.Node]


def _cut(model: nn.Module, layer: str) -> _Cut:
    """Trace ``model`` with ``layer`` as a leaf and check that it cuts every path."""
    get_layer(model, layer)
    qualified = _prefix(model) + layer
    try:
        graph, constants = _trace_graph(model, frozenset({qualified}))
    except TracingError as error:
        raise ValueError(f"cannot split at {layer!r}: {error}") from error
    nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == qualified]
    if not nodes:
        raise ValueError(
            f"cannot split at {layer!r}: it sits inside a module that is traced as one operation; "
            "choose that module or a layer outside it (see list_layers(model))"
        )
    if len(nodes) > 1:
        raise ValueError(
            f"cannot split at {layer!r}: the module is called {len(nodes)} times in one forward pass"
        )
    node = nodes[0]
    output = next(n for n in graph.nodes if n.op == "output")
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    needed_by_h = _ancestors([output], stop=node)
    if placeholders and placeholders[0] in needed_by_h:
        raise ValueError(
            f"cannot split at {layer!r}: part of the model reaches the output without passing through it "
            "(a skip connection around it); choose the output of a whole block (see list_layers(model))"
        )
    return _Cut(graph=graph, constants=constants, node=node, needed_by_h=needed_by_h)


def _copy(source: fx.Graph, keep: set[fx.Node], env: dict[fx.Node, fx.Node], target: fx.Graph) -> None:
    for node in source.nodes:
        if node in keep and node not in env and node.op != "output":
            env[node] = target.node_copy(node, lambda arg: env[arg])


def split(
    model: nn.Module,
    layer: str,
    *,
    input_size: tuple[int, int] | None = None,
    check: bool = True,
    rtol: float = 1e-4,
) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Split ``model`` into ``g`` (images → activations of ``layer``) and ``h`` (activations → logits).

    Parameters
    ----------
    model
        A :class:`VisionModel` (then ``g`` includes the normalisation and takes ``[0, 1]``
        images) or any traceable ``nn.Module``.
    layer
        A qualified module name, relative to the network (see :func:`list_layers`).
    input_size
        ``(H, W)`` of the random check batch; default: the model's input size (224 px
        for a plain module).
    check
        Verify ``h(g(x)) == model(x)`` on a random batch (relative tolerance ``rtol`` of the
        largest logit).

    Returns
    -------
    (g, h)
        Two ``fx.GraphModule`` that share the model's parameters.

    Raises
    ------
    ValueError
        Unknown layer, a layer that a skip connection jumps over, a module called more
        than once, an untraceable model, or a reconstruction that does not match.

    Examples
    --------
    >>> from spyglass import models
    >>> model = models.load()
    >>> g, h = models.split(model, "blocks.5")
    >>> import torch
    >>> x = torch.rand(1, 3, 224, 224)
    >>> torch.allclose(h(g(x)), model(x), atol=1e-4)
    True
    """
    cut = _cut(model, layer)
    g_graph, h_graph = fx.Graph(), fx.Graph()
    g_env: dict[fx.Node, fx.Node] = {}
    _copy(cut.graph, _ancestors([cut.node]), g_env, g_graph)
    g_graph.output(g_env[cut.node])
    h_env: dict[fx.Node, fx.Node] = {cut.node: h_graph.placeholder("activations")}
    _copy(cut.graph, cut.needed_by_h, h_env, h_graph)
    output = next(n for n in cut.graph.nodes if n.op == "output")
    h_graph.output(fx.map_arg(output.args[0], lambda arg: h_env[arg]))
    g = _graph_module(model, g_graph, cut.constants, "SplitBottom")
    h = _graph_module(model, h_graph, cut.constants, "SplitTop")
    if check:
        _check_reconstruction(model, g, h, layer, _input_size(model, input_size), rtol)
    return g, h


def _check_reconstruction(
    model: nn.Module, g: nn.Module, h: nn.Module, layer: str, size: tuple[int, int], rtol: float
) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *size, generator=generator).to(model_device(model))
    with eval_mode(model), torch.no_grad():
        expected = model(x)
        activations = g(x)
        got = h(activations)
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        raise ValueError(f"split at {layer!r} does not reproduce the model's output shape")
    scale = float(expected.abs().max()) or 1.0
    error = float((got - expected).abs().max())
    if error > rtol * scale:
        raise ValueError(
            f"split at {layer!r} does not reproduce the model (max difference {error:.3g} on logits "
            f"up to {scale:.3g}); the model may have data-dependent control flow that tracing froze"
        )


def list_layers(model: nn.Module, *, input_size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """The named sub-modules of a network, in the order their forward passes finish.

    Each comes with its output shape (from one forward pass on a blank image), the
    ``(C, h, w)`` feature map it reads as (token sequences included, their prefix tokens
    counted) and whether :func:`split` can cut there. Modules that do not run in the forward pass,
    or do not return a single tensor, are left out.

    Examples
    --------
    >>> from spyglass import models
    >>> layers = models.list_layers(models.load())
    >>> [layer.name for layer in layers if layer.splittable][-3:]
    ['global_pool.flatten', 'global_pool', 'classifier']
    """
    from spyglass.models.feature_maps import feature_layout

    layers = named_layers(model)
    size = _input_size(model, input_size)
    shapes = probe_layers(model, input_size=size)
    infos = []
    for name, shape in shapes.items():
        try:
            _cut(model, name)
            splittable = True
        except ValueError:
            splittable = False
        layout = feature_layout(shape, size)
        infos.append(
            LayerInfo(
                name=name,
                kind=type(layers[name]).__name__,
                output_shape=shape,
                splittable=splittable,
                map_shape=None if layout is None else layout.map_shape,
                prefix_tokens=0 if layout is None else layout.prefix_tokens,
            )
        )
    return infos
