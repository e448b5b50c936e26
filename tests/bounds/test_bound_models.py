"""The default EfficientNet-Lite0 and a torchvision ResNet-18: fully supported by IBP at 224 px."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from spyglass.bounds import interval_bounds, layer_bounds, linear_bounds
from spyglass.models import VisionModel
from tests.helpers import left_as_found


def _sound_on_samples(
    model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.cat(
        [lower, upper, lower + torch.rand(1, *lower.shape[1:], generator=generator) * (upper - lower)]
    )
    with torch.no_grad():
        logits = model(points)
    slack = 1e-4 * (1 + logits.abs())
    assert ((low - slack <= logits) & (logits <= high + slack)).all()


def test_the_default_model_is_bounded_by_ibp_at_224_px(lite0: VisionModel) -> None:
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    lower, upper = (image - 1 / 255).clamp(0, 1), (image + 1 / 255).clamp(0, 1)
    with left_as_found(lite0):
        low, high = interval_bounds(lite0, lower, upper)
        margins = torch.eye(1000)[:3] - torch.eye(1000)[3]
        spec_low, spec_high = interval_bounds(lite0, lower, upper, spec=margins)
    assert low.shape == (1, 1000) and torch.isfinite(low).all() and torch.isfinite(high).all()
    _sound_on_samples(lite0.eval(), lower, upper, low, high)
    with torch.no_grad():
        logits = lite0(image)
    difference = logits[:, :3] - logits[:, 3:4]
    assert (spec_low <= difference + 1e-4).all() and (difference <= spec_high + 1e-4).all()
    # Folded into the classifier: tighter than differences of the logits' bounds.
    assert ((spec_high - spec_low) < (high[:, :3] - low[:, 3:4]) - (low[:, :3] - high[:, 3:4])).all()


def test_resnet18_is_bounded_by_ibp_at_224_px() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    image = torch.rand(1, 3, 224, 224)
    lower, upper = image - 1e-3, image + 1e-3
    with left_as_found(model):
        low, high = interval_bounds(model, lower, upper)
    assert torch.isfinite(low).all() and torch.isfinite(high).all()
    _sound_on_samples(model, lower, upper, low, high)


def test_crown_on_the_default_model_raises_the_memory_error_or_runs_at_a_small_size(
    lite0: VisionModel,
) -> None:
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    lower, upper = image - 1 / 255, image + 1 / 255
    with pytest.raises(ValueError, match=r"GiB of linear coefficients.*intermediate='ibp'"):
        linear_bounds(lite0, lower, upper)
    margins = torch.eye(1000)[:2] - torch.eye(1000)[2]
    low, high = linear_bounds(lite0, lower, upper, margins, intermediate="ibp")
    ibp = interval_bounds(lite0, lower, upper, spec=margins)
    assert (low >= ibp[0]).all() and (high <= ibp[1]).all()
    with torch.no_grad():
        logits = lite0(torch.cat([lower, upper, image]))
    difference = logits[:, :2] - logits[:, 2:3]
    assert (low <= difference + 1e-4).all() and (difference <= high + 1e-4).all()


def test_bound_width_grows_with_depth_on_the_default_model(lite0: VisionModel) -> None:
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    bounds = layer_bounds(lite0, image - 1 / 255, image + 1 / 255)
    names = list(bounds)
    assert names[0] == "images" and names[-1] == "network_classifier"
    widths = [float((high - low).mean()) for low, high in bounds.values()]
    assert widths[-1] > 10 * widths[0]
