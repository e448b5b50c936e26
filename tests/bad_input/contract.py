"""What a malformed call must do, and the tally of what every call did.

A call given bad input passes the contract when it

- raises a ``ValueError`` or ``TypeError`` (or an error class spyglass defines and documents)
  *from spyglass's own code*: the innermost frame of the traceback is in ``src/spyglass``,
  so the message is a sentence of ours, not one from torch, numpy, scikit-learn or PIL;
- has a message (one sentence saying what was expected and what came);
- leaves the model as found (modes, hooks, gradients, values, grad mode).

A call whose input is unusual but valid by a documented decision (float64 images converted
to the model's dtype, say) passes when it returns a result with no NaN or infinity in it.

Everything else is a *crash* (an error from inside a dependency, or a bare ``RuntimeError``
/ ``IndexError`` / ``AssertionError``...) or a *silent acceptance* (no error for input that
should have none). The tally is printed at the end of the session, so that
``pytest tests/bad_input --hypothesis-profile=fuzz`` states how many malformed calls were
made and what became of them.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

import spyglass
from tests.helpers import ModelState

__all__ = ["TALLY", "accepts", "count", "either", "refuses", "spyglass_error"]

SPYGLASS_SOURCE = Path(spyglass.__file__).resolve().parent

# entry point -> outcome -> count, over the whole session.
TALLY: dict[str, Counter[str]] = {}


def count(entry: str, outcome: str) -> None:
    """Tally one call of ``entry`` (for harnesses that classify outcomes themselves, like the CLI's)."""
    TALLY.setdefault(entry, Counter())[outcome] += 1


def spyglass_error(error: BaseException) -> bool:
    """Whether ``error`` is a clean refusal: the right class, raised by spyglass, with a message."""
    documented = type(error).__module__.startswith("spyglass")
    if not (isinstance(error, (ValueError, TypeError)) or documented):
        return False
    if not str(error).strip():
        return False
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    innermost = Path(frames[-1].filename).resolve()
    return SPYGLASS_SOURCE in innermost.parents


def _finite(result: Any) -> bool:
    """No NaN or infinity anywhere in a result (tensors, arrays, floats, containers, dataclasses)."""
    if isinstance(result, torch.Tensor):
        return bool(torch.isfinite(result).all()) if result.is_floating_point() else True
    if isinstance(result, np.ndarray):
        return bool(np.isfinite(result).all()) if np.issubdtype(result.dtype, np.floating) else True
    if isinstance(result, float):
        return bool(np.isfinite(result))
    if isinstance(result, dict):
        return all(_finite(value) for value in result.values())
    if isinstance(result, (list, tuple)):
        return all(_finite(value) for value in result)
    if hasattr(result, "__dataclass_fields__"):
        return all(_finite(getattr(result, name)) for name in result.__dataclass_fields__)
    return True


@contextmanager
def _watch(model: nn.Module | None) -> Iterator[None]:
    before = ModelState.of(model) if model is not None else None
    yield
    if model is not None and before is not None:
        changed = before.differences(ModelState.of(model))
        assert not changed, "the model was not left as found:\n  " + "\n  ".join(changed)


def _outcome(entry: str, call: Callable[[], object], model: nn.Module | None) -> tuple[bool, object]:
    """``(True, error)`` for a clean refusal, ``(False, result)`` for a return; a crash fails here."""
    with _watch(model):
        try:
            return False, call()
        except Exception as error:
            if not spyglass_error(error):
                count(entry, "crashed")
                what = f"{type(error).__name__}: {error}"
                raise AssertionError(f"{entry}: crashed instead of refusing: {what}") from error
            return True, error


def _finite_result(entry: str, result: object) -> object:
    if not _finite(result):
        count(entry, "non-finite result")
        raise AssertionError(f"{entry}: returned NaN or infinity")
    count(entry, "accepted")
    return result


def refuses(
    entry: str, call: Callable[[], object], *, model: nn.Module | None = None, match: str | None = None
) -> BaseException:
    """Assert that ``call()`` refuses its input cleanly (see the module docstring); return the error.

    ``entry`` names the public entry point for the tally (``"attributions.saliency"``,
    ``"cli explain"``). ``match``, when given, must occur in the message (case-insensitive).
    """
    refused, outcome = _outcome(entry, call, model)
    if not refused:
        count(entry, "silently accepted")
        raise AssertionError(f"{entry}: silently accepted bad input (returned {type(outcome).__name__})")
    error = cast(BaseException, outcome)
    if match is not None and match.lower() not in str(error).lower():
        count(entry, "unclear")
        raise AssertionError(f"{entry}: refused without saying {match!r}: {error}") from error
    count(entry, "refused")
    return error


def accepts(entry: str, call: Callable[[], object], *, model: nn.Module | None = None) -> object:
    """Assert that ``call()`` accepts unusual-but-valid input and returns a finite result."""
    with _watch(model):
        try:
            result = call()
        except Exception as error:
            count(entry, "crashed" if not spyglass_error(error) else "wrongly refused")
            what = f"{type(error).__name__}: {error}"
            raise AssertionError(f"{entry}: failed on valid input: {what}") from error
    return _finite_result(entry, result)


def either(entry: str, call: Callable[[], object], *, model: nn.Module | None = None) -> object:
    """Assert that ``call()`` either refuses cleanly or returns a finite result (generative fuzzing).

    For inputs drawn from a space where valid and invalid values mix (random matrices, say),
    the property is that nothing crashes and nothing non-finite comes back.
    """
    refused, outcome = _outcome(entry, call, model)
    if refused:
        count(entry, "refused")
        return outcome
    return _finite_result(entry, outcome)
