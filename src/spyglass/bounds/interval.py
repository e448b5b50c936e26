"""Interval bound propagation (IBP): a box in, a box out, one rule per operation."""

from __future__ import annotations

from torch import Tensor, nn

from spyglass.bounds._common import (
    bounding,
    check_box,
    check_dtype,
    check_spec,
    checked_result,
    compile_checked,
    fold_nodes,
    graph_of,
    spec_interval,
)

__all__ = ["interval_bounds"]


def interval_bounds(
    model: nn.Module, lower: Tensor, upper: Tensor, *, spec: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Bounds of the model's output over every input in the box ``[lower, upper]``, by IBP.

    Each operation of the traced graph maps a box to a box that contains its image:

    - affine ``y = W x + b`` (``Linear``, convolutions, ``BatchNorm`` in eval mode,
      scaling by constants, the normalisation of a ``VisionModel``): through the centre
      and the radius, ``c_y = W c + b`` and ``r_y = |W| r`` with ``c = (l + u) / 2``,
      ``r = (u - l) / 2``;
    - affine with non-negative coefficients (average pooling, means, padding, sums and
      concatenations of tensors, reshapes) and non-decreasing operations (ReLU, ReLU6,
      LeakyReLU, Sigmoid, Tanh, max pooling): ``[f(l), f(u)]``;
    - SiLU and GELU (not monotone): ``f`` at the end points and at the function's
      minimum when it lies in the box.

    Parameters
    ----------
    model
        Any ``nn.Module`` that :func:`spyglass.models.trace` can trace, or an
        ``fx.GraphModule`` (such as the halves of :func:`spyglass.models.split`, whose
        input is an activation tensor of any shape). A
        :class:`~spyglass.models.VisionModel` takes ``[0, 1]`` pixels; its normalisation
        is part of the graph. The model is bounded as the function it computes in eval
        mode (``BatchNorm`` from its running statistics, no dropout), whatever mode it
        is in; it is left as found.
    lower, upper
        Tensors of the model's input shape, batch first, ``lower <= upper``, in the dtype
        of the model's parameters (float64 for reference checks: ``model.double()``).
    spec
        ``None``: bounds of the outputs. A ``(K, classes)`` matrix ``C``, or a
        ``(N, K, classes)`` batch of them: bounds of ``C @ logits``. The matrix is folded
        into the last affine layer (``W ← C W``, ``b ← C b``, through trailing
        flatten/dropout/identity), which is tighter than multiplying the logits' box by
        ``C``: the logits' errors are correlated and the fold keeps that. If the output
        is not produced by an affine layer, the spec is applied to the output's box as
        an interval matrix product, ``C c ± |C| r``.

    Returns
    -------
    (lower_out, upper_out)
        ``(N, classes)`` (the output's shape), or ``(N, K)`` with a spec, in the inputs'
        dtype. Sound in exact arithmetic: every input of the box maps inside them.

    Raises
    ------
    UnsupportedOperationError
        (a ``ValueError``) An operation without a bound rule, named with its node.
    ValueError
        ``lower > upper`` somewhere, mismatched shapes, a spec of the wrong shape.

    Examples
    --------
    >>> import torch
    >>> from spyglass.bounds import interval_bounds
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
    ...     _ = model[0].bias.zero_()
    >>> low, high = interval_bounds(model, torch.zeros(1, 2), torch.ones(1, 2))
    >>> low.tolist(), high.tolist()
    ([[0.0, 0.0]], [[1.0, 2.0]])
    """
    graph = graph_of(model)
    lower, upper = check_box(lower, upper)
    check_dtype(graph, lower)
    through, kept = fold_nodes(graph) if spec is not None else (set(), set())
    with bounding(graph):
        program, boxes = compile_checked(graph, lower, upper, kept.__contains__)
        output = boxes[program.output]
        if spec is None:
            return checked_result(output)
        coefficients = check_spec(spec, output[0])
        return checked_result(spec_interval(program, boxes, coefficients, through))
