"""Gradient methods called from a notebook's torch.no_grad() or torch.inference_mode() block."""

import pytest
import torch

from spyglass import attributions
from spyglass.models import VisionModel

GRADIENT_METHODS = {
    "saliency": {},
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"nb_samples": 3},
    "gradcam": {},
    "guided_backprop": {},
}


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_under_no_grad_gradients_are_switched_on_locally(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    method = attributions.create(name, tiny, progress=False, **GRADIENT_METHODS[name])
    expected = method(tiny_images, 2)
    with torch.no_grad():
        torch.testing.assert_close(method(tiny_images, 2), expected, rtol=0, atol=0)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_under_inference_mode_gradients_are_computed_all_the_same(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    method = attributions.create(name, tiny, progress=False, **GRADIENT_METHODS[name])
    expected = method(tiny_images, 2)
    with torch.inference_mode():
        torch.testing.assert_close(method(tiny_images.clone(), 2), expected, rtol=0, atol=0)
        assert torch.is_inference_mode_enabled()
