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

timm registers the functions and modules it cannot trace (TF "same" padding, for one)
as leaves; the tracer reuses that registry, which is what lets timm's EfficientNets be
split. ``g`` and ``h`` share their parameters with the model: nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import Tensor, nn

from spyglass.engines.forward import model_device
from spyglass.engines.state import eval_mode
from spyglass.models.vision_model import VisionModel

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
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    splittable: bool


def _timm_leaves() -> tuple[tuple[type[nn.Module], ...], tuple[object, ...]]:
    try:
        from timm.models import _features_fx as timm_fx
    except ImportError:  # timm moved its private registry: trace without it
        return (), ()
    return tuple(timm_fx.get_notrace_modules()), tuple(timm_fx.get_notrace_functions())


class _LeafTracer(fx.Tracer):
    """An fx tracer that keeps one named module (and timm's untraceable ones) opaque."""

    def __init__(self, leaf: str) -> None:
        leaf_types, functions = _timm_leaves()
        super().__init__(autowrap_functions=functions)  # type: ignore[arg-type]
        self.leaf = leaf
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name == self.leaf:
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _prefix(model: nn.Module) -> str:
    """Layer names are relative to the network: a VisionModel's live under ``network.``."""
    return "network." if isinstance(model, VisionModel) else ""


def _input_shape(model: nn.Module, input_size: tuple[int, int] | None) -> tuple[int, int]:
    if input_size is not None:
        return input_size
    if isinstance(model, VisionModel):
        return model.input_size
    return (224, 224)


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
    node: fx.Node
    needed_by_h: set[fx.Node]


def _cut(model: nn.Module, layer: str) -> _Cut:
    """Trace ``model`` with ``layer`` as a leaf and check that it cuts every path."""
    qualified = _prefix(model) + layer
    modules = dict(model.named_modules())
    if qualified not in modules or not layer:
        names = [n[len(_prefix(model)) :] for n in modules if n.startswith(_prefix(model)) and n != "network"]
        import difflib

        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See list_layers(model)."
        raise ValueError(f"unknown layer {layer!r}.{hint}")
    with eval_mode(model):
        try:
            graph = _LeafTracer(qualified).trace(model)
        except Exception as error:  # fx raises many types on untraceable code
            raise ValueError(
                f"cannot split {type(model).__name__} at {layer!r}: torch.fx could not trace the model "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            ) from error
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
    return _Cut(graph=graph, node=node, needed_by_h=needed_by_h)


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
    g = fx.GraphModule(model, g_graph, class_name="SplitBottom")
    h = fx.GraphModule(model, h_graph, class_name="SplitTop")
    # Only the wrappers' own flag: .eval() would recurse into the model's shared modules.
    g.training = h.training = False
    if check:
        _check_reconstruction(model, g, h, layer, _input_shape(model, input_size), rtol)
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

    Each comes with its output shape (from one forward pass on a blank image) and
    whether :func:`split` can cut there. Modules that do not run in the forward pass,
    or do not return a single tensor, are left out.

    Examples
    --------
    >>> from spyglass import models
    >>> layers = models.list_layers(models.load())
    >>> [layer.name for layer in layers if layer.splittable][-3:]
    ['bn2', 'global_pool', 'classifier']
    """
    prefix = _prefix(model)
    shapes: dict[str, tuple[int, ...]] = {}
    kinds: dict[str, str] = {}
    handles = []

    def record(name: str, module: nn.Module, _args: object, output: object) -> None:
        if isinstance(output, Tensor) and name not in shapes:
            shapes[name] = tuple(output.shape[1:])
            kinds[name] = type(module).__name__

    for qualified, module in model.named_modules():
        if qualified.startswith(prefix) and qualified != prefix.rstrip("."):
            name = qualified[len(prefix) :]
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: record(name, m, a, o)))
    size = _input_shape(model, input_size)
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, 3, *size, device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for name, shape in shapes.items():
        try:
            _cut(model, name)
            splittable = True
        except ValueError:
            splittable = False
        layers.append(LayerInfo(name=name, kind=kinds[name], output_shape=shape, splittable=splittable))
    return layers
