"""The VisionModel wrapper: normalisation inside, preprocessing, prediction, bad input."""

import pytest
import torch
from PIL import Image

from spyglass.models import VisionModel
from tests.helpers import mixed_mode, module_flags


def tiny(num_classes: int = 4) -> VisionModel:
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, num_classes),
    )
    return VisionModel(
        network,
        input_size=(16, 16),
        mean=(0.1, 0.2, 0.3),
        std=(0.5, 0.25, 2.0),
        class_names=[f"c{i}" for i in range(num_classes)],
    )


def test_forward_normalises_inside() -> None:
    model = tiny().eval()
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.network((x - mean) / std))


def test_preprocess_resizes_and_crops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = tiny()
    assert model.resize_size == 18  # 16 / 0.875
    # A wide image whose left and right quarters are red and centre is blue: the crop keeps blue.
    image = Image.new("RGB", (64, 32), (255, 0, 0))
    image.paste((0, 0, 255), (16, 0, 48, 32))
    out = model.preprocess(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out[2, 8, 8]) == pytest.approx(1.0) and float(out[0, 8, 8]) == pytest.approx(0.0)
    path = tmp_path / "x.png"
    image.save(path)
    torch.testing.assert_close(model.preprocess(path), out)
    with pytest.raises(TypeError, match="PIL image or a path"):
        model.preprocess(torch.zeros(3, 4, 4))  # type: ignore[arg-type]


def test_predict_matches_softmax_topk_and_is_batch_size_invariant() -> None:
    model = tiny(num_classes=6).eval()
    x = torch.rand(7, 3, 16, 16)
    expected_p, expected_i = model(x).detach().softmax(1).topk(3, dim=1)
    for batch_size in (1, 3, 7):
        p = model.predict(x, top_k=3, batch_size=batch_size, progress=False)
        assert torch.equal(p.indices, expected_i)
        torch.testing.assert_close(p.probabilities, expected_p)
    assert p.names[0] == [f"c{int(i)}" for i in expected_i[0]]
    assert p.rows(0)[0] == (
        int(expected_i[0, 0]),
        f"c{int(expected_i[0, 0])}",
        pytest.approx(float(expected_p[0, 0])),
    )


def test_predict_leaves_every_module_mode_as_found() -> None:
    model = mixed_mode(tiny())
    before = module_flags(model)
    model.predict(torch.rand(2, 3, 16, 16), progress=False)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())


def test_predict_runs_in_eval_mode_even_if_model_is_training() -> None:
    model = tiny().eval()
    x = torch.rand(3, 3, 16, 16)
    expected = model.predict(x, progress=False).probabilities
    model.train()
    torch.testing.assert_close(model.predict(x, progress=False).probabilities, expected)


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        (torch.rand(3, 16, 16), "add a batch dimension"),
        (torch.rand(1, 3, 16, 16) * 255, "divide by 255"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    ],
)
def test_predict_rejects_bad_images(images: torch.Tensor, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        tiny().predict(images, progress=False)


def test_constructor_and_topk_errors() -> None:
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        tiny().predict(torch.rand(1, 3, 16, 16), top_k=0, progress=False)
    assert tiny().predict(torch.rand(1, 3, 16, 16), top_k=9, progress=False).indices.shape == (1, 4)
    with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
        VisionModel(torch.nn.Identity(), input_size=(8, 8), mean=(0.5,), std=(0.5,), class_names=["a"])
    with pytest.raises(ValueError, match="std must be 3 finite numbers > 0"):
        VisionModel(torch.nn.Identity(), input_size=(8, 8), mean=(0, 0, 0), std=(1, 0, 1), class_names=["a"])
