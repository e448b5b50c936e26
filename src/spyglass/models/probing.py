"""Probing layers: what each named layer outputs, from one forward pass.

Choosing a layer (Grad-CAM's last feature map, CRAFT's earlier stage for its recursion,
the layer list of the CLI) needs to know what the layers output on an image. One forward
pass with a hook on every layer tells it, far cheaper than tracing the model per layer.
The model is left as found: its train/eval flags restored, no hook left, no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

import torch
from torch import Tensor, nn

from spyglass.engines.forward import model_device
from spyglass.engines.state import eval_mode
from spyglass.models.hooks import hooked
from spyglass.models.layers import get_layer, named_layers
from spyglass.models.vision_model import VisionModel

__all__ = ["is_feature_map", "output_shape", "probe_layers"]

T = TypeVar("T")

_PLAIN_MODULE_SIZE = (224, 224)


def _input_size(model: nn.Module, input_size: tuple[int, int] | None) -> tuple[int, int]:
    """``input_size``, else a VisionModel's own, else 224 px."""
    if input_size is not None:
        if (
            not isinstance(input_size, (tuple, list))
            or len(input_size) != 2
            or not all(
                isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in input_size
            )
        ):
            raise ValueError(f"input_size must be (H, W), two positive ints; got {input_size!r}")
        return (int(input_size[0]), int(input_size[1]))
    if isinstance(model, VisionModel):
        return model.input_size
    return _PLAIN_MODULE_SIZE


def output_shape(output: object) -> tuple[int, ...] | None:
    """The per-image shape of a layer's output (without the batch dimension); None unless a tensor."""
    return tuple(output.shape[1:]) if isinstance(output, Tensor) else None


def is_feature_map(shape: tuple[int, ...]) -> bool:
    """Whether a per-image output shape is a convolutional feature map ``(C, h, w)`` with ``h, w > 1``."""
    return len(shape) == 3 and shape[1] > 1 and shape[2] > 1


@overload
def probe_layers(
    model: nn.Module,
    images: Tensor | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, tuple[int, ...]]: ...


@overload
def probe_layers(
    model: nn.Module,
    images: Tensor | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    names: Iterable[str] | None = None,
    summary: Callable[[Any], T | None],
) -> dict[str, T]: ...


def probe_layers(
    model: nn.Module,
    images: Tensor | None = None,
    *,
    input_size: tuple[int, int] | None = None,
    names: Iterable[str] | None = None,
    summary: Callable[[Any], Any] = output_shape,
) -> dict[str, Any]:
    """A summary of what each layer outputs, in the order their forward passes finish.

    Parameters
    ----------
    model
        Any ``nn.Module`` taking ``(N, 3, H, W)`` images; a :class:`VisionModel` takes them in
        ``[0, 1]``.
    images
        The batch to run; default one blank (zero) image of ``input_size``.
    input_size
        ``(H, W)`` of the blank image; default the VisionModel's input size, 224 px for a plain
        module. Ignored when ``images`` is given.
    names
        The layers to probe (see :func:`~spyglass.models.named_layers`); default all.
    summary
        Called on a layer's output as the module returned it (a tensor, a tuple, anything);
        what it returns is recorded, and ``None`` means "not this call". Only the first call
        of a module with a non-``None`` summary is kept. Default :func:`output_shape`: the
        per-image shape of a tensor output, so layers that return tuples are left out.

    Returns
    -------
    dict
        ``{layer name: summary}`` for the layers that ran and were summarised.

    Examples
    --------
    >>> from spyglass import models
    >>> shapes = models.probe_layers(models.load())
    >>> shapes["blocks.5"], shapes["classifier"]
    ((192, 7, 7), (1000,))
    >>> models.probe_layers(models.load(), names=["bn2"], summary=lambda out: float(out.min()) >= 0)
    {'bn2': True}
    """
    if images is None:
        size = _input_size(model, input_size)
        batch = torch.zeros(1, 3, *size, device=model_device(model))
    elif not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, 3, H, W) tensor; got {got}")
    else:
        batch = images.to(model_device(model))
    if not callable(summary):
        raise TypeError(f"summary must be a callable (output) -> value or None; got {type(summary).__name__}")
    if names is None:
        layers = named_layers(model)
    elif isinstance(names, str):
        raise TypeError(f"names must be a list of layer names, not one string; got {names!r}")
    else:
        layers = {name: get_layer(model, name) for name in names}
    recorded: dict[str, Any] = {}

    def recorder(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_module: nn.Module, _args: object, output: object) -> None:
            if name not in recorded:
                value = summary(output)
                if value is not None:
                    recorded[name] = value

        return record

    hooks = [(module, recorder(name)) for name, module in layers.items()]
    with hooked(model, hooks, kind="forward"), eval_mode(model), torch.no_grad():
        model(batch)
    return recorded
