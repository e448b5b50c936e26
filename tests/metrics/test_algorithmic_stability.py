"""MeGe and ReCo: bookkeeping by hand on scripted models, and the truth on real retraining.

With scripted fold models every prediction and map is known, so the pairs, their groups and
the scores are checked by hand. With the default retraining (a fresh head on the frozen tiny
model) the truth comes from explanations whose behaviour is known: a map that ignores the
model (MeGe 1, ReCo 0), noise (MeGe ≈ 1 / (1 + E√(1 − |ρ|)) ≈ 0.503 for 32 × 32 maps), and a
map that changes exactly when the decision does (MeGe 1, ReCo 1).
"""

import math

import pytest
import torch

from spyglass import metrics
from spyglass.metrics._stats import spearman_rows, youden_index
from spyglass.models import VisionModel
from tests.tiny import tinted_images, tiny_model


def fixed_map(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """An explanation that ignores its input entirely: perfectly stable."""
    pattern = torch.arange(images.shape[2] * images.shape[3], dtype=torch.float32)
    return pattern.view(1, *images.shape[2:]).expand(images.shape[0], -1, -1).clone()


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

    stability = metrics.AlgorithmicStability(same, images, labels, train_fn=lambda x, y: same, k=4)
    report = stability.report(explain_with)
    assert report.mege == 1.0 and report.dropped == 0
    assert int(report.consistent.sum()) == 8 * 3 and not bool(report.inconsistent.any())
    assert math.isnan(report.reco)  # no disagreeing pair: ReCo is undefined, and says so
    assert metrics.MeGe(same, images, labels, train_fn=lambda x, y: same, k=4)(explain_with) == 1.0


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

    backbone = Scripted([0] * 6, None)
    stability = metrics.AlgorithmicStability(backbone, images, labels, train_fn=train_fn, k=2, seed=0)
    report = stability.report(explain_with)
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
        metrics.MeGe(tiny, tiny_images, labels, train_fn=lambda x, y: tiny, k=6)
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        metrics.ReCo(tiny, tiny_images, labels, train_fn=lambda x, y: tiny, k=1)
    with pytest.raises(TypeError, match="train_fn must be callable"):
        metrics.MeGe(tiny, tiny_images, labels, train_fn="head")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="targets must be the true labels of the images"):
        metrics.MeGe(tiny, tiny_images, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]"):
        metrics.MeGe(tiny, tiny_images, torch.tensor([0, 1, 2, 3, 5]))
    with pytest.raises(ValueError, match="unknown attribution method"):
        metrics.MeGe(tiny, tiny_images, labels, train_fn=lambda x, y: tiny)("salincy")
    with pytest.raises(TypeError, match=r"got NoneType \(does it end with `return model`\?\)"):
        metrics.MeGe(tiny, tiny_images, labels, train_fn=lambda x, y: None, k=2)("saliency")
    with pytest.raises(TypeError, match=r"a torch\.nn\.Module; got dict"):
        metrics.MeGe(tiny, tiny_images, labels, train_fn=lambda x, y: {}, k=2)("saliency")
    with pytest.raises(ValueError, match="shape"):
        metrics.MeGe(tiny, tiny_images, labels, train_fn=lambda x, y: tiny, k=2)(lambda m: lambda x, y: x)


# ------------------------------------------------- the default retraining, on the tiny model


@pytest.fixture(scope="module")
def coloured() -> tuple[torch.Tensor, torch.Tensor]:
    """24 tinted images, labelled by the tiny model itself: two classes a fresh head can learn again."""
    return tinted_images(24)


@pytest.fixture(scope="module")
def retrained(coloured: tuple[torch.Tensor, torch.Tensor]) -> metrics.AlgorithmicStability:
    """The protocol with the default train_fn (HeadFineTuning), fold models trained once for the module."""
    images, labels = coloured
    return metrics.AlgorithmicStability(tiny_model(), images, labels, k=4, progress=False)


def test_the_default_retraining_gives_fold_models_that_agree_and_disagree(
    retrained: metrics.AlgorithmicStability, coloured: tuple[torch.Tensor, torch.Tensor]
) -> None:
    labels = coloured[1]
    assert sorted(set(labels.tolist())) == [1, 3]
    report = retrained.report(lambda model: fixed_map)
    assert report.distances.shape == (24 * 3,)
    assert int(report.consistent.sum()) >= 20 and int(report.inconsistent.sum()) >= 10
    assert 0.5 <= float(report.accuracy.mean()) < 1.0  # fold models learn, and are not all alike
    backbone = retrained.model
    for model in retrained.fold_models():  # every fold model is the backbone with another head
        assert model is not backbone and torch.equal(model.network[0].weight, backbone.network[0].weight)
        assert not torch.equal(model.network[7].weight, backbone.network[7].weight)


