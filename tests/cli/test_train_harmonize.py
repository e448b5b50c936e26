"""``spyglass train harmonize``: fine-tunes a torchvision model and writes weights models.load reads."""

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


def test_train_harmonize_writes_loadable_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), start)
    out = tmp_path / "harmonized.pt"
    arguments = ["train", "harmonize", "--data", str(_folder(tmp_path / "data")), "--model", "resnet18"]
    arguments += ["--weights", str(start), "--out", str(out), "--size", "32", "--batch-size", "4"]
    arguments += ["--lr", "1e-3", "--no-progress"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "trained 1 steps" in result.output
    trained = models.load("resnet18", weights=out)
    initial = models.load("resnet18", weights=start)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(trained.network.parameters(), initial.network.parameters(), strict=True)
    ]
    assert any(changed)


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
