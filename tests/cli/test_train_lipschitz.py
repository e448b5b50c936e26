"""``spyglass train lipschitz`` writes a model file that ``--model`` accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from spyglass import models
from spyglass.cli.root import app

runner = CliRunner()


def test_train_lipschitz_writes_a_model_that_other_commands_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, column in (("left", 0), ("right", 10)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = (rng.random((16, 16, 3)) * 70).astype(np.uint8)
            pixels[5:11, column : column + 6] = 255
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    out = tmp_path / "lip.pt"
    args = ["train", "lipschitz", "--data", str(tmp_path / "data"), "--size", "16", "--widths", "4"]
    args += ["--depth", "1", "--epochs", "3", "--batch-size", "4", "--lambda", "9", "--no-progress"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "≤ 1.0000" in result.output and f"wrote {out}" in result.output
    model = models.load(str(out))
    assert model.class_names == ["left", "right"] and model.input_size == (16, 16)
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 2)
    result = runner.invoke(app, ["predict", str(tmp_path / "data" / "left" / "0.png"), "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert "left" in result.output or "right" in result.output
    # Both --alpha and --lambda: one line, exit 2, nothing written.
    result = runner.invoke(app, [*args, "--alpha", "0.5", "--out", str(tmp_path / "other.pt")])
    assert result.exit_code == 2 and result.output.startswith("error: give --alpha or --lambda")
    assert not (tmp_path / "other.pt").exists()
