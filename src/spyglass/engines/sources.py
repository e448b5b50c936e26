"""Inputs that are produced batch by batch instead of held in memory.

Integrated Gradients evaluates ``N × steps`` interpolated images, SmoothGrad
``N × nb_samples`` noisy ones, a black-box method ``N × nb_masks`` perturbed ones.
Materialising them would make memory grow with the number of evaluations; instead a
method describes them as a :class:`InputSource` (a length and a way to build any slice
of rows) and the engines build one batch at a time. A plain tensor is already a source.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["InputSource"]


@runtime_checkable
class InputSource(Protocol):
    """Rows ``0 … len-1`` of model inputs, built on demand one slice at a time."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice) -> Tensor: ...
