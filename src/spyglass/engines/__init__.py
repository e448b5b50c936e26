"""The shared engines every method is built on (DESIGN.md, "The three shared engines").

- :func:`batched_forward`: the model's outputs on many inputs, with no gradient.
- :func:`batched_gradients`: the gradient of an objective with respect to the input, and
  :func:`iter_gradients`, the same batch by batch for methods that reduce as they go.

Inputs are a tensor or an :class:`InputSource` that builds each batch on demand, so that
methods evaluating many variants of each image never hold them all in memory.

Both stream the inputs in batches of ``batch_size``, so memory is bounded by the batch,
not by the number of inputs; both run the model in eval mode and hand it back as found.

- :func:`perturbation_scores`: the perturbation engine of the black-box methods, the
  model's scores on every image under every mask, streamed the same way.
"""

from spyglass.engines.forward import batched_forward, iter_batches
from spyglass.engines.gradients import batched_gradients, iter_gradients
from spyglass.engines.perturbation import (
    Perturbation,
    UpsampledMasks,
    amplitude,
    blurring,
    inpainting,
    perturbation_scores,
)
from spyglass.engines.sources import InputSource
from spyglass.engines.state import inference_mode

__all__ = [
    "InputSource",
    "Perturbation",
    "UpsampledMasks",
    "amplitude",
    "batched_forward",
    "batched_gradients",
    "blurring",
    "inference_mode",
    "inpainting",
    "iter_batches",
    "iter_gradients",
    "perturbation_scores",
]
