"""Loading models by name: real weights, offline behaviour, clear errors."""

import socket
import urllib.error
from pathlib import Path

import pytest
import timm
import torch
import torchvision

from spyglass import data, models
from spyglass.data import SAMPLE_EXPECTED_CLASSES, sample_photos
from spyglass.models import VisionModel, WeightsUnavailableError


def test_default_model_is_lite0_with_half_normalisation(lite0: VisionModel) -> None:
    assert lite0.name == "efficientnet_lite0"
    assert lite0.input_size == (224, 224)
    assert lite0.resize_size == 256
    assert lite0.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert lite0.std.flatten().tolist() == [0.5, 0.5, 0.5]
    assert len(lite0.class_names) == 1000
    assert lite0.class_names[967] == "espresso"
    assert not lite0.training


@pytest.mark.slow
def test_lite0_top1_on_real_imagenet_photos(lite0: VisionModel, imagenet_samples: Path) -> None:
    batch = data.read_images(imagenet_samples, lite0.preprocess, progress=False)
    assert len(batch) == 1000
    assert torch.equal(batch.labels, torch.arange(1000))  # file i is class i
    top1 = lite0.predict(batch.images, top_k=1, batch_size=50, progress=False).indices[:, 0]
    accuracy = float((top1 == batch.labels).float().mean())
    assert accuracy >= 0.85, f"top-1 {accuracy:.3f} on imagenet-samples"


def test_bundled_photos_get_their_expected_classes(lite0: VisionModel) -> None:
    photos = sample_photos(list(SAMPLE_EXPECTED_CLASSES))
    images = torch.stack([lite0.preprocess(p) for p in photos.values()])
    top1 = lite0.predict(images, top_k=1, progress=False).indices[:, 0].tolist()
    for (name, expected), predicted in zip(SAMPLE_EXPECTED_CLASSES.items(), top1, strict=True):
        assert predicted in expected, f"{name}: predicted {lite0.class_names[predicted]}"


def test_lite1_transfers_on_the_bundled_photos() -> None:
    model = models.load("efficientnet_lite1")
    assert model.input_size == (240, 240)
    coffee = model.preprocess(sample_photos(["coffee"])["coffee"])[None]
    assert int(model.predict(coffee, progress=False).indices[0, 0]) == 967


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match="Did you mean resnet50"):
        models.load("resnet05")
    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        models.load("timm/no_such_net")
    with pytest.raises(TypeError, match="model name"):
        models.load(None)  # type: ignore[arg-type]


def test_torchvision_weights_unavailable_is_one_clear_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        models.load("resnet18")
    message = str(info.value)
    assert "resnet18-" in message and ".pth" in message
    assert str(Path(torch.hub.get_dir()) / "checkpoints") in message
    assert "\n" not in message
    assert info.value.__cause__ is None  # no network traceback chained under it


def test_timm_weights_unavailable_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    with pytest.raises(WeightsUnavailableError, match=r"not in the Hugging Face cache") as info:
        models.load("timm/resnet18.a1_in1k")
    assert str(tmp_path) in str(info.value)
    assert "models--timm--resnet18.a1_in1k" in str(info.value)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("resnet18", lambda: torchvision.models.resnet18()),
        ("timm/resnet18", lambda: timm.create_model("resnet18")),
    ],
)
def test_local_weights_file(name: str, build: object, tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build()  # type: ignore[operator]
    path = tmp_path / "weights.pth"
    torch.save(network.state_dict(), path)
    model = models.load(name, weights=path)
    loaded = dict(model.network.named_parameters())
    for key, value in network.named_parameters():
        assert torch.equal(loaded[key], value), key
    assert len(model.class_names) == 1000
    with pytest.raises(ValueError, match="does not fit"):
        models.load("resnet34" if name == "resnet18" else "timm/resnet34", weights=path)
    with pytest.raises(ValueError, match="does not exist"):
        models.load(name, weights=tmp_path / "missing.pth")


def test_device_argument_places_the_model() -> None:
    assert models.load(device="cpu").device == torch.device("cpu")
