"""AverageStability, MeGe/ReCo and the default train_fn: analytic cases, bookkeeping, errors."""

import math

import pytest
import torch

from spyglass import attributions, metrics
from spyglass.metrics._stats import spearman_rows, youden_index
from spyglass.models import VisionModel
from tests.tiny import tiny_model


def fixed_map(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """An explanation that ignores its input entirely: perfectly stable."""
    pattern = torch.arange(images.shape[2] * images.shape[3], dtype=torch.float32)
    return pattern.view(1, *images.shape[2:]).expand(images.shape[0], -1, -1).clone()


def test_average_stability_by_hand(tiny_images: torch.Tensor) -> None:
    assert metrics.AverageStability(
        fixed_map, tiny_images, 0, nb_samples=3, progress=False
    )() == pytest.approx(0.0, abs=1e-6)

    def noise_map(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.rand(images.shape[0], *images.shape[2:])  # uncorrelated with anything: d ≈ √2

    value = metrics.AverageStability(noise_map, tiny_images, 0, nb_samples=4, progress=False)()
    assert value == pytest.approx(math.sqrt(2), abs=0.05)

    def pixels(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=1)  # moves with the noise: in between, and more for a larger radius

    small = metrics.AverageStability(pixels, tiny_images, 0, radius=0.01, nb_samples=4, progress=False)()
    large = metrics.AverageStability(pixels, tiny_images, 0, radius=0.3, nb_samples=4, progress=False)()
    assert 0 < small < large < math.sqrt(2)


def test_average_stability_counts_flat_maps_and_is_seeded(
    tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    def flat_for_first(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        maps = images.mean(dim=1)
        maps[0] = 0.0
        return maps

    stability = metrics.AverageStability(flat_for_first, tiny_images, 0, nb_samples=3, progress=False)
    distances = stability.distances()
    assert (
        distances.shape == (5, 3)
        and bool(distances[0].isnan().all())
        and not bool(distances[1:].isnan().any())
    )
    assert bool(stability.scores()[0].isnan()) and math.isfinite(stability())
    saliency = attributions.Saliency(tiny, progress=False)
    first = metrics.AverageStability(saliency, tiny_images, 0, nb_samples=2, seed=3, progress=False)()
    again = metrics.AverageStability(saliency, tiny_images, 0, nb_samples=2, seed=3, progress=False)()
    assert first == again


class Scripted(torch.nn.Module):
    """Predicts class ``table[index]`` for the image whose first pixel is ``index / 10``."""

    def __init__(self, table: list[int], pattern: torch.Tensor | None) -> None:
        super().__init__()
        self.table, self.pattern = table, pattern
        self.scale = torch.nn.Parameter(torch.ones(()))  # a parameter, so the engines see a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = (x[:, 0, 0, 0] * 10).round().long()
        return torch.nn.functional.one_hot(torch.tensor(self.table)[index], 3).float() * self.scale


def scripted_images(n: int) -> torch.Tensor:
    images = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    images[:, 0, 0, 0] = torch.arange(n) / 10
    return images


def test_mege_is_one_when_every_fold_model_explains_alike() -> None:
    images, labels = scripted_images(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    same = Scripted(labels.tolist(), None)  # every fold model is right on every image

    def explain_with(model: torch.nn.Module):  # type: ignore[no-untyped-def]
        return fixed_map

    stability = metrics.AlgorithmicStability(explain_with, images, labels, train_fn=lambda x, y: same, k=4)
    report = stability.evaluate()
    assert report.mege == 1.0 and report.dropped == 0
    assert int(report.consistent.sum()) == 8 * 3 and not bool(report.inconsistent.any())
    assert math.isnan(report.reco)  # no disagreeing pair: ReCo is undefined, and says so
    assert metrics.MeGe(explain_with, images, labels, train_fn=lambda x, y: same, k=4)() == 1.0


def test_mege_and_reco_bookkeeping_by_hand() -> None:
    """Two folds, two scripted models with known predictions and maps, one flat map."""
    images, labels = scripted_images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    tables = iter([[0, 1, 2, 0, 2, 2], [0, 1, 1, 1, 1, 2]])  # model 0 wrong on 4, model 1 wrong on 2, 3
    trained: list[Scripted] = []

    def train_fn(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
        trained.append(Scripted(next(tables), None))
        return trained[-1]

    patterns = [torch.rand(6, 6, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]

    def explain_with(model: torch.nn.Module):  # type: ignore[no-untyped-def]
        which = trained.index(model)  # type: ignore[arg-type]

        def explain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            maps = patterns[which].expand(x.shape[0], -1, -1).clone()
            flat = (x[:, 0, 0, 0] * 10).round() == 5
            maps[flat] = 0.0  # image 5 gets a flat map: its pairs are dropped and counted
            return maps

        return explain

    stability = metrics.AlgorithmicStability(explain_with, images, labels, train_fn=train_fn, k=2, seed=0)
    report = stability.evaluate()
    assert report.distances.shape == (6,)  # 6 images × (k − 1) pairs
    rho = float(spearman_rows(patterns[0].view(1, -1), patterns[1].view(1, -1))[0])
    distance = math.sqrt(1 - abs(rho))
    predictions = [[0, 1, 2, 0, 2, 2], [0, 1, 1, 1, 1, 2]]
    for p, image in enumerate(report.images.tolist()):
        right = [predictions[m][image] == int(labels[image]) for m in (0, 1)]
        assert bool(report.consistent[p]) == all(right)
        assert bool(report.inconsistent[p]) == (predictions[0][image] != predictions[1][image])
        if image == 5:
            assert math.isnan(float(report.distances[p]))
        else:
            assert float(report.distances[p]) == pytest.approx(distance)
    assert report.dropped == 1  # image 5: both right, flat map
    same = report.distances[report.consistent & ~report.distances.isnan()]
    different = report.distances[report.inconsistent & ~report.distances.isnan()]
    assert report.mege == pytest.approx(1 / (1 + distance))
    assert report.reco == youden_index(same, different)
    assert 0.0 <= report.reco <= 1.0


def test_algorithmic_stability_rejects_bad_input(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    labels = torch.tensor([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"k must be at most the number of images \(5\)"):
        metrics.MeGe("saliency", tiny_images, labels, train_fn=lambda x, y: tiny, k=6)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        metrics.ReCo("saliency", tiny_images, labels, train_fn=lambda x, y: tiny, k=1)
    with pytest.raises(TypeError, match="train_fn must be callable"):
        metrics.MeGe("saliency", tiny_images, labels, train_fn=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown attribution method"):
        metrics.MeGe("salincy", tiny_images, labels, train_fn=lambda x, y: tiny)
    with pytest.raises(TypeError, match=r"got NoneType \(does it end with `return model`\?\)"):
        metrics.MeGe("saliency", tiny_images, labels, train_fn=lambda x, y: None, k=2)()
    with pytest.raises(TypeError, match=r"a torch\.nn\.Module; got dict"):
        metrics.MeGe("saliency", tiny_images, labels, train_fn=lambda x, y: {}, k=2)()
    with pytest.raises(ValueError, match="shape"):
        metrics.MeGe(lambda m: lambda x, y: x, tiny_images, labels, train_fn=lambda x, y: tiny, k=2)()


def test_head_finetuning_trains_a_copy_and_leaves_the_backbone_alone(tiny_images: torch.Tensor) -> None:
    backbone = tiny_model()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    labels = torch.tensor([0, 1, 2, 3, 4])
    model = metrics.HeadFineTuning(backbone, epochs=200, learning_rate=0.05, weight_decay=0.0)(
        tiny_images, labels
    )
    assert model is not backbone and isinstance(model, VisionModel)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    with torch.no_grad():
        accuracy = float((model(tiny_images).argmax(1) == labels).float().mean())
    assert accuracy == 1.0  # 5 images, 8 features: separable
    assert torch.equal(model.network[0].weight, backbone.network[0].weight)  # backbone frozen
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        metrics.HeadFineTuning(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"not the output of its last nn\.Linear"):
        metrics.HeadFineTuning(torch.nn.Sequential(backbone, torch.nn.Softmax(dim=1)))(tiny_images, labels)


def test_mege_reco_on_the_real_model(lite0: VisionModel, imagenet_samples) -> None:  # type: ignore[no-untyped-def]
    from spyglass.data import read_images

    files = sorted(imagenet_samples.iterdir())
    batch = read_images([files[i] for i in (0, 1, 2, 0, 1, 2)], lite0.preprocess, progress=False)
    train_fn = metrics.HeadFineTuning(lite0, epochs=30, batch_size=8)
    report = metrics.AlgorithmicStability(
        "saliency", batch.images, batch.labels, train_fn=train_fn, k=2, batch_size=8, progress=False
    ).evaluate()
    assert report.distances.shape == (6,) and report.dropped == 0
    assert 0.0 < report.mege <= 1.0
    assert math.isnan(report.reco) or 0.0 <= report.reco <= 1.0
