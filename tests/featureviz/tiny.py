"""A tiny classifier whose activations are known by hand, wrapped as a VisionModel."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from spyglass.models import VisionModel


def tiny_network() -> nn.Sequential:
    """conv: channel 0 = red, channel 1 = green (1×1, no bias); logits = [r̄, ḡ, r̄ + ḡ]."""
    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    fc = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    return nn.Sequential(
        OrderedDict(
            conv=conv,
            bn=nn.BatchNorm2d(2),  # identity in eval mode: running mean 0, var 1
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=fc,
        )
    )


def tiny_model(input_size: int = 16) -> VisionModel:
    return VisionModel(
        tiny_network(),
        input_size=(input_size, input_size),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=["red", "green", "both"],
        name="tiny",
    )
