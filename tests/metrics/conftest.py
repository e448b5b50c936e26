"""Tiny models whose exact attributions are known, for fast metric tests."""

import pytest
import torch

from spyglass.models import VisionModel
from tests.attributions.conftest import tiny_model


class PixelSum(torch.nn.Module):
    """``f(x) = Σ_p w_p · Σ_c x_{c,p}``: one logit, a known weight per pixel (all ones by default)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.sum(dim=1) * self.weights).flatten(1).sum(dim=1, keepdim=True)


def pixel_sum_model(weights: torch.Tensor) -> VisionModel:
    """The weighted pixel sum behind a wrapper that does not change the pixels (mean 0, std 1)."""
    size = tuple(weights.shape)
    return VisionModel(
        PixelSum(weights), input_size=size, mean=(0, 0, 0), std=(1, 1, 1), class_names=["f"]
    ).eval()


@pytest.fixture
def tiny() -> VisionModel:
    return tiny_model()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
