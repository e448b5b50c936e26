"""ModelRandomization: a method that follows the model changes, an edge detector does not."""

import pytest
import torch

from spyglass import attributions, metrics
from spyglass.attributions import Attribution
from spyglass.metrics.randomization import top_layers
from tests.helpers import left_as_found, mixed_mode
from tests.tiny import tiny_model


class EdgeDetector(Attribution):
    """The image's gradient magnitude: an explanation that never looks at the model."""

    def explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        grey = images.mean(dim=1)
        dx = torch.nn.functional.pad(grey[:, :, 1:] - grey[:, :, :-1], (0, 1))
        dy = torch.nn.functional.pad(grey[:, 1:] - grey[:, :-1], (0, 0, 0, 1))
        return (dx**2 + dy**2).sqrt()


def test_top_layers_follow_the_forward_order() -> None:
    model = tiny_model()
    assert top_layers(model, torch.rand(1, 3, 32, 32), 2) == ["network.3", "network.7"]
    with pytest.raises(ValueError, match="layers=9 exceeds the 4"):
        top_layers(model, torch.rand(1, 3, 32, 32), 9)


@pytest.mark.parametrize("name", ["saliency", "gradcam"])
def test_a_model_dependent_method_changes_and_the_model_is_left_as_found(
    name: str, tiny_images: torch.Tensor
) -> None:
    model = mixed_mode(tiny_model())
    with left_as_found(model):
        check = metrics.ModelRandomization(model, tiny_images, 0, layers=2)
        similarity = check(name)
    assert similarity < 0.9
    assert check.model is model
    assert check(name) == similarity  # seeded re-initialisation
    maps = attributions.create(name, model, progress=False)(tiny_images, 0)
    assert check(name, maps=maps) == similarity  # the model's own maps, when already computed


def test_an_edge_detector_fails_the_check(tiny_images: torch.Tensor) -> None:
    check = metrics.ModelRandomization(tiny_model(), tiny_images, 0, layers=4)
    assert check(EdgeDetector) == pytest.approx(1.0)  # the class is a factory model -> method
    with pytest.raises(TypeError, match=r"got a built EdgeDetector \(pass its name, its class"):
        check(EdgeDetector(tiny_model()))
    with pytest.raises(TypeError, match=r"method\(model\) must return an explainer"):
        check(lambda model: None)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        metrics.ModelRandomization(lambda x, y: x, tiny_images, 0)  # type: ignore[arg-type]
