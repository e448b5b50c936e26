"""Shared fixtures: the default model, real ImageNet photos, the tiny models, seeded randomness.

The tiny models themselves live in ``tests/tiny.py`` (what is known about each by hand);
the fixtures here hand out fresh copies, so that no test sees another's changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from spyglass import models
from spyglass.models import VisionModel
from tests import tiny as tiny_models

# Hypothesis profiles. ``ci`` (the default) keeps property tests that do not set their own
# example count cheap; ``fuzz`` (``pytest tests/bad_input --hypothesis-profile=fuzz``) is
# the thousands-of-calls bad-input fuzz whose tally the closing notes state. The option is
# applied by hypothesis's plugin after this file is imported, so it overrides the default.
_PROFILE = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", max_examples=4, derandomize=True, **_PROFILE)
settings.register_profile("fuzz", max_examples=60, **_PROFILE)
settings.load_profile("ci")

# ``../shared/data`` beside the project; SPYGLASS_SHARED_DATA points elsewhere (a git worktree's
# parent is not the project's).
SHARED_DATA = Path(
    os.environ.get("SPYGLASS_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


@pytest.fixture(scope="session")
def lite0() -> VisionModel:
    """EfficientNet-Lite0 with its real ImageNet weights (loaded once per session)."""
    return models.load("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenet_samples() -> Path:
    """``../shared/data/imagenet-samples``: one real photo per class; file i is class i."""
    folder = SHARED_DATA / "imagenet-samples"
    if not folder.is_dir():
        pytest.skip(f"real ImageNet photos not found at {folder}")
    return folder


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def tiny() -> VisionModel:
    """:func:`tests.tiny.tiny_model`: a small CNN with batch norm (32 px, 5 classes), in eval mode."""
    return tiny_models.tiny_model()


@pytest.fixture
def tiny_images() -> torch.Tensor:
    """Five seeded random 32 px images in [0, 1]."""
    return tiny_models.tiny_images()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The bad-input tally (tests/bad_input/contract.py): how many malformed calls, and their fate."""
    from tests.bad_input.contract import TALLY

    if not TALLY:
        return
    total = sum(sum(counts.values()) for counts in TALLY.values())
    terminalreporter.section(f"bad-input tally: {total} malformed calls over {len(TALLY)} entry points")
    outcomes = sorted({outcome for counts in TALLY.values() for outcome in counts})
    for outcome in outcomes:
        count = sum(counts[outcome] for counts in TALLY.values())
        terminalreporter.write_line(f"{outcome:>20}: {count}")
