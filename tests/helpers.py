"""Helpers shared by the tests (the tiny models are in tiny.py, fixtures in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelState", "left_as_found", "mixed_mode", "module_flags"]

# The hook dictionaries of an nn.Module: a method that leaves one behind changes the model
# for every later call, and one that removes a user's hook silently breaks the user's code.
_HOOK_ATTRIBUTES = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def module_flags(model: nn.Module) -> list[bool]:
    """Every sub-module's train/eval flag, to check a model is left as found."""
    return [m.training for m in model.modules()]


def mixed_mode(model: nn.Module) -> nn.Module:
    """Train mode overall with one frozen sub-module: the state users leave models in."""
    model.train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    return model


@dataclass
class ModelState:
    """What "left as found" compares (DESIGN.md): modes, hooks, gradients, values, grad mode."""

    modes: dict[str, bool]
    hooks: dict[str, dict[str, tuple[int, ...]]]
    requires_grad: dict[str, bool]
    grads: dict[str, torch.Tensor | None]
    values: dict[str, torch.Tensor]
    grad_enabled: bool

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        modules = dict(model.named_modules())
        parameters = dict(model.named_parameters())

        def grad(p: nn.Parameter) -> torch.Tensor | None:
            return None if p.grad is None else p.grad.detach().clone()

        return cls(
            modes={name: module.training for name, module in modules.items()},
            hooks={
                name: {attribute: tuple(getattr(module, attribute, {})) for attribute in _HOOK_ATTRIBUTES}
                for name, module in modules.items()
            },
            requires_grad={name: p.requires_grad for name, p in parameters.items()},
            grads={name: grad(p) for name, p in parameters.items()},
            # Parameters and buffers (BatchNorm's running statistics and batch counter).
            values={name: value.detach().clone() for name, value in model.state_dict().items()},
            grad_enabled=torch.is_grad_enabled(),
        )

    def differences(self, other: ModelState) -> list[str]:
        """What changed from ``self`` (before) to ``other`` (after), one line each."""
        found: list[str] = []
        mode = {True: "train", False: "eval"}
        for name, before in self.modes.items():
            if other.modes.get(name) != before:
                found.append(f"module {name or '(root)'!r}: {mode[before]} mode was changed")
        for name, before_hooks in self.hooks.items():
            for attribute, before in before_hooks.items():
                after = other.hooks.get(name, {}).get(attribute, ())
                if after != before:
                    found.append(f"module {name or '(root)'!r}: {attribute} {before} became {after}")
        for name, before_flag in self.requires_grad.items():
            if other.requires_grad.get(name) != before_flag:
                found.append(f"parameter {name!r}: requires_grad {before_flag} was changed")
        for name, before_grad in self.grads.items():
            after_grad = other.grads.get(name)
            same = (before_grad is None and after_grad is None) or (
                before_grad is not None and after_grad is not None and torch.equal(before_grad, after_grad)
            )
            if not same:
                was = "None" if before_grad is None else "a tensor"
                found.append(f"parameter {name!r}: .grad changed (it was {was})")
        if set(other.values) != set(self.values):
            found.append(f"state dict keys changed: {sorted(set(self.values) ^ set(other.values))}")
        for name, value in self.values.items():
            after_value = other.values.get(name)
            if after_value is not None and not torch.equal(value, after_value):
                found.append(f"state {name!r} changed")
        if other.grad_enabled != self.grad_enabled:
            found.append(f"torch grad mode {self.grad_enabled} became {other.grad_enabled}")
        return found


@contextmanager
def left_as_found(model: nn.Module) -> Iterator[nn.Module]:
    """Assert, when the block ends, that ``model`` is as the block found it.

    Compared: the train/eval flag of every sub-module, their hooks (none left behind, none
    removed), each parameter's ``requires_grad`` and ``.grad``, the state dict (parameters
    and buffers: a forward pass in train mode moves BatchNorm's running statistics), and
    torch's grad mode. Put error paths inside the block too, each in its
    ``pytest.raises``: a method must restore the model when it fails half-way. An error
    that escapes the block is re-raised unchecked.

    Examples
    --------
    >>> with left_as_found(model):  # doctest: +SKIP
    ...     method(images, 0)
    ...     with pytest.raises(ValueError):
    ...         method(images * 255, 0)
    """
    before = ModelState.of(model)
    yield model
    changed = before.differences(ModelState.of(model))
    assert not changed, "the model was not left as found:\n  " + "\n  ".join(changed)
