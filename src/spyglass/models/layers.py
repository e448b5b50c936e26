"""Layer names: one way to name the sub-modules of a network, and one error when a name is wrong.

Every spyglass function that takes a ``layer`` (Grad-CAM, CRAFT, :func:`split`, the
feature-visualization objectives, hooks) names it the same way: the qualified name of a
sub-module as ``model.named_modules()`` gives it (``"layer4"``, ``"blocks.5.0"``),
relative to the *network* of a :class:`~spyglass.models.VisionModel` (whose sub-modules
live under ``network.``), so that a layer has the same name whether the network is
wrapped or not. The model itself is not a layer.
"""

from __future__ import annotations

import difflib

from torch import nn

from spyglass.models.vision_model import VisionModel

__all__ = ["get_layer", "named_layers"]


def _prefix(model: nn.Module) -> str:
    """What :func:`named_layers` strips: a VisionModel's network lives under ``network.``."""
    return "network." if isinstance(model, VisionModel) else ""


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every sub-module of ``model`` by its layer name, in the order ``named_modules`` lists them.

    Names are relative to the network of a :class:`~spyglass.models.VisionModel`; the
    model (and a VisionModel's network) itself is left out. A module registered under two
    names appears once, under the first.

    Examples
    --------
    >>> from spyglass import models
    >>> layers = models.named_layers(models.load())
    >>> list(layers)[:3]
    ['conv_stem', 'bn1', 'bn1.drop']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    prefix = _prefix(model)
    return {
        qualified[len(prefix) :]: module
        for qualified, module in model.named_modules()
        if qualified.startswith(prefix) and qualified != prefix.rstrip(".")
    }


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module of ``model`` called ``name`` (see :func:`named_layers` for the names).

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        No layer has that name; the message lists the closest names.

    Examples
    --------
    >>> from spyglass import models
    >>> model = models.load()
    >>> type(models.get_layer(model, "blocks.5")).__name__
    'Sequential'
    >>> models.get_layer(model, "block.5")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown layer 'block.5': ... Did you mean blocks.5, ...
    """
    if not isinstance(name, str):
        raise TypeError(f"layer must be a layer name (str); got {type(name).__name__}")
    layers = named_layers(model)
    module = layers.get(name)
    if module is not None:
        return module
    prefix = _prefix(model)
    if prefix and name.startswith(prefix) and name[len(prefix) :] in layers:
        hint = (
            f" Layer names are relative to the network: drop the {prefix!r} prefix ({name[len(prefix) :]!r})."
        )
    else:
        close = difflib.get_close_matches(name, list(layers), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        where = "relative to the network" if prefix else "those of model.named_modules()"
        hint += f" Layer names are {where} (see spyglass.models.list_layers(model))."
    label = model.name if isinstance(model, VisionModel) else type(model).__name__
    raise ValueError(f"unknown layer {name!r}: {label} has no sub-module of that name.{hint}")
