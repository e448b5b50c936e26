"""A tiny real classifier for fast, registry-wide tests of every attribution method."""

import pytest
import torch

from spyglass.models import VisionModel


def tiny_model() -> VisionModel:
    """A small CNN with batch norm, ReLUs and a residual-free head (32 px, 5 classes)."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    model = VisionModel(
        network,
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=[f"c{i}" for i in range(5)],
        name="tiny",
    )
    with torch.no_grad():  # non-trivial running statistics, so eval and train modes differ
        model.network[1].running_mean.uniform_(-0.5, 0.5)
        model.network[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture
def tiny() -> VisionModel:
    return tiny_model()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
