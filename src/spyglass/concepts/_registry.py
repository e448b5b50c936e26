"""The registry of dictionary learners: CRAFT, the CLI and the tests enumerate it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from spyglass.concepts._base import DictionaryLearner

__all__ = ["create_learner", "learner_class", "list_learners", "register"]

_LEARNERS: dict[str, type[DictionaryLearner]] = {}
L = TypeVar("L", bound=type[DictionaryLearner])


def register(name: str) -> Callable[[L], L]:
    """Class decorator: make a :class:`DictionaryLearner` available as ``create_learner(name, …)``."""

    def decorate(cls: L) -> L:
        if name in _LEARNERS and _LEARNERS[name] is not cls:
            raise ValueError(
                f"dictionary learner {name!r} is already registered by {_LEARNERS[name].__name__}"
            )
        cls.name = name
        _LEARNERS[name] = cls
        return cls

    return decorate


def list_learners() -> list[str]:
    """Registered learner names, in registration order."""
    return list(_LEARNERS)


def learner_class(name: str) -> type[DictionaryLearner]:
    """The class registered under ``name``."""
    if name not in _LEARNERS:
        close = difflib.get_close_matches(name, _LEARNERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown dictionary learner {name!r}; available: {', '.join(_LEARNERS)}.{hint}")
    return _LEARNERS[name]


def create_learner(name: str, n_concepts: int, **options: Any) -> DictionaryLearner:
    """Build the learner registered as ``name`` with ``n_concepts`` concepts.

    Examples
    --------
    >>> from spyglass.concepts import create_learner
    >>> create_learner("nmf", 10, seed=1)
    NMF(n_concepts=10, seed=1) [not fitted]
    """
    cls = learner_class(name)
    accepted = _options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{name} does not take option(s) {unknown}; it takes: {', '.join(sorted(accepted))}")
    return cls(n_concepts, **options)


def _options(cls: type[DictionaryLearner]) -> set[str]:
    parameters = inspect.signature(cls.__init__).parameters
    return {p for p, v in parameters.items() if v.kind == v.KEYWORD_ONLY}
