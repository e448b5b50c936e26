"""The strategic cluster graph: per-image importance, its UMAP embedding and the importance rule."""

from __future__ import annotations

import doctest

import pytest
import torch

from spyglass import plots
from spyglass.concepts import Craft, StrategicClusterGraph, strategic_cluster_graph
from spyglass.concepts import strategic as strategic_module
from tests.tiny import TinyNet, block_images


@pytest.fixture
def craft3() -> Craft:
    return Craft(TinyNet(), layer="relu2", n_concepts=3, patch_size=8, progress=False)


def planted(counts: tuple[int, int, int], *, seed: int = 0) -> torch.Tensor:
    """Per-image importance in three groups, group ``i`` dominated by concept ``i``."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for concept, count in enumerate(counts):
        block = 0.1 * torch.rand(count, 3, generator=generator)
        block[:, concept] += 1.0 + 0.1 * torch.rand(count, generator=generator)
        rows.append(block)
    return torch.cat(rows)


def test_groups_of_images_with_one_dominant_concept_form_clusters(craft3: Craft) -> None:
    phi = planted((20, 3, 17))
    graph = strategic_cluster_graph(craft3, importance=phi, seed=0)
    assert len(graph) == 40 and graph.embedding.shape == (40, 2)
    groups = torch.tensor([0] * 20 + [1] * 3 + [2] * 17)
    assert torch.equal(graph.dominant, groups)
    assert torch.allclose(graph.shares, torch.tensor([20, 3, 17]) / 40)
    assert torch.allclose(graph.mean_importance, phi.mean(dim=0))
    # The rule: concept 1 dominates 7.5 % of the images, under the default 10 %.
    assert graph.important == [0, 2] and graph.min_share == 0.1
    assert strategic_cluster_graph(craft3, importance=phi, min_share=0.05).important == [0, 2, 1]
    assert strategic_cluster_graph(craft3, importance=phi, min_share=0.5).important == [0]
    # The two large groups are separate in the embedding: every point's nearest neighbour
    # among the others belongs to its own group.
    big = groups != 1
    points = graph.embedding[big]
    distances = torch.cdist(points, points) + torch.diag(torch.full((int(big.sum()),), float("inf")))
    assert torch.equal(groups[big][distances.argmin(dim=1)], groups[big])
    # Seeded: the same seed gives the same embedding.
    again = strategic_cluster_graph(craft3, importance=phi, seed=0)
    assert torch.allclose(again.embedding, graph.embedding)


def test_a_share_exactly_at_the_threshold_counts(craft3: Craft) -> None:
    graph = strategic_cluster_graph(craft3, importance=planted((24, 3, 3)), min_share=0.1)
    assert graph.important == [0, 1, 2]


def test_images_are_explained_with_the_craft_importance(craft3: Craft) -> None:
    images = block_images(8, seed=2)
    craft3.fit(images, 1)
    graph = strategic_cluster_graph(craft3, images, n_neighbors=4)
    expected = craft3.importance(images, "gradient_input", per_image=True)
    assert torch.allclose(graph.importance, expected)
    assert torch.equal(graph.dominant, expected.argmax(dim=1))
    sobol = strategic_cluster_graph(craft3, images, method="sobol", nb_design=8, n_neighbors=4)
    assert torch.allclose(sobol.importance, craft3.importance(images, "sobol", per_image=True, nb_design=8))


def test_clear_errors(craft3: Craft) -> None:
    phi = planted((5, 5, 5))
    with pytest.raises(ValueError, match="either images"):
        strategic_cluster_graph(craft3)
    with pytest.raises(ValueError, match="either images"):
        strategic_cluster_graph(craft3, torch.rand(4, 3, 32, 32), importance=phi)
    with pytest.raises(ValueError, match="at least 4 images"):
        strategic_cluster_graph(craft3, importance=phi[:3])
    with pytest.raises(ValueError, match=r"\(N, n_concepts=3\)"):
        strategic_cluster_graph(craft3, importance=phi[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        strategic_cluster_graph(craft3, importance=phi.index_fill(0, torch.tensor([0]), float("nan")))
    with pytest.raises(ValueError, match="min_share"):
        strategic_cluster_graph(craft3, importance=phi, min_share=1.5)
    with pytest.raises(ValueError, match="only apply when images"):
        strategic_cluster_graph(craft3, importance=phi, nb_design=8)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        strategic_cluster_graph(craft3, importance=phi.numpy())  # type: ignore[arg-type]


def test_plot_colours_the_important_concepts_and_greys_the_others(craft3: Craft) -> None:
    graph = strategic_cluster_graph(craft3, importance=planted((20, 3, 17)))
    figure = plots.strategic_cluster_graph(graph, names=["fins", "water", "hands"])
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["fins · 50%", "hands · 42%", "water · 8%"]
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert len(set(colours[:2])) == 2 and colours[2][:3] == pytest.approx((0.69, 0.69, 0.69), abs=0.01)
    with pytest.raises(TypeError, match="StrategicClusterGraph"):
        plots.strategic_cluster_graph(planted((2, 2, 2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 strings"):
        plots.strategic_cluster_graph(graph, names=["a"])


def test_docstring_examples_run() -> None:
    assert isinstance(StrategicClusterGraph, type)
    for module in (strategic_module, plots.concepts):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
