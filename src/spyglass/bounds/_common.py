"""What the public bound functions share: argument checks, the graph, the specification."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from spyglass.bounds._backward import Relaxation, backward
from spyglass.bounds._graph import (
    _RESHAPE_FUNCTIONS,
    _RESHAPE_METHODS,
    _RESHAPE_MODULES,
    Box,
    Op,
    Program,
    compile_graph,
    variable_nodes,
)
from spyglass.engines import eval_mode
from spyglass.models import TracingError, trace

__all__: list[str] = []


def check_box(lower: object, upper: object) -> tuple[Tensor, Tensor]:
    """``lower`` and ``upper`` as tensors of one shape, floating, finite, ``lower <= upper``."""
    for name, value in (("lower", lower), ("upper", upper)):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor (a bound of the model's input); got {type(value).__name__}"
            )
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
        if value.ndim < 2:
            raise ValueError(
                f"{name} must have a batch dimension first, e.g. (N, C, H, W) or (N, features); "
                f"got shape {tuple(value.shape)}"
            )
    assert isinstance(lower, Tensor) and isinstance(upper, Tensor)
    if lower.shape != upper.shape:
        raise ValueError(
            f"lower and upper must have the same shape; got {tuple(lower.shape)} and {tuple(upper.shape)}"
        )
    if lower.dtype != upper.dtype or lower.device != upper.device:
        raise ValueError(
            f"lower and upper must share dtype and device; got {lower.dtype} on {lower.device} "
            f"and {upper.dtype} on {upper.device}"
        )
    if not (torch.isfinite(lower).all() and torch.isfinite(upper).all()):
        raise ValueError("lower and upper must be finite (no NaN or infinity)")
    if (lower > upper).any():
        count = int((lower > upper).sum())
        raise ValueError(
            f"lower must be <= upper everywhere; it is larger at {count} of {lower.numel()} entries"
        )
    return lower.detach(), upper.detach()


def graph_of(model: object) -> fx.GraphModule:
    """``model`` itself if it is a graph module (``models.split``'s halves), else its trace."""
    if isinstance(model, fx.GraphModule):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    try:
        return trace(model)
    except TracingError:
        # A module that tracing keeps whole inside a network (timm's Conv2dSame) cannot be the
        # root of a trace; inside a container it is one node.
        try:
            return trace(nn.Sequential(model))
        except TracingError:
            pass
        raise


def check_dtype(model: nn.Module, lower: Tensor) -> None:
    for parameter in model.parameters():
        if parameter.is_floating_point() and parameter.dtype != lower.dtype:
            raise ValueError(
                f"the bounds are computed in the inputs' dtype, {lower.dtype}, but the model's parameters "
                f"are {parameter.dtype}; convert one to the other (model.to({lower.dtype}) or lower.to(...))"
            )
        return


@contextmanager
def bounding(model: nn.Module) -> Iterator[None]:
    """Eval-mode semantics and no autograd graph, the model's flags restored after."""
    with eval_mode(model), torch.no_grad():
        yield


def compile_checked(
    graph: fx.GraphModule, lower: Tensor, upper: Tensor, keep: Callable[[str], bool]
) -> tuple[Program, dict[str, Box]]:
    """:func:`compile_graph`, with a model that cannot run on the input's shape reported plainly."""
    try:
        return compile_graph(graph, lower, upper, keep)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"the model cannot run on inputs of shape {tuple(lower.shape)} ({first_line}); lower and upper "
            "must have the shape of the model's input, batch first"
        ) from error


def _is_reshape(node: fx.Node, graph: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(graph.get_submodule(str(node.target)), (*_RESHAPE_MODULES, _DropoutNd))
    if node.op == "call_method":
        return node.target in _RESHAPE_METHODS
    return node.op == "call_function" and node.target in _RESHAPE_FUNCTIONS


def fold_nodes(graph: fx.GraphModule) -> tuple[set[str], set[str]]:
    """The trailing reshapes and the op before them (where a spec is folded), and the boxes to keep.

    Returns the names of the ops that the specification goes back through, and the
    names whose boxes the fold reads (to keep them while IBP frees the others).
    """
    variable = variable_nodes(graph.graph)
    output = next(n for n in graph.graph.nodes if n.op == "output")
    node = output.args[0]
    assert isinstance(node, fx.Node)
    through: set[str] = set()
    keep = {node.name}
    while True:
        inputs = [n for n in node.all_input_nodes if n in variable]
        if node.op == "placeholder":
            break
        through.add(node.name)
        keep.update(n.name for n in inputs)
        if not (_is_reshape(node, graph) and len(inputs) == 1):
            break
        node = inputs[0]
    return through, keep


def check_spec(spec: object, output: Tensor) -> Tensor:
    """``spec`` as ``(N, K, classes)`` in the output's dtype, or a clear error."""
    n = output.shape[0]
    if output.ndim != 2:
        raise ValueError(
            "a spec applies to outputs of shape (N, classes); this model's output has shape "
            f"{tuple(output.shape)}"
        )
    classes = output.shape[1]
    expected = f"a ({'K'}, {classes}) matrix or a ({n}, K, {classes}) batch of them"
    if not isinstance(spec, Tensor):
        raise TypeError(f"spec must be a torch.Tensor, {expected}; got {type(spec).__name__}")
    if spec.ndim == 2 and spec.shape[1] == classes and spec.shape[0] > 0:
        spec = spec.unsqueeze(0).expand(n, -1, -1)
    elif not (spec.ndim == 3 and spec.shape[0] == n and spec.shape[2] == classes and spec.shape[1] > 0):
        raise ValueError(f"spec must be {expected}; got shape {tuple(spec.shape)}")
    if not torch.isfinite(spec).all():
        raise ValueError("spec must be finite (no NaN or infinity)")
    return spec.detach().to(dtype=output.dtype, device=output.device)


def identity_coefficients(box: Box) -> Tensor:
    """``(N, K, *shape)`` coefficients of every entry of a value, ``K`` = entries per sample."""
    n, shape = box[0].shape[0], box[0].shape[1:]
    k = box[0][0].numel()
    eye = torch.eye(k, dtype=box[0].dtype, device=box[0].device)
    return eye.view(1, k, *shape).expand(n, k, *shape)


def spec_interval(
    program: Program, boxes: dict[str, Box], spec: Tensor, through: set[str]
) -> tuple[Tensor, Tensor]:
    """IBP of ``spec @ output``, the spec folded into the last affine op (through trailing reshapes)."""

    def process(op: Op) -> bool:
        return op.name in through and op.kind in ("isotone", "signed")

    relaxations: dict[str, Relaxation] = {}
    return backward(program, boxes, program.output, spec, process, relaxations)


def checked_result(bounds: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The bounds, unless they overflowed: ``inf - inf`` is NaN, and NaN is no bound."""
    low, high = bounds
    if torch.isnan(low).any() or torch.isnan(high).any():
        raise ValueError(
            f"the bounds overflowed ({low.dtype} cannot hold them: infinite intermediate bounds met with "
            "opposite signs); use a smaller box, float64 (model.double() and float64 bounds), or bound "
            "a part of the network (spyglass.models.split)"
        )
    return low, high
