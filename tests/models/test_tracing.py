"""Graph tracing: the traced graph module is a faithful, runnable copy of the model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import timm
import torch
import torch.fx as fx
import torchvision
from torch import nn

from spyglass import models
from spyglass.models import TracingError, VisionModel
from tests.helpers import module_flags
from tests.tiny import GatedNet, ResidualNet, tiny_cnn, tiny_model

ARCHITECTURES: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("tiny cnn", tiny_cnn, 32),
    ("tiny VisionModel", lambda: tiny_model(named_layers=True), 32),
    ("residual with a constant", ResidualNet, 16),
    ("torchvision resnet18", lambda: torchvision.models.resnet18(weights=None), 64),
    ("timm tf_efficientnet_lite0", lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False), 96),
    ("timm vit_tiny_patch16_224", lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False), 224),
]


@pytest.mark.parametrize(("label", "build", "size"), ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_the_traced_module_computes_what_the_model_computes(
    label: str, build: Callable[[], nn.Module], size: int
) -> None:
    model = build().eval()
    traced = models.trace(model)
    assert isinstance(traced, fx.GraphModule)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        got = traced(x)
    # The same operations in the same order: the same numbers, not merely close ones.
    assert torch.equal(got, expected), float((got - expected).abs().max())
    # A different batch goes through the same graph: nothing of x was frozen into it.
    y = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(traced(y), model(y))


def test_timm_tf_efficientnets_need_the_leaves_that_plain_fx_lacks() -> None:
    """Why trace() keeps timm's registered modules whole: plain fx cannot trace TF 'same' padding."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    with pytest.raises(Exception):  # noqa: B017 - fx raises its own types; the point is that it fails
        fx.symbolic_trace(model)
    targets = {node.target for node in models.trace(model).graph.nodes if node.op == "call_module"}
    assert "conv_stem" in targets  # a Conv2dSame, kept whole
    assert type(model.conv_stem).__name__ == "Conv2dSame"


def test_the_graph_is_the_eval_mode_forward_and_the_model_is_left_as_found() -> None:
    model = ResidualNet().train()
    model.blocks[0].eval()  # a frozen part, as users leave models
    flags = module_flags(model)
    attributes = set(vars(model))
    traced = models.trace(model)
    assert module_flags(model) == flags  # train/eval flags restored
    assert set(vars(model)) == attributes  # fx's tensor constant was not left on the model
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not traced.training
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        eval_logits = ResidualNet().eval()(x)  # same seed, same weights
        train_logits = model(x)
        got = traced(x)
    assert not torch.allclose(eval_logits, train_logits)  # the branch matters
    torch.testing.assert_close(got, eval_logits, rtol=0, atol=0)
    # Parameters are shared with the model, not copied.
    assert {id(p) for p in traced.parameters()} <= {id(p) for p in model.parameters()}
    # The constant lives in the graph module.
    constants = [node.target for node in traced.graph.nodes if node.op == "get_attr"]
    assert constants and all(hasattr(traced, name) and not hasattr(model, name) for name in constants)


def test_leaves_are_kept_as_one_node() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    modules = [n.target for n in models.trace(model, leaves=["layer3"]).graph.nodes if n.op == "call_module"]
    assert "layer3" in modules
    assert not any(str(target).startswith("layer3.") for target in modules)
    everything = [n.target for n in models.trace(model).graph.nodes if n.op == "call_module"]
    assert "layer3" not in everything and "layer3.0.conv1" in everything


def test_a_vision_model_is_traced_with_its_normalisation() -> None:
    model = tiny_model(named_layers=True)
    traced = models.trace(model, leaves=["conv2"])  # names relative to the network...
    nodes = list(traced.graph.nodes)
    targets = [n.target for n in nodes if n.op == "call_module"]
    assert targets[0] == "network.conv1" and "network.conv2" in targets  # ...targets from the root
    assert {"mean", "std"} <= {n.target for n in nodes if n.op == "get_attr"}


def test_an_untraceable_model_gets_a_clear_error_and_a_way_out() -> None:
    model = GatedNet().eval()
    with pytest.raises(
        TracingError, match=r"cannot trace GatedNet: torch\.fx could not trace.*leaves="
    ) as caught:
        models.trace(model)
    assert isinstance(caught.value, ValueError)
    assert all(not m._forward_hooks for m in model.modules())
    traced = models.trace(model, leaves=["gate"])  # the offending module kept whole
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
        assert torch.equal(traced(-x), model(-x))  # both branches, at run time


def test_bad_leaves_are_refused() -> None:
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"unknown layer 'conv3'.*Did you mean conv2, conv1"):
        models.trace(model, leaves=["conv3"])
    with pytest.raises(TypeError, match="list of layer names"):
        models.trace(model, leaves="conv1")
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        models.trace("resnet")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [64, 96])
def test_split_still_reconstructs_a_model_with_constants(size: int) -> None:
    model = ResidualNet().eval()
    attributes = set(vars(model))
    g, h = models.split(model, "blocks", input_size=(size, size))
    assert set(vars(model)) == attributes
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(h(g(x)), model(x))


def test_trace_of_a_vision_model_matches_on_real_weights(lite0: VisionModel) -> None:
    traced = models.trace(lite0)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(traced(x), lite0(x))
