"""Hooks for the length of a with block: every one removed on exit, by an exception or not."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from spyglass import models
from tests.tiny import tiny_cnn, tiny_model


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("kind", ["forward", "forward_pre", "backward", "backward_pre"])
def test_hooks_run_inside_and_are_removed_on_normal_exit(kind: Any) -> None:
    model = tiny_cnn()
    calls: list[str] = []
    hooks = {"conv2": lambda *args: calls.append("conv2"), model.fc: lambda *args: calls.append("fc")}
    with models.hooked(model, hooks, kind=kind):
        assert _hook_count(model) == 2
        model(torch.rand(1, 3, 8, 8, requires_grad=True)).sum().backward()
    # Forward hooks run in forward order, backward hooks in backward order.
    assert calls == (["fc", "conv2"] if kind.startswith("backward") else ["conv2", "fc"])
    assert _hook_count(model) == 0
    model(torch.rand(1, 3, 8, 8))
    assert len(calls) == 2  # and they no longer run


def test_hooks_are_removed_when_the_block_raises() -> None:
    model = tiny_cnn()
    with pytest.raises(KeyError, match="inside"), models.hooked(model, {"conv1": lambda *a: None}):
        raise KeyError("inside")
    assert _hook_count(model) == 0


def test_hooks_are_removed_when_a_hook_raises_during_the_forward_pass() -> None:
    model = tiny_model(named_layers=True)

    def broken(_module: nn.Module, _args: object, _output: object) -> None:
        raise ArithmeticError("hook failed")

    with pytest.raises(ArithmeticError), models.hooked(model, [("relu1", broken), ("fc", broken)]):
        model(torch.rand(1, 3, 32, 32))
    assert _hook_count(model) == 0


def test_a_bad_layer_registers_nothing() -> None:
    model = tiny_cnn()
    with (
        pytest.raises(ValueError, match=r"unknown layer 'fcc'.*Did you mean fc"),
        models.hooked(model, {"conv1": lambda *a: None, "fcc": lambda *a: None}),
    ):
        pass
    assert _hook_count(model) == 0
    with (
        pytest.raises(ValueError, match="not a sub-module of the model"),
        models.hooked(model, {nn.ReLU(): lambda *a: None}),
    ):
        pass
    assert _hook_count(model) == 0


def test_hooks_the_model_had_are_kept() -> None:
    model = tiny_cnn()
    theirs = model.conv1.register_forward_hook(lambda *a: None)
    with models.hooked(model, {"conv1": lambda *a: None}):
        assert len(model.conv1._forward_hooks) == 2
    assert list(model.conv1._forward_hooks) == [theirs.id]
    theirs.remove()


def test_pairs_put_several_hooks_on_one_layer_in_order_and_a_hook_may_replace_the_output() -> None:
    model = tiny_cnn()
    seen: list[str] = []
    x = torch.rand(1, 3, 8, 8)
    pairs = [
        ("fc", lambda _m, _a, out: seen.append("first")),
        ("fc", lambda _m, _a, out: torch.zeros_like(out)),
        ("fc", lambda _m, _a, out: seen.append(f"third saw {float(out.abs().sum())}")),
    ]
    with models.hooked(model, pairs):
        out = model(x)
    assert seen == ["first", "third saw 0.0"]
    assert torch.equal(out, torch.zeros(1, 5))
    assert not torch.equal(model(x), out)


def test_the_whole_model_can_be_hooked() -> None:
    model = tiny_model(named_layers=True)
    inputs: list[torch.Tensor] = []
    with models.hooked(model, {model: lambda _m, args: inputs.append(args[0])}, kind="forward_pre"):
        model(torch.rand(2, 3, 32, 32))
    assert inputs[0].shape == (2, 3, 32, 32)


def test_bad_arguments() -> None:
    model = tiny_cnn()
    with (
        pytest.raises(ValueError, match="kind must be one of 'forward'"),
        models.hooked(
            model,
            {"fc": print},
            kind="after",  # type: ignore[arg-type]
        ),
    ):
        pass
    with (
        pytest.raises(TypeError, match="the hook for 'fc' must be callable"),
        models.hooked(
            model,
            {"fc": 3},  # type: ignore[dict-item]
        ),
    ):
        pass
    with (
        pytest.raises(TypeError, match=r"layer name or an nn\.Module; got int"),
        models.hooked(
            model,
            {0: print},  # type: ignore[dict-item]
        ),
    ):
        pass
    with (
        pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"),
        models.hooked(
            "model",
            {"fc": print},  # type: ignore[arg-type]
        ),
    ):
        pass
    assert _hook_count(model) == 0
