"""``spyglass lens info`` and ``spyglass lens build`` on the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from spyglass.cli import app

runner = CliRunner()


def test_info_shows_provenance_counts_and_failures(tiny_atlas: Path, tmp_path: Path) -> None:
    from spyglass.lens import Atlas

    root = tmp_path / "atlas"
    shutil.copytree(tiny_atlas, root)
    with Atlas.open(root) as atlas:
        atlas.record_failure(4, "ValueError: a broken class")
    result = runner.invoke(app, ["lens", "info", str(root)])
    assert result.exit_code == 0, result.output
    assert "model: tests.tiny:tiny_model" in result.output
    assert "classes: 2 done, 1 failed, 2 pending (of 5)" in result.output
    assert "failed 4 c4: ValueError: a broken class" in result.output
    assert "important_rule: top concept of >= 10% of the images" in result.output


def test_info_of_a_folder_without_an_atlas_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lens", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path} is not an atlas")


def test_build_into_an_atlas_of_another_model_is_refused(
    tiny_atlas: Path, photo_folder: Path, tmp_path: Path
) -> None:
    root = tmp_path / "atlas"
    shutil.copytree(tiny_atlas, root)
    result = runner.invoke(
        app, ["lens", "build", "--data", str(photo_folder), "--out", str(root), "--fast", "--no-progress"]
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: atlas {root} was built differently")
    assert "model: the atlas has 'tests.tiny:tiny_model', this build 'efficientnet_lite0'" in result.output
    assert len(result.output.strip().splitlines()) == 1
