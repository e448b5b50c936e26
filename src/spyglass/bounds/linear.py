"""Linear relaxation by backward substitution (CROWN), intersected with IBP everywhere."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from spyglass.bounds._backward import Relaxation, backward
from spyglass.bounds._common import (
    bounding,
    check_box,
    check_dtype,
    check_spec,
    checked_result,
    compile_checked,
    fold_nodes,
    graph_of,
    identity_coefficients,
    spec_interval,
)
from spyglass.bounds._graph import Box, Op, Program
from spyglass.validation import check_choice, check_int

__all__ = ["layer_bounds", "linear_bounds"]

DEFAULT_MEMORY_LIMIT = 2 * 1024**3


def _all(op: Op) -> bool:
    return True


def _intersect(a: Box, b: Box) -> Box:
    return torch.maximum(a[0], b[0]), torch.minimum(a[1], b[1])


def _coefficient_bytes(program: Program, boxes: dict[str, Box], targets: dict[str, int]) -> tuple[int, str]:
    """The largest coefficient memory of one backward pass, and the op it starts from.

    A pass from an op with ``K`` rows holds ``(N, K, *shape)`` lower and upper
    coefficients at each op it goes back through, and the transposition concatenates
    them: about ``4 N K n`` numbers for the widest ``n`` entries per sample on the way.
    """
    widest: dict[str, int] = {program.input: boxes[program.input][0][0].numel()}
    largest, where = 0, ""
    n, size = boxes[program.input][0].shape[0], boxes[program.input][0].element_size()
    for op in program.ops:
        own = boxes[op.name][0][0].numel()
        widest[op.name] = max([own, *(widest[name] for name in op.inputs)])
        if op.name in targets:
            need = 4 * n * targets[op.name] * widest[op.name] * size
            if need > largest:
                largest, where = need, op.name
    return largest, where


def _crown(
    model: nn.Module,
    lower: Tensor,
    upper: Tensor,
    spec: Tensor | None,
    intermediate: str,
    memory_limit: int,
    intersect: bool = True,
) -> tuple[Program, dict[str, Box], Box]:
    """CROWN's boxes at every op and its output bounds (``intersect=False``: CROWN alone at the output)."""
    graph = graph_of(model)
    lower, upper = check_box(lower, upper)
    check_dtype(graph, lower)
    through, _ = fold_nodes(graph)
    with bounding(graph):
        program, ibp = compile_checked(graph, lower, upper, lambda name: True)
        output_box = ibp[program.output]
        coefficients = None if spec is None else check_spec(spec, output_box[0])
        # The inputs of the relaxed ops need bounds; affine ops do not.
        needs = {name for op in program.ops if op.kind in ("activation", "monotone") for name in op.inputs}
        needs.discard(program.input)
        targets = {name: ibp[name][0][0].numel() for name in needs} if intermediate == "crown" else {}
        rows = output_box[0][0].numel() if coefficients is None else coefficients.shape[1]
        targets[program.output] = max(targets.get(program.output, 0), rows)
        need, where = _coefficient_bytes(program, ibp, targets)
        if need > memory_limit:
            raise ValueError(
                f"CROWN would hold about {need / 1024**3:.3g} GiB of linear coefficients (the pass from node "
                f"{where!r}), over memory_limit = {memory_limit / 1024**3:.3g} GiB. Use intermediate='ibp' "
                "(CROWN-IBP: intermediate bounds by IBP, CROWN at the output only), a smaller input, a "
                "larger memory_limit, or EVA's bounds='hybrid' mode, which bounds only the end of the network"
            )
        boxes: dict[str, Box] = {program.input: (lower, upper)}
        relaxations: dict[str, Relaxation] = {}
        for op in program.ops:
            box = op.interval([boxes[name] for name in op.inputs])
            if op.name in needs and intermediate == "crown":
                start = identity_coefficients(box)
                low, high = backward(program, boxes | {op.name: box}, op.name, start, _all, relaxations)
                box = _intersect(box, (low.view_as(box[0]), high.view_as(box[1])))
            boxes[op.name] = box
        final = boxes[program.output]
        start = identity_coefficients(final) if coefficients is None else coefficients
        low, high = backward(program, boxes, program.output, start, _all, relaxations)
        if coefficients is None:
            result = (low.view_as(final[0]), high.view_as(final[1]))
            intervals = [final, ibp[program.output]]
        else:
            result = (low, high)
            intervals = [spec_interval(program, bounds, coefficients, through) for bounds in (boxes, ibp)]
        if intersect:
            # IBP from the tightened boxes, and plain IBP: equal or tighter in exact arithmetic,
            # and with both the result is never looser than interval_bounds' even after rounding.
            for interval in intervals:
                result = _intersect(result, interval)
        return program, boxes, result


