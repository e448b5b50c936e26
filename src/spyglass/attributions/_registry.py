"""The registry of attribution methods: the CLI, the demo, the benchmarks and the tests enumerate it.

A method carries its own kind and its settings per level as class data (see
:class:`~spyglass.attributions.Attribution`); the registry checks them when the class is
registered, so that a mistyped option fails on import rather than in a tool that runs
every method, and serves them by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from spyglass.attributions._base import KINDS, SETTINGS_LEVELS, Attribution
from spyglass.registry import Registry, check_class_options

__all__ = ["create", "list_methods", "method_class", "method_settings", "register"]

_METHODS: Registry[type[Attribution]] = Registry("attribution method")
A = TypeVar("A", bound=type[Attribution])


def _check_class_data(name: str, cls: type[Attribution]) -> None:
    if cls.kind not in KINDS:
        raise TypeError(
            f"attribution method {name!r} ({cls.__name__}) must declare its kind as a class attribute, "
            f"one of {', '.join(KINDS)}; got {cls.kind!r}"
        )
    declared = [level for level in SETTINGS_LEVELS if level != "default"]
    for level, options in cls.settings.items():
        if level not in declared:
            raise TypeError(
                f"attribution method {name!r} declares settings for level {level!r}; the levels are "
                f"{', '.join(declared)} ('default' is the constructor's own defaults)"
            )
        check_class_options(cls, options, positional=("model",), name=f"{name} ({level} settings)")
    if not isinstance(cls.truth_check_exempt, str):
        raise TypeError(
            f"truth_check_exempt of {name!r} must be a reason (str); got {cls.truth_check_exempt!r}"
        )


def register(name: str) -> Callable[[A], A]:
    """Class decorator: make an :class:`Attribution` available as ``create(name, …)``.

    The class must declare its ``kind`` (one of :data:`~spyglass.attributions.KINDS`);
    its ``settings`` must name known levels and options its constructor takes.
    """
    registrar = _METHODS.register(name)

    def decorate(cls: A) -> A:
        _check_class_data(name, cls)
        return registrar(cls)  # type: ignore[return-value]

    return decorate


def list_methods(kind: str | None = None) -> list[str]:
    """Registered method names, in registration order; only those of ``kind`` when given.

    Examples
    --------
    >>> from spyglass import attributions
    >>> attributions.list_methods(kind="cam")
    ['gradcam', 'gradcam_pp']
    """
    if kind is None:
        return _METHODS.names()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return [name for name in _METHODS.names() if _METHODS.get(name).kind == kind]


def method_class(name: str) -> type[Attribution]:
    """The class registered under ``name``."""
    return _METHODS.get(name)


def method_settings(name: str, level: str = "default") -> dict[str, Any]:
    """The options that run method ``name`` at ``level`` (one of :data:`SETTINGS_LEVELS`).

    A level the method does not declare is its constructor's defaults: ``{}``. The result
    is a new dict, for ``create(name, model, **settings)``; override any entry in it.

    Examples
    --------
    >>> from spyglass import attributions
    >>> attributions.method_settings("sobol", "quick")
    {'grid_size': 4, 'nb_design': 8}
    >>> attributions.method_settings("saliency", "cheap")
    {}
    """
    if level not in SETTINGS_LEVELS:
        raise ValueError(f"level must be one of {', '.join(SETTINGS_LEVELS)}; got {level!r}")
    return copy.deepcopy(dict(method_class(name).settings.get(level, {})))


def create(name: str, model: nn.Module, **options: Any) -> Attribution:
    """Build the method registered as ``name`` for ``model``.

    Examples
    --------
    >>> from spyglass import attributions, models
    >>> saliency = attributions.create("saliency", models.load(), batch_size=16)
    """
    return _METHODS.check_options(name, options, positional=("model",))(model, **options)
