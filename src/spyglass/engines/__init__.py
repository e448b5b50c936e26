"""The shared engines every method is built on (DESIGN.md, "The three shared engines").

- :func:`batched_forward`: the model's outputs on many inputs, with no gradient.
- :func:`batched_gradients`: the gradient of an objective with respect to the input, and
  :func:`iter_gradients`, the same batch by batch for methods that reduce as they go.

Inputs are a tensor or an :class:`InputSource` that builds each batch on demand, so that
methods evaluating many variants of each image never hold them all in memory.

Both stream the inputs in batches of ``batch_size``, so memory is bounded by the batch,
not by the number of inputs; both run the model in eval mode and hand it back as found.
"""

from spyglass.engines.forward import batched_forward, iter_batches
from spyglass.engines.gradients import batched_gradients, iter_gradients
from spyglass.engines.sources import InputSource
from spyglass.engines.state import inference_mode

__all__ = [
    "InputSource",
    "batched_forward",
    "batched_gradients",
    "inference_mode",
    "iter_batches",
    "iter_gradients",
]
