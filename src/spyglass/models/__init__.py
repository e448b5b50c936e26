"""Models: the zoo, the ``VisionModel`` wrapper, and the machinery the methods share on them.

- :func:`load` and :class:`VisionModel`: models by name or file, taking ``[0, 1]`` images;
- :func:`save`: a spec-built model (e.g. a 1-Lipschitz classifier) to a file :func:`load` reads;
- :func:`named_layers`, :func:`get_layer`: one naming of layers, one error for a wrong name;
- :func:`probe_layers`: what each layer outputs, from one forward pass;
- :func:`hooked`: hooks for the length of a ``with`` block, always removed;
- :func:`trace`: the model as a runnable ``torch.fx`` graph;
- :func:`split` and :func:`list_layers`: the model cut ``f = h ∘ g`` at a layer;
- :func:`feature_layout` and :func:`default_layer`: token grids read as feature maps, and the
  layer the methods read by default.
"""

from spyglass.models.efficientnet_lite import rename_lite_keys
from spyglass.models.feature_maps import FeatureLayout, default_layer, feature_layout, layer_layouts
from spyglass.models.files import save
from spyglass.models.hooks import HOOK_KINDS, HookKind, hooked
from spyglass.models.layers import get_layer, named_layers
from spyglass.models.probing import is_feature_map, output_shape, probe_layers
from spyglass.models.split import LayerInfo, list_layers, split
from spyglass.models.tracing import TracingError, trace
from spyglass.models.vision_model import Predictions, VisionModel
from spyglass.models.zoo import DEFAULT_MODEL, WeightsUnavailableError, available_models, load

__all__ = [
    "DEFAULT_MODEL",
    "HOOK_KINDS",
    "FeatureLayout",
    "HookKind",
    "LayerInfo",
    "Predictions",
    "TracingError",
    "VisionModel",
    "WeightsUnavailableError",
    "available_models",
    "default_layer",
    "feature_layout",
    "get_layer",
    "hooked",
    "is_feature_map",
    "layer_layouts",
    "list_layers",
    "load",
    "named_layers",
    "output_shape",
    "probe_layers",
    "rename_lite_keys",
    "save",
    "split",
    "trace",
]
