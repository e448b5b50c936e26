"""The registry of dictionary learners: CRAFT, the CLI and the tests enumerate it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from spyglass.concepts._base import DictionaryLearner
from spyglass.registry import Registry

__all__ = ["create_learner", "learner_class", "list_learners", "register"]

_LEARNERS: Registry[type[DictionaryLearner]] = Registry("dictionary learner")
L = TypeVar("L", bound=type[DictionaryLearner])


def register(name: str) -> Callable[[L], L]:
    """Class decorator: make a :class:`DictionaryLearner` available as ``create_learner(name, …)``."""
    return _LEARNERS.register(name)  # type: ignore[return-value]


def list_learners() -> list[str]:
    """Registered learner names, in registration order."""
    return _LEARNERS.names()


def learner_class(name: str) -> type[DictionaryLearner]:
    """The class registered under ``name``."""
    return _LEARNERS.get(name)


def create_learner(name: str, n_concepts: int, **options: Any) -> DictionaryLearner:
    """Build the learner registered as ``name`` with ``n_concepts`` concepts.

    Examples
    --------
    >>> from spyglass.concepts import create_learner
    >>> create_learner("nmf", 10, seed=1)
    NMF(n_concepts=10, seed=1) [not fitted]
    """
    if not isinstance(name, str):
        raise TypeError(
            f"a dictionary learner's name must be a str ({', '.join(list_learners())}); got {name!r}"
        )
    return _LEARNERS.check_options(name, options, positional=("n_concepts",))(n_concepts, **options)
