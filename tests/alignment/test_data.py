"""HumanMapFolder, clickme_map_transform and harmonize on the shared loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from spyglass.alignment import HumanMapFolder, clickme_map_transform, harmonize


def _folder(tmp_path, maps=("npy", "png", None)):
    for c, name in enumerate(("b_class", "a_class")):
        (tmp_path / name).mkdir()
        for i, kind in enumerate(maps):
            Image.new("RGB", (12, 10), (40 * c, 100, 200)).save(tmp_path / name / f"{i}.jpg")
            if kind == "npy":
                np.save(tmp_path / name / f"{i}.npy", np.full((4, 6), 2.0))
            elif kind == "png":
                Image.fromarray(np.full((5, 5), 51, dtype=np.uint8), mode="L").save(
                    tmp_path / name / f"{i}.map.png"
                )
    return tmp_path


def test_folder_reads_npy_and_png_maps_and_tokens(tmp_path):
    data = HumanMapFolder(_folder(tmp_path), size=8, missing="token")
    assert data.classes == ["a_class", "b_class"] and len(data) == 6
    image, label, heat, token = data[0]
    assert image.shape == (3, 8, 8) and label == 0 and token.item() == 1.0
    assert torch.allclose(heat, torch.full((8, 8), 2.0))
    _, _, heat, token = data[1]
    assert torch.allclose(heat, torch.full((8, 8), 0.2), atol=1e-6) and token.item() == 1.0
    _, _, heat, token = data[2]
    assert token.item() == 0.0 and heat.abs().sum() == 0
    assert data[3][1] == 1


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="have no human map"):
        HumanMapFolder(_folder(tmp_path), size=8)
    bare = tmp_path / "bare"
    bare.mkdir()
    _folder(bare, maps=(None, None))
    with pytest.raises(ValueError, match="none of the 4 images"):
        HumanMapFolder(bare, size=8, missing="token")
    with pytest.raises(ValueError, match="no such folder"):
        HumanMapFolder(tmp_path / "absent")


def test_clickme_transform_blurs_with_unit_mass():
    # A constant map stays constant where the 10×10 window lies inside the 64 px map
    # (weights sum to 1) and falls at the zero-padded border.
    out = clickme_map_transform(torch.ones(64, 64), 64)
    assert out[20:40, 20:40].allclose(torch.ones(20, 20), atol=1e-6)
    assert out[0, 0] < 0.6
    # A point spreads over the 10 taps of the window, with unit mass.
    point = torch.zeros(64, 64)
    point[32, 32] = 1.0
    blurred = clickme_map_transform(point, 64)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    nonzero = torch.nonzero(blurred > 0)
    assert nonzero[:, 0].max() - nonzero[:, 0].min() == 9
    assert nonzero[:, 1].max() - nonzero[:, 1].min() == 9


def test_harmonize_trains_resumes_and_validates(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(8, 3, 8, 8), torch.tensor([0, 1] * 4), torch.rand(8, 8, 8))

    def net():
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(256, 2))

    whole = net()
    history = harmonize(whole, data, epochs=2, batch_size=4, validation=data, progress=False)
    assert history.steps == 4 and len(history.validations) == 2
    result = history.validations[-1].result
    assert isinstance(result, dict) and set(result) == {"accuracy", "alignment", "constant"}
    cut = net()
    path = tmp_path / "run.pt"
    harmonize(cut, data, epochs=2, batch_size=4, checkpoint=path, max_steps=3, progress=False)
    resumed = harmonize(cut, data, epochs=2, batch_size=4, checkpoint=path, resume=True, progress=False)
    assert resumed.steps == 4
    for a, b in zip(whole.parameters(), cut.parameters(), strict=True):
        assert torch.equal(a, b)
