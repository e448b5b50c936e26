"""Objectives: values by hand on a tiny model, composition without mutation, clear errors."""

from __future__ import annotations

import pytest
import torch

from spyglass.featureviz import Objective, channel, direction, logit, neuron
from tests.tiny import colour_model


@pytest.fixture
def images(generator: torch.Generator) -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=generator)


def by_hand(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean red and mean green of each image: the tiny model's pooled activations."""
    return images[:, 0].mean(dim=(1, 2)), images[:, 1].mean(dim=(1, 2))


def test_single_objectives_match_hand_computed_values(images: torch.Tensor) -> None:
    model = colour_model().eval()
    red, green = by_hand(images)
    torch.testing.assert_close(logit(0)(model, images), red)
    torch.testing.assert_close(logit(2)(model, images), red + green)
    torch.testing.assert_close(channel("conv", 1)(model, images), green)
    torch.testing.assert_close(channel("fc", 2)(model, images), red + green)  # (N, C) layer
    torch.testing.assert_close(neuron("conv", 0, position=(3, 5))(model, images), images[:, 0, 3, 5])
    torch.testing.assert_close(neuron("relu", 1)(model, images), images[:, 1, 8, 8])  # centre
    vector = torch.tensor([1.0, 2.0])
    dot = red + 2 * green
    cosine = dot / (torch.sqrt(red**2 + green**2) * vector.norm())
    torch.testing.assert_close(direction("conv", vector)(model, images), dot * cosine**2)
    torch.testing.assert_close(direction("conv", vector, cosine_power=3)(model, images), dot * cosine**3)


def test_direction_cosine_has_a_floor() -> None:
    model = colour_model().eval()
    red_only = torch.zeros(1, 3, 16, 16)
    red_only[:, 0] = 0.5
    # a = (0.5, 0), v = (-1, 1): cos = -0.707 → clamped to 0.1; dot = -0.5.
    value = direction("conv", torch.tensor([-1.0, 1.0]))(model, red_only)
    torch.testing.assert_close(value, torch.tensor([-0.5 * 0.1**2]))


def test_composition_is_linear_and_leaves_operands_alone(images: torch.Tensor) -> None:
    model = colour_model().eval()
    red, green = by_hand(images)
    a, b = logit(0), channel("conv", 1)
    before_a, before_b = repr(a), repr(b)
    combined = 2.0 * a + b * 3 - 0.5 * neuron("conv", 0, (0, 0))
    expected = 2 * red + 3 * green - 0.5 * images[:, 0, 0, 0]
    torch.testing.assert_close(combined(model, images), expected)
    torch.testing.assert_close((-a)(model, images), -red)
    torch.testing.assert_close((a - a)(model, images), torch.zeros(2))
    assert repr(a) == before_a and repr(b) == before_b  # operands unchanged
    torch.testing.assert_close(a(model, images), red)
    torch.testing.assert_close(b(model, images), green)
    assert isinstance(combined, Objective) and combined.layers == ["conv"]


def test_objective_leaves_no_hook(images: torch.Tensor) -> None:
    model = colour_model().eval()
    (logit(1) + channel("conv", 0) + direction("relu", torch.ones(2)))(model, images)
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_operands_and_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError):
        logit(0) * logit(1)  # type: ignore[operator]
    with pytest.raises(TypeError):
        logit(0) + 1.0  # type: ignore[operator]
    with pytest.raises(TypeError):
        logit(0) * float("nan")
    with pytest.raises(ValueError, match="class_id must be a non-negative int"):
        logit(-1)
    with pytest.raises(ValueError, match="index must be a non-negative int"):
        channel("conv", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer must be a layer name"):
        channel(3, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position must be None or a pair"):
        neuron("conv", 0, position=(1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vector must be a 1-D float tensor"):
        direction("conv", torch.ones(2, 2))
    with pytest.raises(ValueError, match="finite and non-zero"):
        direction("conv", torch.zeros(2))


def test_errors_that_need_the_model(images: torch.Tensor) -> None:
    model = colour_model().eval()
    with pytest.raises(ValueError, match=r"unknown layer 'cnv'.*Did you mean conv"):
        channel("cnv", 0)(model, images)
    with pytest.raises(ValueError, match=r"channel index 2 is out of range for layer 'conv', which has 2"):
        channel("conv", 2)(model, images)
    with pytest.raises(ValueError, match=r"class_id 3 is out of range"):
        logit(3)(model, images)
    with pytest.raises(ValueError, match=r"position \(16, 0\) is outside the 16×16 grid"):
        neuron("conv", 0, position=(16, 0))(model, images)
    with pytest.raises(ValueError, match="neuron needs a \\(N, C, H, W\\) layer"):
        neuron("fc", 0)(model, images)
    with pytest.raises(ValueError, match="vector has 3 values but layer 'conv'"):
        direction("conv", torch.ones(3))(model, images)
    assert all(not m._forward_hooks for m in model.modules())
