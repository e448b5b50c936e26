"""`spyglass explain`, driven as a user would, on the default model and bundled photos."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spyglass import attributions
from spyglass.cli import app
from spyglass.data import read_images, sample_photos
from spyglass.models import VisionModel

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, photo in sample_photos(["coffee", "chelsea"]).items():
        photo.save(folder / f"{name}.jpg")
    return folder


def test_explain_a_folder_writes_maps_and_grid(photos: Path, tmp_path: Path, lite0: VisionModel) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "explain",
            str(photos),
            "-M",
            "saliency",
            "--method",
            "gradient_input",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "coffee.jpg: 967 espresso (top-1" in result.output
    assert f"wrote {out / 'attributions.png'}" in result.output
    grid = Image.open(out / "attributions.png")
    assert grid.width > grid.height  # 2 rows × 3 columns (image, saliency, gradient input)
    written = sorted(p.name for p in out.glob("*.npy"))
    assert written == [
        "chelsea.gradient_input.npy",
        "chelsea.saliency.npy",
        "coffee.gradient_input.npy",
        "coffee.saliency.npy",
    ]
    # The files hold the method's maps of the top-1 class, at the model's input size.
    batch = read_images(photos, lite0.preprocess, progress=False)
    top1 = lite0.predict(batch.images, top_k=1, progress=False).indices[:, 0]
    expected = attributions.create("saliency", lite0, progress=False)(batch.images, top1)
    for i, stem in enumerate(batch.names):
        saved = np.load(out / f"{stem}.saliency.npy")
        assert saved.shape == (224, 224) and saved.dtype == np.float32
        np.testing.assert_allclose(saved, expected[i].numpy(), rtol=1e-4, atol=1e-6)


def test_explain_one_file_with_target_and_method_option(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "explain",
            str(photos / "coffee.jpg"),
            "-M",
            "integrated_gradients",
            "--option",
            "integrated_gradients.steps=4",
            "--target",
            "968",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "coffee.jpg: 968 cup (--target)" in result.output
    saved = np.load(tmp_path / "coffee.integrated_gradients.npy")
    assert saved.shape == (224, 224) and np.isfinite(saved).all() and saved.std() > 0
    assert (tmp_path / "attributions.png").is_file()


def test_files_with_the_same_stem_get_distinct_names(tmp_path: Path) -> None:
    for suffix in (".png", ".jpg"):
        Image.new("RGB", (40, 30), (200, 90, 10)).save(tmp_path / f"patch{suffix}")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["explain", str(tmp_path), "-M", "saliency", "-t", "1", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.npy")) == ["patch-2.saliency.npy", "patch.saliency.npy"]


def test_unknown_method_is_a_helpful_one_line_error(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["explain", str(photos), "-M", "salency", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "error: unknown attribution method 'salency'" in result.output
    assert "Did you mean saliency?" in result.output and "integrated_gradients" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # failed before any work


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # KEY=VALUE goes to the chosen methods that take KEY; an error only when none does.
        (["-M", "saliency", "-o", "steps=4"], "no chosen method (saliency) takes option 'steps'"),
        (["-M", "saliency", "-o", "saliency.steps=4"], "saliency does not take option(s) ['steps']"),
        (["-M", "saliency", "-o", "steps"], "--option must be KEY=VALUE"),
        (["-M", "saliency", "-o", "smoothgrad.nb_samples=2"], "names method 'smoothgrad'"),
        (["-M", "saliency", "-o", "batch_size=2"], "use --batch-size"),
        (["-M", "saliency", "-t", "1000"], "--target must be a class index in [0, 999]; got 1000"),
    ],
)
def test_bad_options_exit_2(photos: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["explain", str(photos / "coffee.jpg"), *args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output


def test_settings_level_reads_the_method_and_option_overrides_it(photos: Path, tmp_path: Path) -> None:
    image = str(photos / "coffee.jpg")
    common = ["-M", "integrated_gradients", "--target", "967", "--no-progress"]
    explain = ["explain", image, *common]
    quick = runner.invoke(app, [*explain, "--settings", "quick", "--out", str(tmp_path / "q")])
    by_hand = runner.invoke(app, [*explain, "-o", "steps=8", "--out", str(tmp_path / "h")])
    assert quick.exit_code == 0 and by_hand.exit_code == 0, quick.output + by_hand.output
    assert attributions.method_settings("integrated_gradients", "quick") == {"steps": 8}
    np.testing.assert_array_equal(
        np.load(tmp_path / "q" / "coffee.integrated_gradients.npy"),
        np.load(tmp_path / "h" / "coffee.integrated_gradients.npy"),
    )
    # --option wins over the level: 8 steps at "demo" (16) are the quick maps again.
    demo = ["--settings", "demo", "-o", "steps=8", "--out", str(tmp_path / "d")]
    assert runner.invoke(app, [*explain, *demo]).exit_code == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / "d" / "coffee.integrated_gradients.npy"),
        np.load(tmp_path / "q" / "coffee.integrated_gradients.npy"),
    )
    wrong = runner.invoke(app, [*explain, "--settings", "fast", "--out", str(tmp_path)])
    assert wrong.exit_code == 2
    assert "--settings must be one of 'cheap', 'quick', 'demo', 'default'" in wrong.output


def test_missing_image_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["explain", str(tmp_path / "nope.jpg"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "error: no such file or directory" in result.output


def test_list_methods_reads_the_registry() -> None:
    result = runner.invoke(app, ["explain", "--list-methods"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == attributions.list_methods()


def test_default_methods_are_the_registered_ones(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spyglass.cli._prelude.DEFAULT_METHODS", ("not_registered", "saliency"))
    result = runner.invoke(
        app, ["explain", str(photos / "coffee.jpg"), "--out", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.glob("*.npy")] == ["coffee.saliency.npy"]


def test_explain_with_eva_and_its_options(photos: Path, tmp_path: Path) -> None:
    """EVA takes options like any method; the figure says its maps are not guaranteed (hybrid)."""
    result = runner.invoke(
        app,
        [
            "explain",
            str(photos / "coffee.jpg"),
            "-M",
            "eva",
            "--option",
            "eva.epsilon=0.01",
            "--option",
            "eva.grid_size=2",
            "--option",
            "eva.nb_samples=1",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "coffee.eva.npy")
    assert saved.shape == (224, 224) and len(np.unique(saved)) <= 4  # one value per cell of 2 × 2
    assert (tmp_path / "attributions.png").is_file()
