"""Backward substitution of linear bounds through the ops of a program (CROWN's engine).

Coefficients ``Λ`` of shape ``(N, K, *shape)`` stand for the ``K`` linear functions
``Λ_k · v`` of an op's value ``v``. Going back through an op:

- affine ``v = W x + b``: ``Λ · v = (Wᵀ Λ) · x + Λ · b``; ``Wᵀ Λ`` is the op's
  vector-Jacobian product (``torch.func.vjp``, batched over ``K`` with ``vmap``) and
  ``b`` its value at zero, so one code path serves every affine op;
- element-wise ``v = f(x)`` with ``a_l x + b_l <= f(x) <= a_u x + b_u``: for the lower
  bound, ``Λ⁺ a_l + Λ⁻ a_u`` (``Λ⁺ = max(Λ, 0)``, ``Λ⁻ = min(Λ, 0)``) and the intercepts
  likewise; the upper bound swaps the lines;
- an op that is not processed (max pooling, or any op outside the requested part of
  the graph) is *concretised* at its box ``[l, u]``:
  ``Λ · v >= Λ · c - |Λ| · r`` with ``c = (l + u) / 2``, ``r = (u - l) / 2``.

Lower and upper coefficients are one tensor while the graph is affine (they only split
at the first relaxation), which halves the work of the affine tail.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spyglass.bounds._graph import Box, Op, Program

__all__: list[str] = []

Relaxation = tuple[Tensor, Tensor, Tensor, Tensor]


def _dot(coefficients: Tensor, values: Tensor) -> Tensor:
    """``(N, K, *shape) · (N, *shape) -> (N, K)``."""
    return (coefficients * values.unsqueeze(1)).flatten(2).sum(2)


def concretise(low: Tensor, high: Tensor, box: Box) -> tuple[Tensor, Tensor]:
    """Bounds of ``low · v`` (from below) and ``high · v`` (from above) for ``v`` in ``box``."""
    centre = (box[0] + box[1]) / 2
    radius = (box[1] - box[0]) / 2
    if low is high:
        middle, spread = _dot(low, centre), _dot(low.abs(), radius)
        return middle - spread, middle + spread
    return _dot(low, centre) - _dot(low.abs(), radius), _dot(high, centre) + _dot(high.abs(), radius)


def _transpose(op: Op, coefficients: Tensor, boxes: dict[str, Box]) -> tuple[tuple[Tensor, ...], Tensor]:
    """``Wᵀ Λ`` for each input of an affine op, and ``Λ · b``."""
    primals = tuple(torch.zeros_like(boxes[name][0]) for name in op.inputs)
    at_zero, vjp = torch.func.vjp(op.call, *primals)  # type: ignore[misc]
    transposed = torch.func.vmap(vjp, in_dims=1, out_dims=1)(coefficients.contiguous())
    return tuple(transposed), _dot(coefficients, at_zero)


def _add(pending: dict[str, tuple[Tensor, Tensor]], name: str, low: Tensor, high: Tensor) -> None:
    if name not in pending:
        pending[name] = (low, high)
        return
    old_low, old_high = pending[name]
    if old_low is old_high and low is high:
        total = old_low + low
        pending[name] = (total, total)
    else:
        pending[name] = (old_low + low, old_high + high)


def backward(
    program: Program,
    boxes: dict[str, Box],
    target: str,
    coefficients: Tensor,
    process: Callable[[Op], bool],
    relaxations: dict[str, Relaxation],
) -> tuple[Tensor, Tensor]:
    """Bounds ``(N, K)`` of ``coefficients · value(target)``, by substitution back to the input.

    Ops for which ``process`` is false are concretised at their box; the input is
    concretised at its box at the end. ``relaxations`` caches each activation's lines
    (they depend only on its input's box, fixed once computed).
    """
    index = {op.name: i for i, op in enumerate(program.ops)}
    pending: dict[str, tuple[Tensor, Tensor]] = {target: (coefficients, coefficients)}
    n, k = coefficients.shape[:2]
    low_bias = coefficients.new_zeros(n, k)
    high_bias = coefficients.new_zeros(n, k)
    for op in reversed(program.ops[: index[target] + 1]):
        if op.name not in pending:
            continue
        low, high = pending.pop(op.name)
        if not process(op) or op.kind == "monotone":
            below, above = concretise(low, high, boxes[op.name])
            low_bias, high_bias = low_bias + below, high_bias + above
        elif op.kind in ("isotone", "signed"):
            if low is high:
                transposed, bias = _transpose(op, low, boxes)
                for name, coefficient in zip(op.inputs, transposed, strict=True):
                    _add(pending, name, coefficient, coefficient)
                low_bias, high_bias = low_bias + bias, high_bias + bias
            else:
                both, bias = _transpose(op, torch.cat([low, high], 1), boxes)
                for name, coefficient in zip(op.inputs, both, strict=True):
                    _add(pending, name, coefficient[:, :k], coefficient[:, k:])
                low_bias, high_bias = low_bias + bias[:, :k], high_bias + bias[:, k:]
        else:
            assert op.activation is not None
            if op.name not in relaxations:
                relaxations[op.name] = op.activation.relaxation(*boxes[op.inputs[0]])
            a_l, b_l, a_u, b_u = (t.unsqueeze(1) for t in relaxations[op.name])
            positive, negative = low.clamp(min=0), low.clamp(max=0)
            new_low = positive * a_l + negative * a_u
            low_bias = low_bias + (positive * b_l + negative * b_u).flatten(2).sum(2)
            positive, negative = high.clamp(min=0), high.clamp(max=0)
            new_high = positive * a_u + negative * a_l
            high_bias = high_bias + (positive * b_u + negative * b_l).flatten(2).sum(2)
            _add(pending, op.inputs[0], new_low, new_high)
    if program.input in pending:
        low, high = pending.pop(program.input)
        below, above = concretise(low, high, boxes[program.input])
        low_bias, high_bias = low_bias + below, high_bias + above
    return low_bias, high_bias
