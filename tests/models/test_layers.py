"""Layer names: one naming for wrapped and bare networks, one error for a wrong name."""

from __future__ import annotations

import pytest

from spyglass import models
from tests.tiny import ResidualNet, tiny_cnn, tiny_model

TINY = ["conv1", "bn", "relu1", "conv2", "relu2", "pool", "flat", "fc"]


def test_names_are_relative_to_the_network() -> None:
    model = tiny_model(named_layers=True)
    layers = models.named_layers(model)
    assert list(layers) == TINY
    assert list(models.named_layers(model.network)) == TINY  # wrapped or not, the same names
    assert all(layers[name] is getattr(model.network, name) for name in TINY)


def test_nested_names_in_declaration_order() -> None:
    names = list(models.named_layers(ResidualNet()))
    assert names == [
        "stem",
        "blocks",
        "blocks.0",
        "blocks.0.conv",
        "blocks.0.act",
        "blocks.1",
        "blocks.1.conv",
        "blocks.1.act",
        "head",
    ]


def test_get_layer_returns_the_module() -> None:
    model = ResidualNet()
    assert models.get_layer(model, "blocks.1.conv") is model.blocks[1].conv
    wrapped = tiny_model(named_layers=True)
    assert models.get_layer(wrapped, "conv2") is wrapped.network.conv2


def test_one_error_with_close_matches() -> None:
    with pytest.raises(
        ValueError, match=r"^unknown layer 'blocks\.1\.cnv': ResidualNet has no sub-module"
    ) as e:
        models.get_layer(ResidualNet(), "blocks.1.cnv")
    assert "Did you mean blocks.1.conv" in str(e.value)
    assert "those of model.named_modules()" in str(e.value)
    with pytest.raises(
        ValueError, match=r"unknown layer 'conv3': tiny has .*Did you mean conv2, conv1.*relative"
    ):
        models.get_layer(tiny_model(named_layers=True), "conv3")
    with pytest.raises(ValueError, match=r"unknown layer 'zzz'.*list_layers") as e:
        models.get_layer(tiny_cnn(), "zzz")
    assert "Did you mean" not in str(e.value)


def test_the_model_itself_is_not_a_layer() -> None:
    with pytest.raises(ValueError, match="unknown layer ''"):
        models.get_layer(tiny_cnn(), "")
    with pytest.raises(ValueError, match="unknown layer 'network'"):
        models.get_layer(tiny_model(named_layers=True), "network")


def test_a_network_prefix_is_pointed_out() -> None:
    with pytest.raises(ValueError, match=r"relative to the network: drop the 'network\.' prefix \('conv2'\)"):
        models.get_layer(tiny_model(named_layers=True), "network.conv2")


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"layer must be a layer name \(str\); got int"):
        models.get_layer(tiny_cnn(), 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module; got str"):
        models.named_layers("resnet")  # type: ignore[arg-type]
