"""The registry of attribution methods: the CLI, the demo and the tests enumerate it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from spyglass.attributions._base import Attribution
from spyglass.registry import Registry

__all__ = ["create", "list_methods", "method_class", "register"]

_METHODS: Registry[type[Attribution]] = Registry("attribution method")
A = TypeVar("A", bound=type[Attribution])


def register(name: str) -> Callable[[A], A]:
    """Class decorator: make an :class:`Attribution` available as ``create(name, …)``."""
    return _METHODS.register(name)  # type: ignore[return-value]


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return _METHODS.names()


def method_class(name: str) -> type[Attribution]:
    """The class registered under ``name``."""
    return _METHODS.get(name)


def create(name: str, model: nn.Module, **options: Any) -> Attribution:
    """Build the method registered as ``name`` for ``model``.

    Examples
    --------
    >>> from spyglass import attributions, models
    >>> saliency = attributions.create("saliency", models.load(), batch_size=16)
    """
    return _METHODS.check_options(name, options, positional=("model",))(model, **options)