def linear_bounds(
    model: nn.Module,
    lower: Tensor,
    upper: Tensor,
    spec: Tensor | None = None,
    *,
    intermediate: Literal["crown", "ibp"] = "crown",
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> tuple[Tensor, Tensor]:
    """Bounds of the model's output over the box ``[lower, upper]``, by CROWN's linear relaxation.

    Each output ``k`` is bounded by a linear function of the input, found by backward
    substitution: starting from ``Λ = C`` (the spec, or the identity) at the output,
    ``Λ ← Wᵀ Λ`` through an affine op ``W x + b`` (collecting ``Λ · b``), and through an
    element-wise ``f`` with lines ``a_l x + b_l <= f(x) <= a_u x + b_u`` on its input's
    box, ``Λ ← Λ⁺ a_l + Λ⁻ a_u`` for the lower bound (intercepts likewise; swapped for the
    upper bound). At the input, ``Λ · x >= Λ · c - |Λ| · r``. The lines need the bounds
    of each activation's input: with ``intermediate="crown"`` each is bounded the same
    way (a backward pass from that op), with ``"ibp"`` by IBP (CROWN-IBP).

    Relaxations: ReLU, ReLU6, LeakyReLU and clamps take the chord as the upper line and
    CROWN's adaptive lower line (slope 1 where ``u > -l``, else 0, for ReLU); Sigmoid,
    Tanh, SiLU and GELU take among the chord and the tangents at ``l``, ``(l + u) / 2``
    and ``u`` the best line at the midpoint, with intercepts from a 33-point grid widened
    by ``sup|f''| h² / 8`` so that they are sound. Max pooling is bounded by its interval
    (a line of slope zero), the rest of the graph stays linear.

    The result is intersected with IBP's at every intermediate op and at the output, so
    it is never looser than :func:`interval_bounds`: CROWN alone can be (for
    ``y = -ReLU(x)``, ``x ∈ [-1, 2]``, IBP gives ``[-2, 0]``, CROWN ``[-2, 1]``).

    Why our own: auto-LiRPA 0.3 cannot be installed with current torch (it pins
    torch < 1.13 and imports numpy modules removed in numpy 2), and ``bound-propagation``
    is GPL and has no convolutions. Each rule here is tested against a slow float64
    reference.

    Parameters
    ----------
    model, lower, upper, spec
        As in :func:`interval_bounds`; CROWN needs no folding, the spec is where the
        backward pass starts.
    intermediate
        ``"crown"`` (tighter) or ``"ibp"`` (CROWN-IBP: far cheaper on large networks).
    memory_limit
        Bytes the linear coefficients may take (default 2 GiB). A pass from an op with
        ``K`` entries holds about ``4 N K n`` numbers, ``n`` the widest op before it; over
        the limit, a ``ValueError`` says so before anything is computed.

    Returns
    -------
    (lower_out, upper_out)
        As in :func:`interval_bounds`.

    Raises
    ------
    ValueError
        As :func:`interval_bounds`, and when the coefficients would exceed
        ``memory_limit`` (use ``intermediate="ibp"`` or EVA's ``bounds="hybrid"``).

    Examples
    --------
    >>> import torch
    >>> from spyglass.bounds import interval_bounds, linear_bounds
    >>> model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1))
    >>> with torch.no_grad():
    ...     for layer, w in ((model[0], 1.0), (model[2], -1.0)):
    ...         _ = layer.weight.fill_(w)
    ...         _ = layer.bias.zero_()
    >>> low, high = torch.tensor([[-1.0]]), torch.tensor([[2.0]])
    >>> [t.item() for t in linear_bounds(model, low, high)]
    [-2.0, 0.0]
    """
    intermediate = check_choice(intermediate, "intermediate", ("crown", "ibp"))  # type: ignore[assignment]
    memory_limit = check_int(memory_limit, "memory_limit", minimum=1, hint="bytes")
    return checked_result(_crown(model, lower, upper, spec, intermediate, memory_limit)[2])


def layer_bounds(
    model: nn.Module,
    lower: Tensor,
    upper: Tensor,
    *,
    method: Literal["ibp", "crown"] = "ibp",
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> dict[str, tuple[Tensor, Tensor]]:
    """The bounds at every node of the traced graph, in graph order.

    Keys are the ``torch.fx`` node names (the input's placeholder first, the output
    last); a leaf module that is two operations (timm's ``BatchNormAct2d``) adds its
    inner step as ``"<node>.bn"``. With ``method="crown"`` the inputs of activations and
    the output are bounded by CROWN ∩ IBP, and the other nodes by IBP from those.

    Parameters
    ----------
    model, lower, upper
        As in :func:`interval_bounds`.
    method
        ``"ibp"`` or ``"crown"`` (full CROWN: see :func:`linear_bounds`).
    memory_limit
        As in :func:`linear_bounds` (``method="crown"`` only).

    Returns
    -------
    dict
        Node name → ``(lower, upper)``, each of that node's shape (batch first). Every
        box is kept, so this needs the memory of all the network's activations, twice.

    Examples
    --------
    >>> import torch
    >>> from spyglass.bounds import layer_bounds
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> bounds = layer_bounds(model, torch.zeros(1, 2, 2), torch.ones(1, 2, 2))
    >>> list(bounds)
    ['input_1', '_0', '_1', '_2']
    >>> [tuple(low.shape) for low, _ in bounds.values()]
    [(1, 2, 2), (1, 4), (1, 3), (1, 3)]
    """
    method = check_choice(method, "method", ("ibp", "crown"))  # type: ignore[assignment]
    memory_limit = check_int(memory_limit, "memory_limit", minimum=1, hint="bytes")
    if method == "crown":
        program, boxes, output = _crown(model, lower, upper, None, "crown", memory_limit)
        boxes[program.output] = output
    else:
        graph = graph_of(model)
        lower, upper = check_box(lower, upper)
        check_dtype(graph, lower)
        with bounding(graph):
            program, boxes = compile_checked(graph, lower, upper, lambda name: True)
    names = [program.input, *(op.name for op in program.ops)]
    return {name: boxes[name] for name in names}
