"""The attribution grid and the overlay helper: layout, colours, sizes and errors."""

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spyglass import plots


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 20, 30, generator=torch.Generator().manual_seed(0))


def image_axes(figure: Figure) -> list:
    """The grid's cells: the axes that show an image (colour bars have no AxesImage)."""
    return [ax for ax in figure.axes if ax.get_images() and ax.get_label() != "<colorbar>"]


def test_grid_has_one_row_per_image_and_a_column_per_method(images: torch.Tensor) -> None:
    maps = {
        "saliency": torch.rand(3, 20, 30),
        "integrated_gradients": np.random.default_rng(0).normal(size=(3, 20, 30)),
    }
    figure = plots.attributions(images, maps, row_labels=["tabby", "espresso", "missile"], colorbar=False)
    assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
    cells = image_axes(figure)
    assert len(cells) == 3 * 3
    rows = sorted({round(ax.get_position().y0, 3) for ax in cells}, reverse=True)
    columns = sorted({round(ax.get_position().x0, 3) for ax in cells})
    assert len(rows) == 3 and len(columns) == 3
    top_row = sorted(
        (ax for ax in cells if round(ax.get_position().y0, 3) == rows[0]), key=lambda a: a.get_position().x0
    )
    assert [ax.get_title() for ax in top_row] == ["image", "saliency", "integrated gradients"]
    first_column = sorted(
        (ax for ax in cells if round(ax.get_position().x0, 3) == columns[0]),
        key=lambda a: -a.get_position().y0,
    )
    assert [ax.get_ylabel() for ax in first_column] == ["tabby", "espresso", "missile"]
    # The first column shows the images themselves, untouched.
    np.testing.assert_allclose(
        first_column[1].get_images()[0].get_array(), images[1].permute(1, 2, 0).double()
    )


def test_single_map_titles_and_colour_bars(images: torch.Tensor) -> None:
    figure = plots.attributions(images[:1], torch.rand(1, 20, 30), titles=["my map"])
    cells = image_axes(figure)
    assert len(cells) == 2 and cells[1].get_title() == "my map"
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1
    assert [t.get_text() for t in bars[0].get_xticklabels()] == ["low", "high"]


def test_figure_saves_as_png(images: torch.Tensor, tmp_path) -> None:
    figure = plots.attributions(images, {"a": torch.rand(3, 20, 30)})
    figure.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_signed_and_one_signed_maps_are_told_apart() -> None:
    rng = np.random.default_rng(0)
    assert plots.is_signed(rng.normal(size=(2, 16, 16)))
    assert not plots.is_signed(np.abs(rng.normal(size=(2, 16, 16))))
    # Estimator noise just below zero does not make a non-negative map signed...
    assert not plots.is_signed(rng.uniform(0, 1, size=(16, 16)) - 0.01)
    # ...nor does a map all of one sign (RISE's expected scores of a negative logit).
    assert not plots.is_signed(rng.uniform(-3, -2, size=(16, 16)))
    assert not plots.is_signed(np.zeros((4, 4)))


def test_signed_map_is_diverging_and_centred_at_zero() -> None:
    grey = torch.full((3, 1, 3), 0.5)
    values = torch.tensor([[-1.0, 0.0, 1.0]])
    pixels = np.asarray(plots.overlay(grey, values, alpha=1.0), dtype=float)
    blue, middle, red = pixels[0]
    assert blue[2] > blue[0] + 40  # negative: blue
    assert red[0] > red[2] + 40  # positive: red
    # Zero attribution is fully transparent: the greyed image shows through unchanged.
    np.testing.assert_allclose(middle, [(0.25 + 0.6 * 0.5) * 255] * 3, atol=1)
    # The scale is symmetric: halving the negative side leaves 0 transparent.
    halved = np.asarray(plots.overlay(grey, torch.tensor([[-0.5, 0.0, 1.0]]), alpha=1.0), dtype=float)
    np.testing.assert_allclose(halved[0, 1], middle, atol=1)


