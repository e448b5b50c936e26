"""Shared fixtures: the default model, real ImageNet photos, the tiny models, seeded randomness.

The tiny models themselves live in ``tests/tiny.py`` (what is known about each by hand);
the fixtures here hand out fresh copies, so that no test sees another's changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spyglass import models
from spyglass.models import VisionModel
from tests import tiny as tiny_models

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
