"""The shared engines every method is built on (DESIGN.md, "The three shared engines").

- :func:`batched_forward`: the model's outputs on many inputs, with no gradient.
- :func:`input_gradients`: the gradient of an objective with respect to one batch of
  inputs, in the mode the caller chooses and, with ``create_graph=True``, kept in the graph
  (for losses on explanations, as harmonization's);
  :func:`batched_gradients` the same for many inputs in eval mode, and
  :func:`iter_gradients` batch by batch for methods that reduce as they go.

Inputs are a tensor or an :class:`InputSource` that builds each batch on demand, so that
methods evaluating many variants of each image never hold them all in memory.

The batched routines stream the inputs in batches of ``batch_size``, so memory is bounded
by the batch, not by the number of inputs; they run the model in eval mode
(:func:`eval_mode`) and hand it back as found.

- :func:`perturbation_scores`: the perturbation engine of the black-box methods, the
  model's scores on every image under every mask, streamed the same way.
- :mod:`~spyglass.engines.grid`: which grid cell each pixel belongs to, each cell's box,
  and cell masks upsampled to pixels, the one definition every grid-based method uses.

``inference_mode`` is the deprecated former name of :func:`eval_mode` (it warns; removed
in the next release).
"""

from collections.abc import Callable
from contextlib import AbstractContextManager

from torch import nn

from spyglass.engines import state as _state
from spyglass.engines.forward import batched_forward, iter_batches
from spyglass.engines.gradients import GradientMode, batched_gradients, input_gradients, iter_gradients
from spyglass.engines.grid import cell_boxes, cell_of_pixel, cell_sums, cells_along, upsample_cells
from spyglass.engines.perturbation import (
    Perturbation,
    UpsampledMasks,
    amplitude,
    blurring,
    inpainting,
    perturbation_scores,
)
from spyglass.engines.sources import InputSource
from spyglass.engines.state import eval_mode, train_mode

__all__ = [
    "GradientMode",
    "InputSource",
    "Perturbation",
    "UpsampledMasks",
    "amplitude",
    "batched_forward",
    "batched_gradients",
    "blurring",
    "cell_boxes",
    "cell_of_pixel",
    "cell_sums",
    "cells_along",
    "eval_mode",
    "inpainting",
    "input_gradients",
    "iter_batches",
    "iter_gradients",
    "perturbation_scores",
    "train_mode",
    "upsample_cells",
]


def __getattr__(name: str) -> Callable[[nn.Module], AbstractContextManager[nn.Module]]:
    # The deprecated alias resolves through the state module, which warns when it is called.
    if name == "inference_mode":
        alias: Callable[[nn.Module], AbstractContextManager[nn.Module]] = getattr(_state, name)
        return alias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
