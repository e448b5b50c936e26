"""Probing layers: their outputs from one forward pass, the model left as found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spyglass import models
from tests.helpers import mixed_mode, module_flags
from tests.tiny import ResidualNet, TupleNet, tiny_cnn, tiny_model


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_shapes_of_a_tiny_network_by_hand() -> None:
    shapes = models.probe_layers(tiny_model(named_layers=True))  # its input size, 32 px
    assert shapes == {
        "conv1": (8, 32, 32),
        "bn": (8, 32, 32),
        "relu1": (8, 32, 32),
        "conv2": (8, 16, 16),
        "relu2": (8, 16, 16),
        "pool": (8, 1, 1),
        "flat": (8,),
        "fc": (5,),
    }
    # A plain module is probed at 224 px unless told otherwise.
    assert models.probe_layers(tiny_cnn())["conv2"] == (8, 112, 112)
    assert models.probe_layers(tiny_cnn(), input_size=(20, 12))["conv2"] == (8, 10, 6)
    assert models.probe_layers(tiny_cnn(), torch.rand(3, 3, 8, 8))["conv1"] == (8, 8, 8)


def test_order_is_the_order_forward_passes_finish() -> None:
    order = list(models.probe_layers(ResidualNet(), input_size=(8, 8)))
    # A child finishes before its parent.
    assert order == [
        "stem",
        "blocks.0.conv",
        "blocks.0.act",
        "blocks.0",
        "blocks.1.conv",
        "blocks.1.act",
        "blocks.1",
        "blocks",
        "head",
    ]


def test_names_restrict_the_probe() -> None:
    shapes = models.probe_layers(tiny_cnn(), input_size=(16, 16), names=["fc", "conv1"])
    assert shapes == {"conv1": (8, 16, 16), "fc": (5,)}  # in forward order, not the order asked
    with pytest.raises(ValueError, match=r"unknown layer 'fcc'.*Did you mean fc"):
        models.probe_layers(tiny_cnn(), names=["fcc"])
    with pytest.raises(TypeError, match="list of layer names"):
        models.probe_layers(tiny_cnn(), names="fc")


def test_a_summary_sees_the_raw_output_tuples_included() -> None:
    model = TupleNet()
    x = torch.rand(2, 3, 4, 4)
    assert "pair" not in models.probe_layers(model, x)  # default: tensors only
    shapes = models.probe_layers(
        model,
        x,
        summary=lambda out: tuple(tuple(t.shape) for t in out) if isinstance(out, tuple) else None,
    )
    assert shapes == {"pair": ((2, 2, 4, 4), (2, 2))}
    minima = models.probe_layers(tiny_cnn(), torch.rand(1, 3, 8, 8), summary=lambda out: float(out.min()))
    assert minima["relu1"] >= 0.0 and minima["conv1"] < 0.0


def test_only_the_first_call_of_a_module_is_kept() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pool(self.pool(x))

    assert models.probe_layers(Twice(), torch.rand(1, 3, 8, 8)) == {"pool": (3, 4, 4)}


def test_the_model_is_left_as_found_also_when_it_raises() -> None:
    model = mixed_mode(tiny_cnn())
    flags = module_flags(model)
    models.probe_layers(model, input_size=(8, 8))
    assert module_flags(model) == flags and _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError):
        models.probe_layers(model, torch.rand(1, 5, 8, 8))  # wrong channel count: the forward raises
    assert module_flags(model) == flags and _no_hooks(model)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"images must be a \(N, 3, H, W\) tensor; got \(3, 8, 8\)"):
        models.probe_layers(tiny_cnn(), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"input_size must be \(H, W\)"):
        models.probe_layers(tiny_cnn(), input_size=(0, 8))
    with pytest.raises(TypeError, match="summary must be a callable"):
        models.probe_layers(tiny_cnn(), summary=3)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((8, 7, 7), True),
        ((8, 2, 2), True),
        ((8, 1, 1), False),
        ((8, 7, 1), False),
        ((8,), False),
        ((197, 192), False),
    ],
)
def test_is_feature_map(shape: tuple[int, ...], expected: bool) -> None:
    assert models.is_feature_map(shape) is expected
