"""Verified bounds of a network's outputs over a box of inputs: IBP and CROWN, on the traced graph.

EVA (issue 13) bounds a classifier over every perturbation of an L∞ ball. This package
is the engine: a small interpreter over the ``torch.fx`` graph of
:func:`spyglass.models.trace`, one rule per operation, each tested against a slow
float64 reference written neuron by neuron (as zennit tests its rules).

- :func:`interval_bounds`: interval bound propagation (IBP), about the cost of two
  forward passes; a specification ``C`` (bounds of ``C @ logits``, e.g. the margins
  ``f_j - f_c``) is folded into the last affine layer.
- :func:`linear_bounds`: CROWN's backward linear relaxation, intersected with IBP at
  every op and at the output, so it is never looser than IBP.
- :func:`layer_bounds`: the bounds at every node (bound width against depth).
- :class:`UnsupportedOperationError`: an operation without a rule, named with its node;
  never a wrong bound.

Why our own: the PyPI ``auto-lirpa`` (0.3) cannot be installed with current torch (it
pins torch < 1.13 and imports numpy modules removed in numpy 2); ``bound-propagation`` is
GPL and has no convolutions.

Supported operations: ``Linear``, ``Conv1d/2d/3d`` (stride, padding of any mode,
dilation, groups, depthwise; timm's TF-"same" ``Conv2dSame``), ``BatchNorm1d/2d/3d``
from running statistics (timm's ``BatchNormAct2d`` as batch norm, dropout, activation),
ReLU, ReLU6 and Hardtanh, LeakyReLU, clamp, SiLU, GELU, Sigmoid, Tanh, max, average and
adaptive pooling (timm's ``MaxPool2dSame`` and ``AvgPool2dSame`` too), ``mean``/``sum``,
padding (``F.pad``, padding modules, timm's ``pad_same``), sums of tensors,
concatenation and stacking, flatten/reshape/view/permute/transpose/squeeze/indexing,
addition, subtraction, multiplication and division by constants and matrix products
with constants (a ``VisionModel``'s normalisation among them), ``Identity`` and dropout
(eval). Not supported: products of two bounded tensors (attention, squeeze-excitation
gates), ``LayerNorm``, softmax; cut the model after them with
:func:`spyglass.models.split` and bound the rest.

A model is bounded as the function it computes in eval mode (batch norm from its
running statistics, dropout off), which is what tracing records. Bounds are sound in
exact arithmetic; floating-point rounding is not accounted for.

Examples
--------
>>> import torch
>>> from spyglass import bounds
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> x = torch.rand(1, 3)
>>> low, high = bounds.interval_bounds(model, x - 0.1, x + 0.1)
>>> tight_low, tight_high = bounds.linear_bounds(model, x - 0.1, x + 0.1)
>>> bool((low <= tight_low).all() and (tight_high <= high).all())
True
>>> y = model(x)
>>> bool((tight_low <= y).all() and (y <= tight_high).all())
True
"""

from spyglass.bounds._graph import UnsupportedOperationError
from spyglass.bounds.interval import interval_bounds
from spyglass.bounds.linear import layer_bounds, linear_bounds

__all__ = ["UnsupportedOperationError", "interval_bounds", "layer_bounds", "linear_bounds"]
