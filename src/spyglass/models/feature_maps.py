"""Feature maps of every family: convolutional maps, token sequences and channels-last grids.

Grad-CAM, CRAFT (its concepts and concept maps) and the feature-visualization objectives read
a layer as a feature map ``(N, C, h, w)``: ``h × w`` positions on the image, ``C`` features at
each. Convolutional networks output that directly; vision transformers output token sequences
``(N, t + h·w, C)`` (``t`` class/register tokens, then the patch tokens in row-major order);
Swin-style models output channels-last grids ``(N, h, w, C)``. :class:`FeatureLayout` records
which of the three a layer outputs and converts between the layer's own tensor and the map,
with the prefix tokens set aside (not dropped: :meth:`FeatureLayout.rows` keeps them, and
:meth:`FeatureLayout.from_rows` rebuilds the layer's tensor exactly).

How a layout is found (:func:`feature_layout`), from the layer's output shape on an image of
the model's input size ``(H, W)`` — no per-architecture code: a grid ``h × w`` is *on the
image* when one integer stride ``s`` gives ``h ∈ {⌊H/s⌋, ⌈H/s⌉}`` and ``w ∈ {⌊W/s⌋, ⌈W/s⌉}``
with ``h, w > 1``.

- ``(C, h, w)`` with ``h, w > 1``: channels first (every such shape, as before);
- ``(h, w, C)`` whose first two sides are on the image and last two are not: channels last;
- ``(T, C)``: tokens, with ``t`` the *smallest* count in ``0 … 64`` for which ``T − t`` factors
  as a grid ``h × w`` on the image (``197 = 1 + 14·14`` at 224 px and patch 16: one class token;
  ``201``: five prefix tokens, a class token and four registers).

The default layer of the methods (:func:`default_layer`) is chosen by one rule for every
family; see its documentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from spyglass.engines.forward import model_device
from spyglass.engines.state import eval_mode
from spyglass.models.hooks import hooked
from spyglass.models.layers import named_layers
from spyglass.models.probing import _input_size, probe_layers

__all__ = ["FeatureLayout", "LayoutKind", "default_layer", "feature_layout", "layer_layouts"]

LayoutKind = Literal["channels_first", "channels_last", "tokens"]

_MAX_PREFIX_TOKENS = 64


@dataclass(frozen=True)
class FeatureLayout:
    """How a layer's output ``(N, ...)`` is read as a feature map ``(N, C, h, w)``.

    Attributes
    ----------
    kind
        ``"channels_first"`` ``(N, C, h, w)``, ``"channels_last"`` ``(N, h, w, C)`` or
        ``"tokens"`` ``(N, prefix_tokens + h·w, C)``.
    channels, height, width
        ``C``, ``h``, ``w``.
    prefix_tokens
        Tokens before the patch tokens (class, distillation, register tokens); 0 unless tokens.

    Examples
    --------
    >>> import torch
    >>> layout = feature_layout((17, 192), (64, 64))  # a ViT at 64 px, patch 16: 1 + 4 x 4 tokens
    >>> layout
    FeatureLayout(kind='tokens', channels=192, height=4, width=4, prefix_tokens=1)
    >>> tokens = torch.rand(2, 17, 192)
    >>> layout.to_grid(tokens).shape
    torch.Size([2, 192, 4, 4])
    >>> torch.equal(layout.from_rows(layout.rows(tokens)), tokens)
    True
    """

    kind: LayoutKind
    channels: int
    height: int
    width: int
    prefix_tokens: int = 0

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)``: the layer seen as a feature map, per image."""
        return (self.channels, self.height, self.width)

    @property
    def positions(self) -> int:
        """Rows per image of :meth:`rows`: ``prefix_tokens + h·w``."""
        return self.prefix_tokens + self.height * self.width

    def _check(self, output: Tensor) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"a layer's output must be a tensor; got {type(output).__name__}")
        expected = {
            "channels_first": (self.channels, self.height, self.width),
            "channels_last": (self.height, self.width, self.channels),
            "tokens": (self.positions, self.channels),
        }[self.kind]
        if tuple(output.shape[1:]) != expected:
            raise ValueError(
                f"the layer outputs {tuple(output.shape)} on these images, where its {self.kind} layout "
                f"expects (N, {', '.join(map(str, expected))}); images of another size change the grid: "
                "pass images of the size the layout was found at"
            )

    def rows(self, output: Tensor) -> Tensor:
        """``(N, positions, C)``: one row per position (prefix tokens first, then the grid row-major)."""
        self._check(output)
        if self.kind == "channels_first":
            return output.flatten(2).transpose(1, 2)
        if self.kind == "channels_last":
            return output.reshape(output.shape[0], -1, self.channels)
        return output

    def from_rows(self, rows: Tensor) -> Tensor:
        """The inverse of :meth:`rows`: ``(N, positions, C)`` back to the layer's own tensor."""
        if rows.ndim != 3 or tuple(rows.shape[1:]) != (self.positions, self.channels):
            raise ValueError(f"rows must be (N, {self.positions}, {self.channels}); got {tuple(rows.shape)}")
        if self.kind == "channels_first":
            return rows.transpose(1, 2).reshape(rows.shape[0], *self.map_shape)
        if self.kind == "channels_last":
            return rows.reshape(rows.shape[0], self.height, self.width, self.channels)
        return rows

    def grid_rows(self, rows: Tensor) -> Tensor:
        """``(N, positions, ...)`` → ``(N, h·w, ...)``: the grid positions only, prefix tokens set aside."""
        return rows[:, self.prefix_tokens :]

    def to_grid(self, output: Tensor) -> Tensor:
        """The layer's tensor as a feature map ``(N, C, h, w)`` (prefix tokens set aside)."""
        if self.kind == "channels_first":
            self._check(output)
            return output
        grid = self.grid_rows(self.rows(output))
        return grid.transpose(1, 2).reshape(output.shape[0], *self.map_shape)


