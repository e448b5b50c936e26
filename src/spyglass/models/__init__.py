"""Models: the zoo, the ``VisionModel`` wrapper, and the split ``f = h ∘ g`` at a layer."""

from spyglass.models.efficientnet_lite import rename_lite_keys
from spyglass.models.split import LayerInfo, list_layers, split
from spyglass.models.vision_model import Predictions, VisionModel
from spyglass.models.zoo import DEFAULT_MODEL, WeightsUnavailableError, available_models, load

__all__ = [
    "DEFAULT_MODEL",
    "LayerInfo",
    "Predictions",
    "VisionModel",
    "WeightsUnavailableError",
    "available_models",
    "list_layers",
    "load",
    "rename_lite_keys",
    "split",
]
