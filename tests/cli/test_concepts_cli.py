"""`spyglass concepts`, driven as a user would, on the default model with cheap settings."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spyglass.cli import app
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
    result = runner.invoke(app, ["concepts", str(photos), "--target", "967", "--out", str(out), *CHEAP])
    assert result.exit_code == 0, result.output
    assert "2 concepts of class 967 espresso at layer bn2 from 2 image(s), 8 crops" in result.output
    assert "the class is --target" in result.output
    for name in ("importance.png", "crops.png", "maps.png", "concepts.npz"):
        assert f"wrote {out / name}" in result.output
    assert "no strategy.png: the strategic cluster graph needs at least 4 images" in result.output
    for name in ("importance.png", "crops.png", "maps.png"):
        with Image.open(out / name) as figure:
            assert figure.format == "PNG" and figure.width > 100
    saved = np.load(out / "concepts.npz")
    assert saved["components"].shape == (2, 1280) and (saved["components"] >= 0).all()
    assert saved["importance"].shape == (2,) and np.isfinite(saved["importance"]).all()
    assert int(saved["class_id"]) == 967 and str(saved["layer"]) == "bn2"
    assert saved["per_image_importance"].shape == (2, 2)
    assert np.allclose(saved["per_image_importance"].mean(axis=0), saved["importance"], atol=1e-6)


def test_concepts_with_enough_photos_draws_the_strategies(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, photo in sample_photos().items():  # all 7 bundled photos
        photo.save(photos / f"{name}.jpg")
    out = tmp_path / "out"
    # The old spellings (--images/-i, --class/-c) are hidden aliases for one release.
    args = ["concepts", "-i", str(photos), "--class", "967", "--out", str(out), "--map", "coefficients"]
    result = runner.invoke(app, [*args, *CHEAP])
    assert result.exit_code == 0, result.output
    assert "important concepts (dominant on >= 10% of the images): " in result.output
    assert f"wrote {out / 'strategy.png'}" in result.output and "coefficients maps" in result.output
    with Image.open(out / "strategy.png") as figure:
        assert figure.format == "PNG" and figure.width > 100
    bad = runner.invoke(app, [*args[:-1], "heatmap", *CHEAP])
    assert bad.exit_code == 2 and "--map must be 'gradcam' or 'coefficients'" in bad.output


@pytest.mark.parametrize("flag", ["--target", "-t", "--class"])
@pytest.mark.parametrize("bad", ["1000", "-1"])
def test_bad_class_is_a_one_line_error(photos: Path, tmp_path: Path, bad: str, flag: str) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["concepts", str(photos), flag, bad, "--out", str(out), *CHEAP])
    assert result.exit_code == 2
    shown = "--class" if flag == "--class" else "--target"  # the message names the flag typed
    assert result.output.startswith(f"error: {shown} must be a class index in [0, 999]")
    assert "Traceback" not in result.output and not out.exists()


def test_too_few_crops_is_a_one_line_error(photos: Path, tmp_path: Path) -> None:
    # Image files are taken as well as folders (the one vocabulary of every command; before
    # it, --images took only a folder): one photo at patch size 224 gives 1 crop < 3 concepts.
    out = tmp_path / "out"
    args = ["concepts", "--images", str(photos / "coffee.jpg"), "-c", "967", "--out", str(out)]
    args += ["--patch-size", "224"]
    result = runner.invoke(app, [*args, "--n-concepts", "3", "--no-progress"])
    assert (
        result.exit_code == 2
        and "error: CRAFT needs at least n_concepts=3 crops; 1 image(s)" in result.output
    )
    assert not out.exists()


def test_no_images_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["concepts", "-t", "967", "--out", str(tmp_path / "out"), *CHEAP])
    assert result.exit_code == 2 and result.output.startswith("error: no images given")
