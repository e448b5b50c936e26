"""The traced graph as a list of bound rules: one :class:`Op` per operation on bounded tensors.

A node of the ``torch.fx`` graph is *variable* when it depends on the model's input
(other than through its shape); the rest (parameters, constants, sizes) are computed
once, exactly. Each variable node becomes an :class:`Op` of one of four kinds:

- ``"isotone"``: affine with non-negative coefficients (reshapes, pooling by averages,
  padding, concatenation, sums, means, the addition of tensors or constants, identity and
  dropout in eval mode). Its interval is the operation applied to the lower bounds and to
  the upper bounds.
- ``"signed"``: affine with coefficients of any sign (``Linear``, convolutions,
  ``BatchNorm`` from its running statistics, subtraction, multiplication and division by
  constants). Its interval goes through the centre and the radius:
  ``c' = f(c)``, ``r' = |W| r`` for ``f(x) = W x + b``, with ``|W|`` the element-wise
  absolute value of the weights.
- ``"activation"``: an element-wise function (:mod:`spyglass.bounds._activations`).
- ``"monotone"``: non-decreasing in each input but not affine (max pooling): the
  operation on the lower and on the upper bounds; CROWN bounds it by that interval.

Anything else raises :class:`UnsupportedOperationError`, naming the operation and its node.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

from spyglass.bounds import _activations
from spyglass.bounds._activations import Activation

__all__ = ["Op", "Program", "UnsupportedOperationError"]

Kind = Literal["isotone", "signed", "activation", "monotone"]
Box = tuple[Tensor, Tensor]


class UnsupportedOperationError(ValueError):
    """An operation of the model has no bound rule: bounding it would need a rule we do not have."""


@dataclass
class Op:
    """One operation on bounded tensors.

    ``call(*inputs)`` computes it exactly from the tensors of its variable ``inputs``
    (names of earlier ops), with its constants bound. ``radius`` (signed ops) maps the
    inputs' radii to the output's; ``activation`` describes an element-wise op.
    """

    name: str
    place: str
    kind: Kind
    inputs: tuple[str, ...]
    call: Callable[..., Tensor]
    radius: Callable[..., Tensor] | None = None
    activation: Activation | None = None
    reshape_only: bool = False

    def interval(self, boxes: Sequence[Box]) -> Box:
        """The interval of the output when each input lies in its box."""
        if self.kind == "signed":
            assert self.radius is not None
            centres = [(low + high) / 2 for low, high in boxes]
            radii = [(high - low) / 2 for low, high in boxes]
            centre = self.call(*centres)
            radius = self.radius(*radii)
            return centre - radius, centre + radius
        if self.kind == "activation":
            assert self.activation is not None
            return self.activation.interval(*boxes[0])
        return self.call(*(low for low, _ in boxes)), self.call(*(high for _, high in boxes))


@dataclass
class Program:
    """The ops of a graph in order, its input's name and its output's name."""

    input: str
    ops: list[Op] = field(default_factory=list)
    output: str = ""


def _unsupported(what: str, node: fx.Node, why: str = "") -> UnsupportedOperationError:
    place = _place(node)
    reason = f" ({why})" if why else ""
    return UnsupportedOperationError(
        f"spyglass.bounds has no bound rule for {what} at {place}{reason}. The supported operations are "
        "listed in the documentation of spyglass.bounds; to bound the rest of a network, cut it after "
        "this operation with spyglass.models.split and bound the second part"
    )


def _place(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"node {node.name!r} (module {node.target!r})"
    return f"node {node.name!r}"


def _describe(node: fx.Node, module: nn.Module | None) -> str:
    if module is not None:
        return f"the module {type(module).__name__}"
    if node.op == "call_method":
        return f"the tensor method .{node.target}()"
    target = node.target
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)
    module_name = getattr(target, "__module__", None) or ""
    return f"the function {module_name + '.' if module_name else ''}{name}"


# --- what is what --------------------------------------------------------------------

_SHAPE_METHODS = {"size", "dim", "ndimension", "numel", "nelement"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda"}

_ISOTONE_FUNCTIONS: set[Any] = {
    operator.add,
    torch.add,
    torch.flatten,
    torch.reshape,
    torch.permute,
    torch.transpose,
    torch.squeeze,
    torch.unsqueeze,
    operator.getitem,
    torch.cat,
    torch.concat,
    torch.stack,
    F.pad,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    torch.mean,
    torch.sum,
}
_RESHAPE_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_ISOTONE_METHODS = {
    "add",
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "mean",
    "sum",
    "expand",
    "clone",
    "detach",
}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous", "clone", "detach"}
_MONOTONE_FUNCTIONS: set[Any] = {
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
    torch.amax,
    torch.amin,
}
_MONOTONE_METHODS = {"amax", "amin"}

_ISOTONE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    _DropoutNd,
    nn.Flatten,
    nn.Unflatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
    nn.modules.padding._CircularPadNd,
)
_RESHAPE_MODULES: tuple[type[nn.Module], ...] = (nn.Identity, _DropoutNd, nn.Flatten, nn.Unflatten)
_MONOTONE_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def _timm_pad_functions() -> set[Any]:
    try:
        from timm.layers import padding
    except ImportError:  # timm is optional: without it, its padding cannot appear in a graph
        return set()
    return {padding.pad_same}


def _argument(node: fx.Node, index: int, name: str, default: Any, constants: dict[fx.Node, Any]) -> Any:
    """Argument ``index`` / keyword ``name`` of ``node`` (a constant), or ``default``."""
    if name in node.kwargs:
        value = node.kwargs[name]
    elif len(node.args) > index:
        value = node.args[index]
    else:
        return default
    return constants[value] if isinstance(value, fx.Node) else value


def _module_activation(module: nn.Module) -> Activation | None:
    if isinstance(module, nn.ReLU):
        return _activations.clamp(0.0, None)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return _activations.clamp(float(module.min_val), float(module.max_val))
    if isinstance(module, nn.LeakyReLU):
        return _activations.leaky_relu(float(module.negative_slope))
    if isinstance(module, nn.Sigmoid):
        return _activations.smooth("sigmoid")
    if isinstance(module, nn.Tanh):
        return _activations.smooth("tanh")
    if isinstance(module, nn.SiLU):
        return _activations.smooth("silu")
    if isinstance(module, nn.GELU):
        return _activations.smooth("gelu_tanh" if module.approximate == "tanh" else "gelu")
    return None


def _function_activation(node: fx.Node, constants: dict[fx.Node, Any]) -> Activation | None:
    target = node.target
    method = node.op == "call_method"
    if target in (F.relu, torch.relu) or (method and target in ("relu", "relu_")):
        return _activations.clamp(0.0, None)
    if target is F.relu6:
        return _activations.clamp(0.0, 6.0)
    if target is F.hardtanh:
        low = _argument(node, 1, "min_val", -1.0, constants)
        high = _argument(node, 2, "max_val", 1.0, constants)
        return _activations.clamp(float(low), float(high))
    if target in (torch.clamp, torch.clip) or (method and target in ("clamp", "clip")):
        low = _argument(node, 1, "min", None, constants)
        high = _argument(node, 2, "max", None, constants)
        if isinstance(low, Tensor) or isinstance(high, Tensor):
            return None
        return _activations.clamp(None if low is None else float(low), None if high is None else float(high))
    if target is F.leaky_relu:
        return _activations.leaky_relu(float(_argument(node, 1, "negative_slope", 0.01, constants)))
    if target in (torch.sigmoid, F.sigmoid) or (method and target == "sigmoid"):
        return _activations.smooth("sigmoid")
    if target in (torch.tanh, F.tanh) or (method and target == "tanh"):
        return _activations.smooth("tanh")
    if target is F.silu:
        return _activations.smooth("silu")
    if target is F.gelu:
        approximate = _argument(node, 1, "approximate", "none", constants)
        return _activations.smooth("gelu_tanh" if approximate == "tanh" else "gelu")
    return None


# --- building the ops ----------------------------------------------------------------


def _run_target(node: fx.Node, graph_module: fx.GraphModule) -> Callable[..., Any]:
    if node.op == "call_module":
        return graph_module.get_submodule(str(node.target))
    if node.op == "call_method":
        name = str(node.target)

        def method(receiver: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(receiver, name)(*args, **kwargs)

        return method
    assert callable(node.target)
    return node.target


def _binder(
    node: fx.Node,
    inputs: tuple[fx.Node, ...],
    constants: dict[fx.Node, Any],
    target: Callable[..., Any],
    constant: Callable[[Any], Any] = lambda value: value,
) -> Callable[..., Tensor]:
    """``target`` applied to ``node``'s arguments: its variable inputs given, its constants bound.

    ``constant`` transforms each constant argument first (``abs`` for a radius).
    """
    bound = {n: constant(constants[n]) for n in node.all_input_nodes if n not in inputs}

    def literal(argument: Any) -> Any:
        return argument if isinstance(argument, fx.Node) else constant(argument)

    # Literals (the 2 of `2 * x`) are constants too.
    template_args = fx.node.map_aggregate(node.args, literal)
    template_kwargs = fx.node.map_aggregate(node.kwargs, literal)

    def call(*tensors: Tensor) -> Tensor:
        lookup = dict(zip(inputs, tensors, strict=True))

        def value(n: fx.Node) -> Any:
            return lookup[n] if n in lookup else bound[n]

        args = fx.map_arg(template_args, value)
        kwargs = fx.map_arg(template_kwargs, value)
        return target(*args, **kwargs)

    return call


def _absolute(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.abs()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return abs(value)
    return value


def _module_radius(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``r ↦ |W| r`` for a ``Linear`` or a convolution: the module with absolute weights, no bias."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    parameters: dict[str, Tensor] = {"weight": weight.detach().abs()}
    bias = getattr(module, "bias", None)
    if bias is not None:
        parameters["bias"] = torch.zeros_like(bias)

    def radius(r: Tensor) -> Tensor:
        return torch.func.functional_call(module, parameters, (r,))

    return radius


def _batch_norm_parts(module: _BatchNorm, node: fx.Node) -> tuple[Tensor, Tensor]:
    """Scale and shift of an eval-mode batch norm, per channel."""
    if module.running_mean is None or module.running_var is None:
        raise _unsupported(
            f"the module {type(module).__name__}",
            node,
            "it has no running statistics, so it normalises by the statistics of each batch",
        )
    scale = torch.rsqrt(module.running_var.detach() + module.eps)
    if module.weight is not None:
        scale = scale * module.weight.detach()
    shift = -module.running_mean.detach() * scale
    if module.bias is not None:
        shift = shift + module.bias.detach()
    return scale, shift


def _batch_norm_ops(name: str, place: str, module: _BatchNorm, node: fx.Node, source: str) -> Op:
    scale, shift = _batch_norm_parts(module, node)

    def channel(values: Tensor, like: Tensor) -> Tensor:
        return values.to(like.dtype).view(1, -1, *[1] * (like.ndim - 2))

    def call(x: Tensor) -> Tensor:
        return x * channel(scale, x) + channel(shift, x)

    def radius(r: Tensor) -> Tensor:
        return r * channel(scale, r).abs()

    return Op(name, place, "signed", (source,), call, radius=radius)


def _is_norm_act(module: nn.Module) -> bool:
    # timm's BatchNormAct2d: a BatchNorm2d that also applies its `drop` and `act` sub-modules.
    return isinstance(module, _BatchNorm) and isinstance(getattr(module, "act", None), nn.Module)


def _module_ops(node: fx.Node, module: nn.Module, inputs: tuple[fx.Node, ...]) -> list[Op]:
    name, place = node.name, _place(node)
    names = tuple(n.name for n in inputs)
    describe = f"the module {type(module).__name__}"
    if len(inputs) != 1 or len(node.args) != 1 or node.kwargs:
        raise _unsupported(describe, node, "a module is bounded only when called on one tensor")
    source = names[0]
    if _is_norm_act(module):
        assert isinstance(module, _BatchNorm)
        ops = [_batch_norm_ops(f"{name}.bn", place, module, node, source)]
        drop = getattr(module, "drop", nn.Identity())
        if not isinstance(drop, (nn.Identity, _DropoutNd)):
            raise _unsupported(f"{type(module).__name__}'s drop layer {type(drop).__name__}", node)
        act = module.act
        assert isinstance(act, nn.Module)
        if not isinstance(act, nn.Identity):
            activation = _module_activation(act)
            if activation is None:
                raise _unsupported(f"{type(module).__name__}'s activation {type(act).__name__}", node)
            ops.append(
                Op(
                    f"{name}",
                    place,
                    "activation",
                    (ops[-1].name,),
                    activation.function,
                    activation=activation,
                )
            )
        else:
            ops[-1].name = name
        return ops
    if isinstance(module, _BatchNorm):
        return [_batch_norm_ops(name, place, module, node, source)]
    if isinstance(module, (nn.Linear, _ConvNd)):
        return [Op(name, place, "signed", names, module, radius=_module_radius(module))]
    if isinstance(module, _ISOTONE_MODULES):
        reshape = isinstance(module, _RESHAPE_MODULES)
        return [Op(name, place, "isotone", names, module, reshape_only=reshape)]
    if isinstance(module, _MONOTONE_MODULES):
        if getattr(module, "return_indices", False):
            raise _unsupported(describe, node, "it returns indices")
        return [Op(name, place, "monotone", names, module)]
    activation = _module_activation(module)
    if activation is not None:
        return [Op(name, place, "activation", names, activation.function, activation=activation)]
    raise _unsupported(describe, node)


def _function_op(
    node: fx.Node, graph_module: fx.GraphModule, inputs: tuple[fx.Node, ...], constants: dict[fx.Node, Any]
) -> Op:
    name, place = node.name, _place(node)
    names = tuple(n.name for n in inputs)
    target = node.target
    method = node.op == "call_method"
    describe = _describe(node, None)
    run = _run_target(node, graph_module)

    def bind(transform: Callable[[Any], Any] = lambda value: value, target: Callable[..., Any] = run) -> Any:
        return _binder(node, inputs, constants, target, transform)

    positions = [i for i, a in enumerate(node.args) if isinstance(a, fx.Node) and a in inputs]
    if any(isinstance(v, fx.Node) and v in inputs for v in node.kwargs.values()):
        raise _unsupported(describe, node, "a bounded tensor passed by keyword")

    activation = _function_activation(node, constants)
    if activation is not None:
        if positions != [0]:
            raise _unsupported(describe, node, "bounded tensors in its other arguments")
        return Op(name, place, "activation", names, activation.function, activation=activation)
    if target in (operator.add, torch.add) or (method and target == "add"):
        if "alpha" in node.kwargs:
            raise _unsupported(describe, node, "an alpha factor")
        return Op(name, place, "isotone", names, bind())
    if target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout):
        if _argument(node, 2, "training", True, constants):
            raise _unsupported(describe, node, "dropout in training mode")
        return Op(name, place, "isotone", names, bind(), reshape_only=True)
    if (
        target in _ISOTONE_FUNCTIONS
        or target in _timm_pad_functions()
        or (method and target in _ISOTONE_METHODS)
    ):
        reshape = target in _RESHAPE_FUNCTIONS or (method and target in _RESHAPE_METHODS)
        return Op(name, place, "isotone", names, bind(), reshape_only=reshape)
    if target in _MONOTONE_FUNCTIONS or (method and target in _MONOTONE_METHODS):
        if _argument(node, 6, "return_indices", False, constants) is True:
            raise _unsupported(describe, node, "it returns indices")
        return Op(name, place, "monotone", names, bind())
    if target in (operator.neg, torch.neg) or (method and target == "neg"):
        return Op(name, place, "signed", names, bind(), radius=lambda r: r)
    if target in (operator.sub, torch.sub) or (method and target == "sub"):
        if "alpha" in node.kwargs:
            raise _unsupported(describe, node, "an alpha factor")

        def radius_sum(*radii: Tensor) -> Tensor:
            # |x - y| coefficients are those of x and y: the radii add up, argument by argument.
            lookup = dict(zip(inputs, radii, strict=True))
            total: Tensor | None = None
            for argument in node.args[:2]:
                if isinstance(argument, fx.Node) and argument in lookup:
                    total = lookup[argument] if total is None else total + lookup[argument]
            assert total is not None
            return total

        return Op(name, place, "signed", names, bind(), radius=radius_sum)
    if target in (operator.mul, torch.mul) or (method and target == "mul"):
        if len(positions) != 1 or len(node.args) != 2:
            raise _unsupported(describe, node, "a product of two bounded tensors")
        return Op(name, place, "signed", names, bind(), radius=bind(_absolute))
    if target in (operator.truediv, torch.div) or (method and target == "div"):
        if positions != [0] or node.kwargs:
            raise _unsupported(describe, node, "division by a bounded tensor")
        return Op(name, place, "signed", names, bind(), radius=bind(_absolute))
    if target in (operator.matmul, torch.matmul):
        if len(positions) != 1:
            raise _unsupported(describe, node, "a product of two bounded tensors")
        return Op(name, place, "signed", names, bind(), radius=bind(_absolute))
    if target in (F.linear, F.conv1d, F.conv2d, F.conv3d):
        if positions != [0]:
            raise _unsupported(describe, node, "bounded weights")

        def no_bias(*args: Any, **kwargs: Any) -> Tensor:
            args = tuple(None if i == 2 else a for i, a in enumerate(args))
            if "bias" in kwargs:
                kwargs = {**kwargs, "bias": None}
            return target(*args, **kwargs)

        return Op(name, place, "signed", names, bind(), radius=bind(_absolute, no_bias))
    raise _unsupported(describe, node)


def _attribute(graph_module: fx.GraphModule, target: str) -> Any:
    return functools.reduce(getattr, target.split("."), graph_module)


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in _SHAPE_ATTRIBUTES
    return node.op == "call_function" and node.target is len


def variable_nodes(graph: fx.Graph) -> set[fx.Node]:
    """The nodes whose value depends on the input's values (not only on its shape)."""
    variable: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or (
            node.op != "output"
            and not _is_shape_query(node)
            and any(n in variable for n in node.all_input_nodes)
        ):
            variable.add(node)
    return variable


