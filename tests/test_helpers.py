"""The "left as found" check catches each way a method can leave a model changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.helpers import left_as_found, mixed_mode
from tests.tiny import tiny_images, tiny_model


def leave_train_mode(model: nn.Module) -> None:
    model.eval()


def leave_a_hook(model: nn.Module) -> None:
    model.network[0].register_forward_hook(lambda *args: None)


def leave_a_gradient(model: nn.Module) -> None:
    model(tiny_images(2)).sum().backward()


def move_running_statistics(model: nn.Module) -> None:
    model.network[1].train()
    model(tiny_images(2))
    model.network[1].eval()


def freeze_a_parameter(model: nn.Module) -> None:
    model.network[0].weight.requires_grad_(False)


def leave_grad_mode_off(model: nn.Module) -> None:
    torch.set_grad_enabled(False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (leave_train_mode, "train mode was changed"),
        (leave_a_hook, "_forward_hooks"),
        (leave_a_gradient, r"\.grad changed"),
        (move_running_statistics, "state 'network.1.running_mean' changed"),
        (freeze_a_parameter, "requires_grad True was changed"),
        (leave_grad_mode_off, "grad mode True became False"),
    ],
)
def test_each_change_is_caught(change: Callable[[nn.Module], None], message: str) -> None:
    model = mixed_mode(tiny_model())
    try:
        with pytest.raises(AssertionError, match=message), left_as_found(model):
            change(model)
    finally:
        torch.set_grad_enabled(True)


def test_a_model_used_and_restored_passes_and_an_escaping_error_is_not_masked() -> None:
    model = mixed_mode(tiny_model())
    with left_as_found(model):
        handle = model.network[0].register_forward_hook(lambda *args: None)
        with torch.no_grad():
            model(tiny_images(2))
        handle.remove()
    with pytest.raises(KeyError), left_as_found(model):
        model.eval()
        raise KeyError("the error itself, not the model's state")
