"""C-Deletion, C-Insertion and C-μFidelity on the tiny model of ``test_craft``.

At ``relu2`` the top ``h`` (GAP → linear) is affine, so removing a concept lowers the class
score by exactly its Gradient×Input importance, whatever else is removed: the deletion
curve in Gradient×Input order is the lowest possible and C-μFidelity is exactly 1.
"""

from __future__ import annotations

import pytest
import torch

from spyglass import models
from spyglass.concepts import (
    Craft,
    NotFittedError,
    concept_deletion,
    concept_insertion,
    concept_mufidelity,
)
from tests.concepts.test_craft import split_scores
from tests.helpers import left_as_found
from tests.tiny import TinyNet, block_images


def steps_of(order: list[int], n_concepts: int, *, insertion: bool) -> torch.Tensor:
    """Masks ``(r + 1, r)`` written out: step ``k`` without (or with only) ``order[:k]``."""
    masks = torch.zeros(n_concepts + 1, n_concepts) if insertion else torch.ones(n_concepts + 1, n_concepts)
    for step in range(1, n_concepts + 1):
        masks[step:, order[step - 1]] = 1.0 if insertion else 0.0
    return masks


def test_deletion_and_insertion_curves_by_hand(fitted: Craft, tiny: TinyNet) -> None:
    images = block_images(3, seed=11)
    gxi = fitted.importance(images, "gradient_input", per_image=True)
    area, curves = concept_deletion(fitted, images, gxi, return_curves=True)
    inserted_area, inserted = concept_insertion(fitted, images, gxi, return_curves=True)
    assert area.shape == (3,) and curves.shape == (3, 4) and inserted.shape == (3, 4)
    assert area.dtype == torch.float32 and curves.device.type == "cpu"

    g, h = models.split(tiny, "relu2", check=False)
    with torch.no_grad():
        full = tiny(images)[:, 1]
        maps = g(images)
        rows = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
        residual = rows - fitted.learner_.inverse_transform(fitted.learner_.transform(rows))
        emptied = h(residual.reshape(3, 16, 16, -1).permute(0, 3, 1, 2))[:, 1]  # h(E)
    assert torch.allclose(curves[:, 0], full, atol=1e-5)
    assert torch.allclose(curves[:, -1], emptied, atol=1e-5)
    assert torch.allclose(inserted[:, 0], emptied, atol=1e-5)
    assert torch.allclose(inserted[:, -1], full, atol=1e-5)

    for i in range(3):
        order = gxi[i].argsort(descending=True).tolist()
        expected = split_scores(fitted, images[i : i + 1], steps_of(order, 3, insertion=False))[0]
        assert torch.allclose(curves[i], expected, atol=1e-5)
        expected = split_scores(fitted, images[i : i + 1], steps_of(order, 3, insertion=True))[0]
        assert torch.allclose(inserted[i], expected, atol=1e-5)
    trapezoid = (curves[:, :-1] + curves[:, 1:]).sum(dim=1) / 6  # 3 intervals of width 1/3
    assert torch.allclose(area, trapezoid, atol=1e-5)
    assert torch.allclose(inserted_area, (inserted[:, :-1] + inserted[:, 1:]).sum(dim=1) / 6, atol=1e-5)
    # An affine h: each removal lowers the score by that concept's Gradient×Input.
    ordered = gxi.sort(dim=1, descending=True).values
    assert torch.allclose(curves[:, :-1] - curves[:, 1:], ordered, atol=1e-5)


def test_the_true_order_beats_the_reversed_one(fitted: Craft) -> None:
    images = block_images(4, seed=12)
    gxi = fitted.importance(images, "gradient_input", per_image=True)
    assert bool((gxi.sort(dim=1).values.diff(dim=1) > 1e-3).all())  # a strict order to compare
    assert bool((concept_deletion(fitted, images, gxi) < concept_deletion(fitted, images, -gxi) - 1e-3).all())
    assert bool(
        (concept_insertion(fitted, images, gxi) > concept_insertion(fitted, images, -gxi) + 1e-3).all()
    )


def test_a_global_importance_ranks_every_image_alike(fitted: Craft) -> None:
    images = block_images(3, seed=13)
    ranking = torch.tensor([0.2, 0.5, 0.1])
    area, curves = concept_deletion(fitted, images, ranking, return_curves=True)
    same, same_curves = concept_deletion(fitted, images, ranking.expand(3, -1), return_curves=True)
    assert torch.equal(area, same) and torch.equal(curves, same_curves)
    expected = split_scores(fitted, images, steps_of([1, 0, 2], 3, insertion=False))
    assert torch.allclose(curves, expected, atol=1e-5)