def compile_graph(
    graph_module: fx.GraphModule, lower: Tensor, upper: Tensor, keep: Callable[[str], bool]
) -> tuple[Program, dict[str, Box]]:
    """Build the ops of ``graph_module`` and their IBP boxes, in one pass over the graph.

    ``keep(name)`` says which boxes to keep after their last use (the others are dropped
    as soon as no later op reads them, so that IBP needs little more memory than a
    forward pass). Shape queries are answered from ``lower``.
    """
    graph = graph_module.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedOperationError(
            f"spyglass.bounds bounds models of one input tensor; this graph takes {len(placeholders)} "
            f"({', '.join(n.name for n in placeholders)})"
        )
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, fx.Node):
        raise UnsupportedOperationError(
            f"spyglass.bounds bounds models that return one tensor; this one returns {type(result).__name__}"
        )
    variable = variable_nodes(graph)
    if result not in variable:
        raise UnsupportedOperationError("the model's output does not depend on its input: nothing to bound")
    order = {node: i for i, node in enumerate(graph.nodes)}
    last_use: dict[str, int] = {}
    for node in graph.nodes:
        for user in node.users:
            last_use[node.name] = max(last_use.get(node.name, -1), order[user])

    program = Program(input=placeholders[0].name, output=result.name)
    constants: dict[fx.Node, Any] = {}
    boxes: dict[str, Box] = {placeholders[0].name: (lower, upper)}
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node not in variable:
            constants[node] = _constant(node, graph_module, constants, boxes)
            continue
        inputs = tuple(dict.fromkeys(n for n in node.all_input_nodes if n in variable))
        if node.op == "call_module":
            module = graph_module.get_submodule(str(node.target))
            ops = _module_ops(node, module, inputs)
        elif node.op in ("call_function", "call_method"):
            ops = [_function_op(node, graph_module, inputs, constants)]
        else:
            raise _unsupported(f"the graph operation {node.op!r}", node)
        for op in ops:
            boxes[op.name] = op.interval([boxes[i] for i in op.inputs])
            program.ops.append(op)
            for name in op.inputs:
                # Internal steps (a norm-act's batch norm) are read only by the next op.
                if name != result.name and last_use.get(name, order[node]) <= order[node] and not keep(name):
                    boxes.pop(name, None)
    return program, boxes


def _constant(
    node: fx.Node, graph_module: fx.GraphModule, constants: dict[fx.Node, Any], boxes: dict[str, Box]
) -> Any:
    """The value of a node that does not depend on the input's values."""
    if node.op == "get_attr":
        return _attribute(graph_module, str(node.target))

    def value(n: fx.Node) -> Any:
        if n in constants:
            return constants[n]
        return boxes[n.name][0]  # a shape query on a bounded tensor: its lower bound has the shape

    args = fx.map_arg(node.args, value)
    kwargs = fx.map_arg(node.kwargs, value)
    return _run_target(node, graph_module)(*args, **kwargs)
