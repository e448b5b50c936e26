"""The contract's own classifier: a crash, a silent acceptance and a NaN result each fail it."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

from spyglass.validation import check_int
from tests.bad_input import contract
from tests.bad_input.contract import accepts, either, refuses


@pytest.fixture(autouse=True)
def untallied() -> Iterator[None]:
    """These deliberate failures are not calls of spyglass: keep them out of the session's tally."""
    before = copy.deepcopy(contract.TALLY)
    yield
    contract.TALLY.clear()
    contract.TALLY.update(before)


def test_an_error_from_inside_a_dependency_is_a_crash() -> None:
    with pytest.raises(AssertionError, match="crashed"):
        refuses("self-test", lambda: torch.zeros(2)[5])
    with pytest.raises(AssertionError, match="crashed"):
        either("self-test", lambda: torch.zeros(2)[5])


def test_a_value_error_not_raised_by_spyglass_is_a_crash() -> None:
    def foreign() -> None:
        raise ValueError("a sentence, but not ours")

    with pytest.raises(AssertionError, match="crashed"):
        refuses("self-test", foreign)


def test_a_return_is_a_silent_acceptance_and_nan_fails() -> None:
    with pytest.raises(AssertionError, match="silently accepted"):
        refuses("self-test", lambda: 1.0)
    with pytest.raises(AssertionError, match="NaN"):
        either("self-test", lambda: float("nan"))
    with pytest.raises(AssertionError, match="NaN"):
        accepts("self-test", lambda: {"maps": torch.tensor([0.0, float("nan")])})


def test_a_refusal_by_spyglass_passes_and_must_say_what_is_asked() -> None:
    error = refuses("self-test", lambda: check_int(-1, "steps", 1), match="steps")
    assert isinstance(error, ValueError)
    with pytest.raises(AssertionError, match="without saying"):
        refuses("self-test", lambda: check_int(-1, "steps", 1), match="seed")
