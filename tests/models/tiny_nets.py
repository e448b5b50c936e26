"""Small networks for the tracing, layer, probing and hook tests (shapes known by hand)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from spyglass.models import VisionModel


def tiny_cnn() -> nn.Sequential:
    """32 px in: conv (8, 32, 32) → relu → conv stride 2 (8, 16, 16) → relu → pool → flat (8,) → fc (5,)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            bn=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 8, 3, padding=1, stride=2),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(8, 5),
        )
    )


def tiny_vision_model() -> VisionModel:
    model = VisionModel(
        tiny_cnn(),
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=[f"c{i}" for i in range(5)],
        name="tiny",
    )
    with torch.no_grad():  # non-trivial running statistics, so eval and train modes differ
        model.network.bn.running_mean.uniform_(-0.5, 0.5)
        model.network.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


class Block(nn.Module):
    """A residual block: conv → relu, plus its input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(x))


class ResidualNet(nn.Module):
    """Residual blocks, a tensor constant made in ``forward`` and a training-only branch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A constant created at run time: fx stores it as an attribute of the traced module.
        shift = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
        features = self.blocks(self.stem(x + shift))
        if self.training:  # the traced graph must follow the eval branch
            features = features * 0.0
        return self.head(features.mean(dim=(2, 3)))


class Pair(nn.Module):
    """Returns a tuple: (its input doubled, its input's channel means)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2 * x, x.mean(dim=(2, 3))


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.pair = Pair()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        doubled, means = self.pair(self.conv(x))
        return self.head(means) + doubled.mean()


class Gate(nn.Module):
    """Data-dependent control flow: symbolic tracing cannot follow it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class GatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 2, 1)
        self.gate = Gate()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.conv(x)).mean(dim=(2, 3)))
