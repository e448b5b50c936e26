"""``spyglass train harmonize``: fine-tunes a torchvision model and writes a model file ``--model`` takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from spyglass import models
from spyglass.cli.root import app

runner = CliRunner()


def _folder(root: Path, maps: bool = True) -> Path:
    for c, wnid in enumerate(("n01440764", "n02102040")):
        (root / wnid).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), (100 * c, 50 * i, 30)).save(root / wnid / f"{i}.png")
            if maps:
                np.save(root / wnid / f"{i}.npy", np.arange(16.0).reshape(4, 4))
    return root


def test_train_harmonize_writes_a_model_file_every_command_takes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), start)
    out = tmp_path / "harmonized.pt"
    data = _folder(tmp_path / "data")
    arguments = ["train", "harmonize", "--data", str(data), "--model", "resnet18"]
    arguments += ["--weights", str(start), "--out", str(out), "--size", "32", "--batch-size", "4"]
    arguments += ["--lr", "1e-3", "--no-progress"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "trained 1 steps" in result.output and f"use it as `--model {out}`" in result.output
    trained = models.load(str(out))  # no name, no weights: the file says what it is
    initial = models.load("resnet18", weights=start)
    assert trained.spec == {"builder": "zoo", "arguments": {"name": "resnet18"}}
    assert trained.input_size == initial.input_size and trained.class_names == initial.class_names
    changed = [
        not torch.equal(a, b)
        for a, b in zip(trained.network.parameters(), initial.network.parameters(), strict=True)
    ]
    assert any(changed)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(trained(x), models.load("resnet18", weights=out)(x))
    photo = data / "n01440764" / "0.png"
    result = runner.invoke(app, ["predict", str(photo), "--model", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["explain", str(photo), "--model", str(out), "-M", "saliency", "--out", str(tmp_path / "maps")]
    )
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "maps").iterdir())
    # --out is never overwritten, and refused before any training.
    written = out.read_bytes()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and "exists" in result.output and "trained" not in result.output
    assert out.read_bytes() == written


def test_train_harmonize_refuses_a_folder_without_maps(tmp_path: Path) -> None:
    arguments = ["train", "harmonize", "--data", str(_folder(tmp_path / "data", maps=False))]
    arguments += ["--model", "resnet18", "--out", str(tmp_path / "o.pt"), "--no-progress"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    assert "has a human map" in result.output


def test_alignment_command_scores_a_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), start)
    arguments = ["alignment", "--maps", str(_folder(tmp_path / "data")), "--model", "resnet18"]
    arguments += ["--weights", str(start), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "4 image(s), resnet18, saliency" in result.output
    assert "human feature alignment:" in result.output and "constant maps left out: 0" in result.output
    report = json.loads((tmp_path / "out" / "alignment.json").read_text())
    assert report["n_images"] == 4 and len(report["per_image"]) == 4
    assert report["score"] == pytest.approx(report["spearman"] / 0.65753)
