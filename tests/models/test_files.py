"""Model files of zoo models (``models.save``, ``models.load(path)``): rebuilt offline, refused if broken."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from spyglass import models
from spyglass.alignment import harmonize


def _zoo(tmp_path: Path, name: str) -> models.VisionModel:
    """``models.load(name)`` from a random local state dict (nothing downloaded)."""
    torch.manual_seed(0)
    if name.startswith("timm/"):
        network = timm.create_model(name[5:], pretrained=False)
    else:
        network = torchvision.models.get_model(name, weights=None)
    path = tmp_path / f"{name.replace('/', '_')}-start.pt"
    torch.save(network.state_dict(), path)
    return models.load(name, weights=path)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way the zoo could fetch or read pretrained weights fails, so a load that needs them fails."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model file must be rebuilt without pretrained weights")

    import huggingface_hub

    from spyglass.models import zoo

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(zoo, "build_efficientnet_lite", refuse)


def test_a_harmonized_torchvision_model_round_trips_with_identical_logits(
    tmp_path: Path, offline: None
) -> None:
    model = _zoo(tmp_path, "resnet18")
    images = torch.rand(4, 3, 32, 32)
    data = TensorDataset(images, torch.tensor([0, 1, 2, 3]), torch.rand(4, 32, 32))
    before = [p.detach().clone() for p in model.network.parameters()]
    harmonize(model, data, epochs=1, batch_size=4, lr=1e-3, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.network.parameters(), strict=True))
    model.eval()
    path = models.save(model, tmp_path / "harmonized.pt")
    loaded = models.load(str(path))
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training and loaded.spec == {"builder": "zoo", "arguments": {"name": "resnet18"}}
    assert (loaded.input_size, loaded.resize_size, loaded.interpolation) == (
        model.input_size,
        model.resize_size,
        model.interpolation,
    )
    assert loaded.class_names == model.class_names and torch.equal(loaded.mean, model.mean)
    # The file also reads as a state dict, for models.load(name, weights=FILE).
    assert torch.equal(models.load("resnet18", weights=path)(x), model(x))


def test_timm_and_the_default_model_round_trip(tmp_path: Path) -> None:
    x = torch.rand(2, 3, 64, 64)
    default = models.load()  # the packaged EfficientNet-Lite0 weights
    timm_model = _zoo(tmp_path, "timm/test_resnet")
    for model in (default, timm_model):
        with torch.no_grad():
            model.network.get_classifier().bias.add_(0.5)  # weights no builder would give
        path = models.save(model, tmp_path / f"{model.name.replace('/', '_')}.pt")
        loaded = models.load(str(path))
        assert torch.equal(loaded(x), model(x)), model.name
        assert loaded.name == model.name and torch.equal(loaded.std, model.std)


def test_recorded_preprocessing_is_restored(tmp_path: Path) -> None:
    model = _zoo(tmp_path, "squeezenet1_1")
    model.class_names = [f"thing {i}" for i in range(1000)]
    model.name = "my squeezenet"
    loaded = models.load(str(models.save(model, tmp_path / "m.pt")))
    assert loaded.class_names[3] == "thing 3" and loaded.name == "my squeezenet"


def test_model_files_refuse_what_they_cannot_rebuild(tmp_path: Path) -> None:
    model = _zoo(tmp_path, "squeezenet1_1")
    path = models.save(model, tmp_path / "m.pt")
    content = torch.load(path, weights_only=True)

    def rewritten(name: str, change: object) -> str:
        copy = {**content, "spec": {**content["spec"]}}
        change(copy)  # type: ignore[operator]
        torch.save(copy, tmp_path / name)
        return str(tmp_path / name)

    def unknown_builder(c: dict) -> None:
        c["spec"]["builder"] = "torch.load"

    def unknown_name(c: dict) -> None:
        c["spec"]["arguments"] = {"name": "resnet5000"}

    def file_name(c: dict) -> None:
        c["spec"]["arguments"] = {"name": str(path)}

    def other_classes(c: dict) -> None:
        c["preprocessing"] = {**c["preprocessing"], "class_names": ["a", "b"]}

    with pytest.raises(ValueError, match=r"names the builder 'torch\.load', which spyglass does not know"):
        models.load(rewritten("foreign.pt", unknown_builder))
    with pytest.raises(ValueError, match="spec its builder refuses: unknown model 'resnet5000'"):
        models.load(rewritten("unknown.pt", unknown_name))
    with pytest.raises(ValueError, match="spec its builder refuses"):
        models.load(rewritten("recursive.pt", file_name))
    with pytest.raises(ValueError, match="preprocessing that does not fit its model: class_names must name"):
        models.load(rewritten("classes.pt", other_classes))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cannot be read by torch\.load"):
        models.load(str(truncated))
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match=r"cannot be read by torch\.load"):
        models.load(str(tmp_path / "garbage.pt"))


def test_save_refuses_a_model_changed_after_it_was_built(tmp_path: Path) -> None:
    model = _zoo(tmp_path, "squeezenet1_1")
    model.network.classifier[1] = nn.Conv2d(512, 10, 1)
    model.class_names = [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="no longer fit the architecture its spec names"):
        models.save(model, tmp_path / "changed.pt")
    assert not (tmp_path / "changed.pt").exists()
    del model.spec
    with pytest.raises(TypeError, match="no builder spec"):
        models.save(model, tmp_path / "changed.pt")
