"""The registry of attribution methods: the CLI, the demo and the tests enumerate it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from spyglass.attributions._base import Attribution

__all__ = ["create", "list_methods", "register"]

_METHODS: dict[str, type[Attribution]] = {}
A = TypeVar("A", bound=type[Attribution])


def register(name: str) -> Callable[[A], A]:
    """Class decorator: make an :class:`Attribution` available as ``create(name, …)``."""

    def decorate(cls: A) -> A:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(
                f"attribution method {name!r} is already registered by {_METHODS[name].__name__}"
            )
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_METHODS)


def method_class(name: str) -> type[Attribution]:
    """The class registered under ``name``."""
    if name not in _METHODS:
        close = difflib.get_close_matches(name, _METHODS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown attribution method {name!r}; available: {', '.join(_METHODS)}.{hint}")
    return _METHODS[name]


def create(name: str, model: nn.Module, **options: Any) -> Attribution:
    """Build the method registered as ``name`` for ``model``.

    Examples
    --------
    >>> from spyglass import attributions, models
    >>> saliency = attributions.create("saliency", models.load(), batch_size=16)
    """
    cls = method_class(name)
    accepted = _options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{name} does not take option(s) {unknown}; it takes: {', '.join(sorted(accepted))}")
    return cls(model, **options)


def _options(cls: type[Attribution]) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters
        names |= {p for p, v in parameters.items() if p not in ("self", "model") and v.kind == v.KEYWORD_ONLY}
    return names