def test_a_map_that_ignores_the_model_gets_mege_one_and_reco_zero(
    retrained: metrics.AlgorithmicStability,
) -> None:
    report = retrained.report(lambda model: fixed_map)
    assert report.mege == pytest.approx(1.0, abs=1e-6)  # every distance is 0 (up to rounding of ρ = 1)
    assert report.reco == 0.0  # agreeing and disagreeing models cannot be told apart
    assert report.dropped == 0


def test_noise_gets_the_mege_of_unrelated_maps(retrained: metrics.AlgorithmicStability) -> None:
    generator = torch.Generator().manual_seed(0)

    def noise(model: torch.nn.Module):  # type: ignore[no-untyped-def]
        return lambda x, y: torch.rand(x.shape[0], 32, 32, generator=generator)

    report = retrained.report(noise)
    # ρ of two independent maps of D = 1024 pixels is about N(0, 1/(D − 1)): E|ρ| = √(2/π)/√1023,
    # so the mean distance √(1 − |ρ|) is about 1 − E|ρ|/2 and MeGe about 1/(2 − E|ρ|/2).
    expected = 1 / (2 - math.sqrt(2 / math.pi) / math.sqrt(1023) / 2)
    assert report.mege == pytest.approx(expected, abs=0.0015)  # about 4 standard errors over 42 pairs
    # ReCo of noise is the largest gap between two samples of one distribution (16 against 42 pairs
    # here): below the 1 % critical value of the one-sided two-sample Kolmogorov–Smirnov statistic.
    same, different = int(report.consistent.sum()), int(report.inconsistent.sum())
    critical = math.sqrt(-math.log(0.01) / 2) * math.sqrt((same + different) / (same * different))
    assert report.reco < critical


def test_a_map_that_follows_the_decision_gets_mege_one_and_reco_one(
    retrained: metrics.AlgorithmicStability,
) -> None:
    patterns = torch.rand(5, 32, 32, generator=torch.Generator().manual_seed(9))

    def by_decision(model: torch.nn.Module):  # type: ignore[no-untyped-def]
        def explain(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return patterns[model(x).argmax(1)].clone()  # one pattern per predicted class

        return explain

    report = retrained.report(by_decision)
    assert report.mege == pytest.approx(1.0, abs=1e-6) and report.reco == 1.0


def test_saliency_lies_between_and_mege_and_reco_read_one_report(
    retrained: metrics.AlgorithmicStability, coloured: tuple[torch.Tensor, torch.Tensor]
) -> None:
    report = retrained.report("saliency")
    assert 0.6 < report.mege < 1.0 and 0.0 < report.reco < 1.0
    assert retrained.report("saliency") is report  # kept per method
    images, labels = coloured
    model = retrained.model
    mege = metrics.MeGe(model, images, labels, k=4, progress=False)
    reco = metrics.ReCo(model, images, labels, k=4, progress=False)
    other = metrics.ReCo(model, images, labels, k=3, progress=False)
    assert reco.reuse(mege) and not other.reuse(mege)
    assert reco.stability is mege.stability
    assert mege("saliency") == report.mege and reco("saliency") == report.reco
    assert mege.report("saliency") is reco.report("saliency")


def test_mege_reco_on_the_real_model(lite0: VisionModel, imagenet_samples) -> None:  # type: ignore[no-untyped-def]
    from spyglass.data import read_images

    files = sorted(imagenet_samples.iterdir())
    batch = read_images([files[i] for i in (0, 1, 2, 0, 1, 2)], lite0.preprocess, progress=False)
    train_fn = metrics.HeadFineTuning(lite0, epochs=30, batch_size=8)
    report = metrics.AlgorithmicStability(
        lite0, batch.images, batch.labels, train_fn=train_fn, k=2, batch_size=8, progress=False
    ).report("saliency")
    assert report.distances.shape == (6,) and report.dropped == 0
    assert 0.0 < report.mege <= 1.0
    assert math.isnan(report.reco) or 0.0 <= report.reco <= 1.0