def test_one_signed_map_is_sequential_robust_and_offset_free() -> None:
    grey = torch.full((3, 1, 101), 0.5)
    values = np.linspace(0.0, 1.0, 101)[None]  # float64: the offset below loses no precision
    values[0, -1] = 1000.0  # one outlier
    pixels = np.asarray(plots.overlay(grey, values, alpha=1.0, percentile=98), dtype=float)
    base = (0.25 + 0.6 * 0.5) * 255
    np.testing.assert_allclose(pixels[0, :2], [[base] * 3] * 2, atol=1)  # low end: transparent
    # Above the 98th percentile everything clips to the top colour; the outlier washes nothing out.
    np.testing.assert_allclose(pixels[0, -1], pixels[0, -2])
    assert np.abs(pixels[0, 50] - base).max() > 20
    top = np.asarray(plots.overlay(grey, values, alpha=1.0, percentile=98, cmap="inferno"))[0, -1]
    np.testing.assert_array_equal(pixels[0, -1], top)
    assert pixels[0, -1, 0] > pixels[0, -1, 2]  # inferno's top is yellow, not blue
    # A constant offset (RISE's mean score) changes nothing.
    shifted = np.asarray(plots.overlay(grey, values + 50.0, alpha=1.0, percentile=98), dtype=float)
    np.testing.assert_allclose(shifted, pixels, atol=3)  # up to one step of the 256-colour table


def test_forcing_signed_changes_the_colours() -> None:
    image, values = torch.full((3, 8, 8), 0.5), torch.rand(8, 8)
    default = np.asarray(plots.overlay(image, values))
    assert not np.array_equal(default, np.asarray(plots.overlay(image, values, signed=True)))
    np.testing.assert_array_equal(default, np.asarray(plots.overlay(image, values, signed=False)))


def test_overlay_returns_an_rgb_image_of_the_input_size() -> None:
    result = plots.overlay(torch.rand(3, 20, 30), np.random.default_rng(0).normal(size=(20, 30)))
    assert result.mode == "RGB" and result.size == (30, 20)


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (
            {"saliency": torch.rand(2, 20, 30)},
            r"maps\['saliency'\] must have shape \(N, H, W\) = \(3, 20, 30\)",
        ),
        ({"saliency": torch.rand(3, 30, 20)}, r"got \(3, 30, 20\)"),
        (torch.rand(3, 20, 30, 1), r"maps must have shape"),
        ({}, "empty dict"),
        ({"nan": torch.full((3, 20, 30), float("nan"))}, "NaN"),
    ],
)
def test_mismatched_or_bad_maps_are_clear_errors(images: torch.Tensor, maps: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plots.attributions(images, maps)  # type: ignore[arg-type]


def test_other_bad_arguments_are_clear_errors(images: torch.Tensor) -> None:
    maps = {"a": torch.rand(3, 20, 30)}
    with pytest.raises(TypeError, match="maps must be"):
        plots.attributions(images, [torch.rand(3, 20, 30)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="titles must be a sequence of 1"):
        plots.attributions(images, maps, titles=["a", "b"])
    with pytest.raises(ValueError, match="row_labels must be a sequence of 3"):
        plots.attributions(images, maps, row_labels=["x"])
    with pytest.raises(ValueError, match=r"images must be .* \(N, 3, H, W\)"):
        plots.attributions(images[0], maps)
    with pytest.raises(ValueError, match="unknown matplotlib colour map"):
        plots.attributions(images, maps, cmap="not-a-map")
    with pytest.raises(ValueError, match="percentile"):
        plots.attributions(images, maps, percentile=0)
    with pytest.raises(
        ValueError, match=r"attribution_map must have the image's shape \(H, W\) = \(20, 30\)"
    ):
        plots.overlay(images[0], torch.rand(30, 20))
    with pytest.raises(ValueError, match=r"image must have shape \(3, H, W\)"):
        plots.overlay(images, torch.rand(20, 30))
