"""`spyglass evaluate`, driven as a user would, on the default model and two bundled photos."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spyglass.cli import app
from spyglass.data import sample_photos
from spyglass.models import VisionModel

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, photo in sample_photos(["coffee", "chelsea"]).items():
        photo.save(folder / f"{name}.jpg")
    return folder


def test_evaluate_prints_and_writes_the_table_and_curves(
    photos: Path, tmp_path: Path, lite0: VisionModel
) -> None:
    out = tmp_path / "out"
    arguments = ["evaluate", str(photos), "-M", "saliency", "--out", str(out)]
    arguments += ["--metric", "deletion", "--metric", "insertion", "--metric", "mufidelity"]
    arguments += ["--metric-option", "deletion.steps=2", "--metric-option", "insertion.steps=2"]
    arguments += ["--metric-option", "mufidelity.nb_samples=4", "--no-progress"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "deletion (↓ lower is better)" in result.output
    assert "insertion (↑ higher is better)" in result.output
    csv_lines = (out / "evaluation.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,deletion (↓ lower is better)")
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["saliency"]
    assert (out / "evaluation.md").read_text().count("\n") == 3
    assert (out / "curves.png").stat().st_size > 0


def test_evaluate_rejects_unknown_metrics_and_options(photos: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["evaluate", "--data", str(photos), "--metric", "delition", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "unknown metric 'delition'" in result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(photos),
            "--metric-option",
            "deletion.nb_samples=3",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "does not take option" in result.output
    listed = runner.invoke(app, ["evaluate", "--list-metrics"])
    assert "mufidelity (↑ higher is better)" in listed.output


def test_list_metrics_marks_the_metrics_packages_defaults() -> None:
    from spyglass import metrics

    listed = runner.invoke(app, ["evaluate", "--list-metrics"])
    assert listed.exit_code == 0, listed.output
    marked = [line.split()[0] for line in listed.output.splitlines() if line.endswith("[default]")]
    assert marked == [name for name in metrics.list_metrics() if name in metrics.DEFAULT_METRICS]
    assert set(marked) == set(metrics.DEFAULT_METRICS)


def test_old_data_spelling_reads_the_same_images(photos: Path, tmp_path: Path) -> None:
    # --data/-d (repeatable) is the old spelling of the positional paths, kept hidden.
    cheap = ["-M", "saliency", "--metric", "deletion", "--metric-option", "steps=2", "--no-progress"]
    tables = []
    for spelling in (
        ["--data", str(photos / "coffee.jpg"), "-d", str(photos / "chelsea.jpg")],
        [str(photos / "coffee.jpg"), str(photos / "chelsea.jpg")],
    ):
        out = tmp_path / str(len(tables))
        result = runner.invoke(app, ["evaluate", *spelling, "--out", str(out), *cheap])
        assert result.exit_code == 0, result.output
        assert "2 image(s)" in result.output
        tables.append((out / "evaluation.csv").read_text())
    assert tables[0] == tables[1]


def test_evaluate_runs_mege_and_reco_with_the_default_head_fine_tuning(tmp_path: Path) -> None:
    """Two tench and two springer photos, interleaved so that each of the 2 seeded folds holds one of each."""
    import math
    import shutil

    from tests.conftest import SHARED_DATA

    source = SHARED_DATA / "imagenette-val"
    if not source.is_dir():
        pytest.skip(f"real ImageNet photos not found at {source}")
    photos = tmp_path / "photos"
    photos.mkdir()
    tench, dogs = (sorted((source / wnid).iterdir())[:2] for wnid in ("n01440764", "n02102040"))
    for index, path in enumerate([dogs[0], tench[0], dogs[1], tench[1]]):
        shutil.copy(path, photos / f"{index}_{path.parent.name}.jpg")
    out = tmp_path / "out"
    arguments = ["evaluate", str(photos), "-M", "saliency", "--out", str(out), "--no-progress"]
    arguments += ["--metric", "mege", "--metric", "reco"]
    arguments += ["--metric-option", "mege.k=2", "--metric-option", "reco.k=2"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    header, row = (out / "evaluation.csv").read_text().splitlines()
    assert header == "method,mege (↑ higher is better),reco (↑ higher is better)"
    name, mege, reco = row.split(",")
    assert name == "saliency"
    assert 0.0 < float(mege) <= 1.0  # fold models trained on one photo of each class get the others right
    assert math.isnan(float(reco)) or 0.0 <= float(reco) <= 1.0  # NaN when no two fold models disagree
    listed = runner.invoke(app, ["evaluate", "--list-metrics"]).output
    assert "mege (↑ higher is better) · of method" in listed
    assert "deletion (↓ lower is better) · of maps  [default]" in listed
