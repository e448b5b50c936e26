"""`spyglass concepts`, driven as a user would, on the default model with cheap settings."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spyglass.cli.main import app
from spyglass.data import sample_photos

runner = CliRunner()
CHEAP = ["--patch-size", "112", "--n-concepts", "2", "--nb-design", "8", "--no-progress"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("espresso")
    for name, photo in sample_photos(["coffee", "chelsea"]).items():
        photo.save(folder / f"{name}.jpg")
    return folder


def test_concepts_writes_figures_and_npz(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["concepts", str(photos), "--class", "967", "--out", str(out), *CHEAP])
    assert result.exit_code == 0, result.output
    assert "2 concepts of class 967 espresso at layer bn2 from 2 image(s), 8 crops" in result.output
    for name in ("importance.png", "crops.png", "maps.png", "concepts.npz"):
        assert f"wrote {out / name}" in result.output
    for name in ("importance.png", "crops.png", "maps.png"):
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.width > 100
    saved = np.load(out / "concepts.npz")
    assert saved["components"].shape == (2, 1280) and (saved["components"] >= 0).all()
    assert saved["importance"].shape == (2,) and np.isfinite(saved["importance"]).all()
    assert int(saved["class_id"]) == 967 and str(saved["layer"]) == "bn2"


@pytest.mark.parametrize("bad", ["1000", "-1"])
def test_bad_class_is_a_one_line_error(photos: Path, tmp_path: Path, bad: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["concepts", str(photos), "--class", bad, "--out", str(out), *CHEAP])
    assert result.exit_code == 2
    assert result.output.startswith("error: --class must be a class index in [0, 999]")
    assert "Traceback" not in result.output and not out.exists()


def test_a_file_or_too_few_crops_is_a_one_line_error(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["concepts", str(photos / "coffee.jpg"), "--class", "967", "--out", str(out), *CHEAP]
    )
    assert result.exit_code == 2 and "is not a folder" in result.output
    args = ["concepts", str(photos), "-c", "967", "--out", str(out), "--patch-size", "224"]
    result = runner.invoke(app, [*args, "--n-concepts", "3", "--no-progress"])
    assert result.exit_code == 2 and "error: CRAFT needs at least n_concepts=3 crops" in result.output
    assert not out.exists()