def _on_image(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether one integer stride maps an ``H × W`` image onto an ``h × w`` grid (floor or ceil)."""
    if height < 2 or width < 2:
        return False
    big_h, big_w = size
    for stride in range(1, max(big_h, big_w) + 1):
        rows = (big_h // stride, -(-big_h // stride))
        cols = (big_w // stride, -(-big_w // stride))
        if height in rows and width in cols:
            return True
        if big_h // stride < height and big_w // stride < width:
            break
    return False


def feature_layout(shape: tuple[int, ...], input_size: tuple[int, int]) -> FeatureLayout | None:
    """How a per-image output ``shape`` reads as a feature map on ``input_size`` images; None if not.

    The rule is the module documentation's: channels first for any ``(C, h, w)`` with
    ``h, w > 1``; channels last when only the first two sides are a grid on the image;
    tokens ``(T, C)`` with the smallest prefix ``t ≤ 64`` that leaves a grid on the image.

    Examples
    --------
    >>> feature_layout((1280, 7, 7), (224, 224)).kind
    'channels_first'
    >>> feature_layout((7, 7, 768), (224, 224)).kind
    'channels_last'
    >>> feature_layout((201, 384), (224, 224)).prefix_tokens  # class token and 4 registers
    5
    >>> feature_layout((1000,), (224, 224)) is None
    True
    """
    shape = tuple(int(side) for side in shape)
    if len(shape) == 3:
        if _on_image(shape[0], shape[1], input_size) and not _on_image(shape[1], shape[2], input_size):
            return FeatureLayout("channels_last", shape[2], shape[0], shape[1])
        if shape[1] > 1 and shape[2] > 1:
            return FeatureLayout("channels_first", shape[0], shape[1], shape[2])
        return None
    if len(shape) == 2:
        tokens, channels = shape
        for prefix in range(min(_MAX_PREFIX_TOKENS, tokens - 4) + 1):
            count = tokens - prefix
            for height in range(2, count // 2 + 1):
                if count % height == 0 and _on_image(height, count // height, input_size):
                    return FeatureLayout("tokens", channels, height, count // height, prefix)
    return None


def layer_layouts(model: nn.Module, *, input_size: tuple[int, int] | None = None) -> dict[str, FeatureLayout]:
    """The layers whose output reads as a feature map, with their layouts, in forward order.

    One forward pass on a blank image of ``input_size`` (default the model's,
    :func:`~spyglass.models.probe_layers`'s rule), each output read by :func:`feature_layout`.

    Examples
    --------
    >>> from spyglass import models
    >>> models.layer_layouts(models.load())["bn2"]
    FeatureLayout(kind='channels_first', channels=1280, height=7, width=7, prefix_tokens=0)
    """
    size = _input_size(model, input_size)
    layouts = {
        name: feature_layout(shape, size) for name, shape in probe_layers(model, input_size=size).items()
    }
    return {name: layout for name, layout in layouts.items() if layout is not None}


def _dots(name: str) -> int:
    return name.count(".")


def default_layer(model: nn.Module, *, input_size: tuple[int, int] | None = None) -> str:
    """The layer Grad-CAM, CRAFT and the atlas read by default: the last feature map that feeds the decision.

    The rule, the same for every family:

    1. run the model once on a random image of its input size (seeded) and keep each named
       layer's first output that reads as a feature map (:func:`feature_layout`: a
       convolutional map, a token sequence or a channels-last grid);
    2. layers that return the very same tensor (a block and the stage that ends with it, an
       ``Identity``) are one candidate, named by the layer with the fewest dots (``layer4``
       rather than ``layer4.1``), the first to finish on a tie;
    3. keep the candidates whose *grid positions* feed the decision: the gradient of the sum
       of the logits with respect to them is not zero everywhere. A ViT whose head reads the
       class token only gets nothing from the patch tokens of its last block (the final norm
       acts per token), so the rule passes over them to the previous block's output, whose
       patch tokens the last attention reads;
    4. take the last one, in the order the forward passes finish, at which
       :func:`~spyglass.models.split` cuts the model.

    What it gives: ``layer4`` for torchvision's ResNets, ``bn2`` (after ``conv_head``, before
    pooling) for EfficientNet-Lite0, ``stages`` (the output of the last stage) for timm's
    ConvNeXts, ``blocks.<L-2>`` for a class-token ViT of ``L`` blocks and ``norm`` for an
    average-pooling one whose head reads the final norm.

    Raises
    ------
    ValueError
        No layer fits the rule (the message lists why the last candidates were refused).

    Examples
    --------
    >>> from spyglass import models
    >>> models.default_layer(models.load())
    'bn2'
    """
    from spyglass.models.split import split  # split imports probing; keep the import graph a tree

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    size = _input_size(model, input_size)
    layers = named_layers(model)
    outputs: dict[str, Tensor] = {}

    def recorder(name: str) -> Callable[[nn.Module, object, object], None]:
        def record(_module: nn.Module, _args: object, output: object) -> None:
            if (
                name not in outputs
                and isinstance(output, Tensor)
                and output.is_floating_point()
                and feature_layout(tuple(output.shape[1:]), size) is not None
            ):
                outputs[name] = output

        return record

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, *size, generator=generator).to(model_device(model)).requires_grad_(True)
    hooks = [(module, recorder(name)) for name, module in layers.items()]
    with hooked(model, hooks), eval_mode(model), torch.enable_grad():
        logits = model(image)
        groups: dict[int, list[str]] = {}
        for name, tensor in outputs.items():
            groups.setdefault(id(tensor), []).append(name)
        candidates = [min(names, key=_dots) for names in groups.values()]
        tensors = [outputs[name] for name in candidates]
        wanted = [t for t in tensors if t.requires_grad]
        gradients = iter(torch.autograd.grad(logits.sum(), wanted, allow_unused=True) if wanted else ())
    refused: list[str] = []
    feeds: list[str] = []
    for name, tensor in zip(candidates, tensors, strict=True):
        gradient = next(gradients) if tensor.requires_grad else None
        layout = feature_layout(tuple(tensor.shape[1:]), size)
        assert layout is not None
        if gradient is None or not bool(layout.to_grid(gradient).ne(0).any()):
            refused.append(f"{name}: its grid positions do not reach the logits")
            continue
        feeds.append(name)
    for name in reversed(feeds):
        try:
            split(model, name, input_size=size)
        except ValueError as error:
            refused.append(f"{name}: {error}")
            continue
        return name
    detail = f" Refused: {'; '.join(refused[-3:])}." if refused else ""
    raise ValueError(
        f"found no layer of {type(model).__name__} that outputs a feature map (C, h, w), token grid or "
        f"(h, w, C) grid feeding the logits at which the model can be split; pass layer= explicitly "
        f"(see spyglass.models.list_layers(model)).{detail}"
    )
