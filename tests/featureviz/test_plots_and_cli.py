"""The featureviz figure, and `spyglass visualize` driven as a user would, with cheap settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from spyglass import plots
from spyglass.cli.main import app
from spyglass.featureviz import Visualization

runner = CliRunner()
CHEAP = ["--steps", "2", "--image-size", "64", "--nb-crops", "1", "--no-progress"]


def make(size: int = 8) -> Visualization:
    image = torch.full((3, size, size), 0.8)
    transparency = torch.zeros(size, size)
    transparency[: size // 2] = 1.0
    return Visualization(image, transparency, torch.zeros(2))


def test_visualizations_figure_has_image_and_faded_rows() -> None:
    figure = plots.visualizations([make(), make()], titles=["a", "b"])
    assert isinstance(figure, Figure) and isinstance(figure.canvas, FigureCanvasAgg)
    assert len(figure.axes) == 4
    assert [ax.get_title() for ax in figure.axes[:2]] == ["a", "b"]
    faded = np.asarray(plots.transparent_image(make()))
    assert faded.shape == (8, 8, 3)
    assert (faded[:4] == 204).all() and (faded[4:] == 0).all()  # 0.8 × 1 and 0.8 × 0
    assert len(plots.visualizations(make()).axes) == 2


def test_visualizations_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"must be a spyglass\.featureviz\.Visualization"):
        plots.visualizations([torch.rand(3, 8, 8)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="titles must have one entry per visualization"):
        plots.visualizations([make()], titles=["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        plots.visualizations([])
    bad = Visualization(torch.rand(3, 8, 8), torch.rand(4, 4), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\(3, S, S\) image and an \(S, S\) transparency"):
        plots.visualizations(bad)


@pytest.mark.parametrize("method", ["maco", "fourier"])
def test_visualize_writes_images_figure_and_npz(tmp_path: Path, method: str) -> None:
    out = tmp_path / "out"
    args = ["visualize", "--class", "1", "--layer", "blocks.5", "--channel", "3", "--method", method]
    result = runner.invoke(app, [*args, "--out", str(out), *CHEAP])
    assert result.exit_code == 0, result.output
    assert "goldfish" in result.output and "after 2 steps" in result.output
    for name in ("image.png", "transparency.png", "visualization.png"):
        with Image.open(out / name) as written:
            assert written.format == "PNG"
            if name != "visualization.png":
                assert written.size == (64, 64)
    saved = np.load(out / "visualization.npz")
    assert saved["image"].shape == (3, 64, 64) and saved["transparency"].shape == (64, 64)
    assert saved["history"].shape == (2,)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "1000"], "--class must be a class index in [0, 999]"),
        (["--class", "1", "--method", "lucid"], "--method must be maco or fourier"),
        (["--layer", "blocks.5"], "--layer and --channel go together"),
        ([], "give --target K, or --layer L with --channel C"),
        (["--layer", "blocks.55", "--channel", "0"], "unknown layer 'blocks.55'"),
        (["--layer", "blocks.5", "--channel", "999"], "channel index 999 is out of range"),
    ],
)
def test_visualize_bad_input_is_a_one_line_error(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["visualize", *extra, "--out", str(out), *CHEAP])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert "Traceback" not in result.output and not out.exists()
