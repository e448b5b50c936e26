"""Concept figures on a tiny fitted CRAFT: layout, titles, order and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spyglass import plots
from spyglass.concepts import Craft
from tests.tiny import TinyNet, block_images


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return block_images(6)


@pytest.fixture(scope="module")
def fitted(images: torch.Tensor) -> Craft:
    return Craft(TinyNet(), layer="relu2", n_concepts=3, patch_size=8, progress=False).fit(images, 1)


def image_axes(figure: Figure) -> list:
    return [ax for ax in figure.axes if ax.get_images() and ax.get_visible()]


def test_importance_bars_are_sorted_and_labelled() -> None:
    figure = plots.concept_importance(np.array([0.1, 0.5, -0.05, 0.2]), names=["a", "b", "c", "d"])
    assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "d", "a", "c"]  # top to bottom
    widths = sorted(((p.get_y(), p.get_width()) for p in ax.patches), key=lambda yw: yw[0])
    np.testing.assert_allclose([w for _, w in widths], [0.5, 0.2, 0.1, -0.05])
    assert [t.get_text() for t in ax.texts] == ["0.5", "0.2", "0.1", "-0.05"]
    default = plots.concept_importance(torch.tensor([0.3, 0.7]))
    assert [t.get_text() for t in default.axes[0].get_yticklabels()] == ["concept 1", "concept 0"]


@pytest.mark.parametrize(
    ("importance", "names", "message"),
    [
        (torch.rand(2, 3), None, r"1-d vector .* got shape \(2, 3\)"),
        (torch.tensor([]), None, "non-empty"),
        (torch.rand(3), ["a", "b"], "names must be a sequence of 3 strings"),
        (torch.tensor([0.1, float("nan")]), None, "NaN"),
    ],
)
def test_importance_errors(importance: torch.Tensor, names: list[str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plots.concept_importance(importance, names=names)


def test_crops_are_a_row_per_concept_of_its_best_crops(fitted: Craft) -> None:
    importance = torch.tensor([0.1, 0.3, 0.2])
    figure = plots.concept_crops(fitted, concepts=[1, 2], per_concept=4, importance=importance)
    cells = image_axes(figure)
    assert len(cells) == 2 * 4
    assert [row.get_suptitle() for row in figure.subfigs] == [
        "concept 1  (importance 0.3)",
        "concept 2  (importance 0.2)",
    ]
    # The first row shows concept 1's crops in decreasing coefficient, at their own size.
    best = fitted.crops_u_[:, 1].argsort(descending=True)[:4]
    first_row = figure.subfigs[0].axes
    for ax, index in zip(first_row, best.tolist(), strict=True):
        np.testing.assert_allclose(
            ax.get_images()[0].get_array(), fitted.crops_[index].permute(1, 2, 0).double(), atol=1e-6
        )
    everything = plots.concept_crops(fitted)
    assert len(image_axes(everything)) == 3 * 8
    assert [row.get_suptitle() for row in everything.subfigs] == ["concept 0", "concept 1", "concept 2"]


def test_crops_errors(fitted: Craft) -> None:
    unfitted = Craft(TinyNet(), layer="relu2", n_concepts=3, patch_size=8, progress=False)
    with pytest.raises(ValueError, match="not fitted yet"):
        plots.concept_crops(unfitted)
    with pytest.raises(TypeError, match=r"craft must be a spyglass\.concepts\.Craft"):
        plots.concept_crops(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"concepts must be an int in \[0, 2\] \(concept indices\); got 3"):
        plots.concept_crops(fitted, concepts=[3])
    with pytest.raises(ValueError, match="per_concept must be a positive int"):
        plots.concept_crops(fitted, per_concept=0)
    with pytest.raises(ValueError, match=r"one value per concept \(3\); got 2"):
        plots.concept_crops(fitted, importance=torch.rand(2))


def test_maps_overlay_each_concept_on_the_image(fitted: Craft, images: torch.Tensor) -> None:
    maps = fitted.concept_maps(images[:1])[0]
    figure = plots.concept_maps(images[0], maps, importance=torch.tensor([0.1, 0.5, 0.2]))
    cells = image_axes(figure)
    assert [ax.get_title() for ax in cells] == [
        "image",
        "concept 1\nimportance 0.5",
        "concept 2\nimportance 0.2",
        "concept 0\nimportance 0.1",
    ]
    np.testing.assert_allclose(cells[0].get_images()[0].get_array(), images[0].permute(1, 2, 0).double())
    expected = np.asarray(plots.overlay(images[0], maps[1], signed=False))
    np.testing.assert_array_equal(cells[1].get_images()[0].get_array(), expected)
    # Seven panels in rows of five; a subset of concepts keeps its indices in the titles.
    wrapped = plots.concept_maps(images[0], torch.rand(6, 32, 32), concepts=[9, 8, 7, 6, 5, 4])
    assert len(image_axes(wrapped)) == 7
    assert image_axes(wrapped)[1].get_title() == "concept 9"


def test_maps_errors(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"maps must have shape \(r, H, W\) .* got \(3, 16, 32\)"):
        plots.concept_maps(images[0], torch.rand(3, 16, 32))
    with pytest.raises(ValueError, match=r"take maps\[i\]"):
        plots.concept_maps(images[0], torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"image must have shape \(3, H, W\)"):
        plots.concept_maps(images, torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"one value per concept \(3\); got 4"):
        plots.concept_maps(images[0], torch.rand(3, 32, 32), importance=torch.rand(4))
    with pytest.raises(ValueError, match=r"one concept per map \(3\); got 2"):
        plots.concept_maps(images[0], torch.rand(3, 32, 32), concepts=[0, 1])


def test_concept_figures_save_as_png(fitted: Craft, images: torch.Tensor, tmp_path) -> None:
    for name, figure in {
        "importance": plots.concept_importance(torch.rand(3)),
        "crops": plots.concept_crops(fitted, per_concept=3),
        "maps": plots.concept_maps(images[0], fitted.concept_maps(images[:1])[0]),
    }.items():
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
