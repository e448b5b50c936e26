"""AverageStability: analytic cases (a fixed map, noise, maps that follow the pixels), flat maps, seeds."""

import math

import pytest
import torch

from spyglass import attributions, metrics
from spyglass.models import VisionModel


def fixed_map(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """An explanation that ignores its input entirely: perfectly stable."""
    pattern = torch.arange(images.shape[2] * images.shape[3], dtype=torch.float32)
    return pattern.view(1, *images.shape[2:]).expand(images.shape[0], -1, -1).clone()


def ignoring_the_model(explain):  # type: ignore[no-untyped-def]
    """A factory ``model -> explainer`` for an explainer that does not look at the model."""
    return lambda model: explain


def test_average_stability_by_hand(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    stability = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=3, progress=False)
    assert stability(ignoring_the_model(fixed_map)) == pytest.approx(0.0, abs=1e-6)

    def noise_map(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.rand(images.shape[0], *images.shape[2:])  # uncorrelated with anything: d ≈ √2

    noisy = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=4, progress=False)
    assert noisy(ignoring_the_model(noise_map)) == pytest.approx(math.sqrt(2), abs=0.05)

    def pixels(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=1)  # moves with the noise: in between, and more for a larger radius

    small = metrics.AverageStability(tiny, tiny_images, 0, radius=0.01, nb_samples=4, progress=False)
    large = metrics.AverageStability(tiny, tiny_images, 0, radius=0.3, nb_samples=4, progress=False)
    assert 0 < small(ignoring_the_model(pixels)) < large(ignoring_the_model(pixels)) < math.sqrt(2)


def test_average_stability_counts_flat_maps_and_is_seeded(
    tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    def flat_for_first(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        maps = images.mean(dim=1)
        maps[0] = 0.0
        return maps

    stability = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=3, progress=False)
    method = ignoring_the_model(flat_for_first)
    distances = stability.distances(method)
    assert (
        distances.shape == (5, 3)
        and bool(distances[0].isnan().all())
        and not bool(distances[1:].isnan().any())
    )
    assert bool(stability.scores(method)[0].isnan()) and math.isfinite(stability(method))
    first = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=2, seed=3, progress=False)
    again = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=2, seed=3, progress=False)
    assert first("saliency") == again("saliency") == again(attributions.Saliency)
    maps = attributions.Saliency(tiny)(tiny_images, 0)
    assert first("saliency", maps=maps) == first("saliency")  # the clean maps, when already computed


def test_average_stability_rejects_bad_input(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    stability = metrics.AverageStability(tiny, tiny_images, 0, nb_samples=1, progress=False)
    with pytest.raises(ValueError, match="unknown attribution method 'salincy'"):
        stability("salincy")
    with pytest.raises(TypeError, match="got a built Saliency"):
        stability(attributions.Saliency(tiny))
    with pytest.raises(ValueError, match=r"maps must be a float tensor of shape \(N, H, W\)"):
        stability(lambda model: lambda x, y: x)
    with pytest.raises(ValueError, match=r"radius must be a finite number in \(0, 1\] \(pixel units\)"):
        metrics.AverageStability(tiny, tiny_images, 0, radius=0)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        metrics.AverageStability(tiny, tiny_images, 9)
