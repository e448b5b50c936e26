"""Name → class registries: the attribution methods and the dictionary learners use one each.

The CLI, the demo, the tests and CRAFT enumerate and build classes by name. One small
generic class holds what every registry needs: a decorator, the names in registration
order, a helpful error for a mistyped name, and a check of the keyword options a
constructor accepts (read from the signatures, so no list is kept by hand).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Registry", "check_class_options", "keyword_options"]

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes registered under names; ``kind`` names them in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: register ``cls`` as ``name`` and set its ``name`` attribute."""

        def decorate(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {self._classes[name].__name__}"
                )
            cls.name = name  # type: ignore[attr-defined]  # every registered base declares it
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._classes)

    def get(self, name: str) -> T:
        """The class registered as ``name``; a mistyped name gets the closest matches."""
        if name not in self._classes:
            close = difflib.get_close_matches(name, self._classes, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self._classes)}.{hint}")
        return self._classes[name]

    def check_options(self, name: str, options: Iterable[str], *, positional: Iterable[str] = ()) -> T:
        """The class of ``name``, after checking that its constructors accept every option.

        Options are the keyword-only parameters of the ``__init__`` of the class and of its
        bases (a subclass may inherit its constructor); ``positional`` names are excluded.
        """
        cls = self.get(name)
        check_class_options(cls, options, positional=positional, name=name)
        return cls


def keyword_options(cls: type, *, positional: Iterable[str] = ()) -> set[str]:
    """The keyword-only parameters of the constructors of ``cls`` and its bases."""
    skip = {"self", *positional}
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters
        accepted |= {p for p, v in parameters.items() if p not in skip and v.kind == v.KEYWORD_ONLY}
    return accepted


def check_class_options(
    cls: type, options: Iterable[str], *, positional: Iterable[str] = (), name: str | None = None
) -> None:
    """Raise a ``TypeError`` naming the options ``cls``'s constructors do not accept."""
    accepted = keyword_options(cls, positional=positional)
    unknown = sorted(set(options) - accepted)
    if unknown:
        takes = ", ".join(sorted(accepted))
        raise TypeError(f"{name or cls.__name__} does not take option(s) {unknown}; it takes: {takes}")
