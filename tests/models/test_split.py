"""Splitting f = h ∘ g at a layer, by graph tracing, on three architecture families."""

import pytest
import timm
import torch
import torchvision

from spyglass import models
from spyglass.models import VisionModel
from tests.helpers import mixed_mode, module_flags

CASES = [
    (
        "torchvision resnet50",
        lambda: torchvision.models.resnet50(),
        ["layer2", "layer4", "avgpool"],
    ),
    (
        "timm tf_efficientnet_lite0",
        lambda: timm.create_model("tf_efficientnet_lite0"),
        ["blocks.3", "bn2"],
    ),
    (
        "torchvision vit_b_16",
        lambda: torchvision.models.vit_b_16(),
        ["encoder.layers.encoder_layer_5", "encoder"],
    ),
    ("timm vit_tiny", lambda: timm.create_model("vit_tiny_patch16_224"), ["blocks.6", "norm"]),
]


@pytest.mark.parametrize(("label", "build", "layers"), CASES, ids=[c[0] for c in CASES])
def test_split_reconstructs_logits(label: str, build: object, layers: list[str]) -> None:
    torch.manual_seed(0)
    network = build().eval()  # type: ignore[operator]
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = network(x)
        for layer in layers:
            g, h = models.split(network, layer)
            activations = g(x)
            torch.testing.assert_close(h(activations), expected, rtol=1e-4, atol=1e-4)
            # g really stops at the layer: its output is what a forward hook sees there.
            seen: list[torch.Tensor] = []
            handle = dict(network.named_modules())[layer].register_forward_hook(
                lambda m, a, o, seen=seen: seen.append(o)
            )
            network(x)
            handle.remove()
            torch.testing.assert_close(activations, seen[0])


def test_split_a_vision_model_includes_normalisation(lite0: VisionModel) -> None:
    g, h = models.split(lite0, "blocks.5")
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        activations = g(x)
        assert activations.shape == (2, 192, 7, 7)
        torch.testing.assert_close(h(activations), lite0(x), rtol=1e-4, atol=1e-4)
    # g and h share the model's parameters: nothing was copied.
    shared = {id(p) for p in lite0.parameters()}
    assert {id(p) for p in g.parameters()} <= shared
    assert {id(p) for p in h.parameters()} <= shared


def test_split_leaves_model_as_found() -> None:
    network = mixed_mode(torchvision.models.resnet18())
    before = module_flags(network)
    g, h = models.split(network, "layer3")
    assert module_flags(network) == before
    assert not g.training and not h.training
    assert all(not m._forward_hooks for m in network.modules())


def test_skip_connection_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="skip connection"):
        models.split(torchvision.models.resnet18(), "layer3.0.conv1")


def test_unknown_layer_suggests_names() -> None:
    with pytest.raises(ValueError, match=r"unknown layer 'layer5'.*Did you mean"):
        models.split(torchvision.models.resnet18(), "layer5")
    with pytest.raises(ValueError, match="unknown layer ''"):
        models.split(torchvision.models.resnet18(), "")


def test_module_called_twice_is_refused() -> None:
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.head = torch.nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(ValueError, match="called 2 times"):
        models.split(Twice(), "conv")


def test_untraceable_model_gets_a_clear_error() -> None:
    class DataDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x).mean((2, 3))
            return y if y.sum() > 0 else -y

    with pytest.raises(ValueError, match="could not trace"):
        models.split(DataDependent(), "conv")


def test_list_layers_shapes_and_splittable_flags(lite0: VisionModel) -> None:
    layers = {info.name: info for info in models.list_layers(lite0)}
    assert layers["blocks.5"].output_shape == (192, 7, 7)
    assert layers["bn2"].output_shape == (1280, 7, 7)
    assert layers["classifier"].output_shape == (1000,)
    assert layers["blocks.5"].splittable and layers["classifier"].splittable
    # Inside an inverted-residual block with a skip connection: not a valid cut.
    assert not layers["blocks.5.1.conv_pw"].splittable
    names = list(layers)
    assert names.index("blocks.2") < names.index("blocks.5") < names.index("classifier")
    assert all(not m._forward_hooks for m in lite0.modules())