def test_gradient_input_has_c_mufidelity_one_and_a_random_importance_does_not(tiny: TinyNet) -> None:
    # Five concepts of a rank-3 layer: a real residual, and enough concepts for subsets to differ.
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(14))
    craft = Craft(tiny, layer="relu2", n_concepts=5, patch_size=8, progress=False).fit(images, 2)
    gxi = craft.importance(images, "gradient_input", per_image=True)
    fidelity = concept_mufidelity(craft, images, gxi, subset_size=2, nb_samples=32)
    assert fidelity.shape == (4,) and fidelity.dtype == torch.float32
    assert torch.allclose(fidelity, torch.ones(4), atol=1e-4), fidelity
    assert torch.allclose(
        concept_mufidelity(craft, images, gxi, nb_samples=16, seed=3), torch.ones(4), atol=1e-4
    )
    noise = torch.rand(4, 5, generator=torch.Generator().manual_seed(15))
    random = concept_mufidelity(craft, images, noise, subset_size=2, nb_samples=32)
    assert float(random.mean()) < 0.7, random
    # The same seed draws the same subsets.
    assert torch.equal(random, concept_mufidelity(craft, images, noise, subset_size=2, nb_samples=32))


def test_batch_size_does_not_change_the_metrics_and_the_model_is_left_as_found(tiny: TinyNet) -> None:
    images = block_images(3, seed=16)
    craft = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, batch_size=64, progress=False)
    craft.fit(images, 0)
    importance = torch.tensor([[0.3, 0.1, 0.2], [0.0, 1.0, 0.5], [2.0, -1.0, 0.0]])
    _, curves = concept_insertion(craft, images, importance, return_curves=True)
    fidelity = concept_mufidelity(craft, images, importance, subset_size=1, nb_samples=8)
    tiny.train()
    tiny.pool.eval()
    craft.batch_size = 1
    with left_as_found(tiny):
        _, again = concept_insertion(craft, images, importance, return_curves=True)
        assert torch.allclose(again, curves, atol=1e-6)
        assert torch.allclose(
            concept_mufidelity(craft, images, importance, subset_size=1, nb_samples=8), fidelity, atol=1e-6
        )
        concept_deletion(craft, images, importance)
        with pytest.raises(ValueError, match="finite"):
            concept_deletion(craft, images, torch.full_like(importance, float("nan")))
    assert tiny.training and tiny.conv1.training and not tiny.pool.training


def test_clear_errors_on_bad_input(fitted: Craft, tiny: TinyNet) -> None:
    images = block_images(2, seed=17)
    good = torch.ones(3)
    unfitted = Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, progress=False)
    for metric in (concept_deletion, concept_insertion, concept_mufidelity):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            metric(unfitted, images, good)
        with pytest.raises(TypeError, match=r"fitted spyglass\.concepts\.Craft"):
            metric(tiny, images, good)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"importance must be a torch\.Tensor"):
            metric(fitted, images, [1.0, 2.0, 3.0])  # type: ignore[arg-type]
        for shape in ((4,), (3, 3), (2, 4), (2, 3, 1)):
            with pytest.raises(ValueError, match=r"importance must have shape \(3,\).*\(2, 3\)"):
                metric(fitted, images, torch.ones(shape))
        with pytest.raises(ValueError, match="finite"):
            metric(fitted, images, torch.tensor([1.0, float("nan"), 0.0]))
        with pytest.raises(ValueError, match="values in"):
            metric(fitted, images * 255, good)
    with pytest.raises(ValueError, match=r"subset_size must lie in \[1, 2\]"):
        concept_mufidelity(fitted, images, good, subset_size=3)
    with pytest.raises(ValueError, match="subset_size must be a positive int"):
        concept_mufidelity(fitted, images, good, subset_size=0)
    with pytest.raises(ValueError, match="nb_samples must be an int >= 2"):
        concept_mufidelity(fitted, images, good, nb_samples=1)
    with pytest.raises(ValueError, match="seed must be"):
        concept_mufidelity(fitted, images, good, seed=-1)
    single = Craft(tiny, layer="relu2", n_concepts=1, patch_size=8, progress=False).fit(images, 0)
    with pytest.raises(ValueError, match="at least 2 concepts"):
        concept_mufidelity(single, images, torch.ones(1))
