"""The shared engines every method is built on (DESIGN.md, "The three shared engines").

- :func:`batched_forward`: the model's outputs on many inputs, with no gradient.
- :func:`batched_gradients`: the gradient of an objective with respect to the input.

Both stream the inputs in batches of ``batch_size``, so memory is bounded by the batch,
not by the number of inputs; both run the model in eval mode and hand it back as found.
"""

from spyglass.engines.forward import batched_forward, iter_batches
from spyglass.engines.gradients import batched_gradients

__all__ = ["batched_forward", "batched_gradients", "iter_batches"]
