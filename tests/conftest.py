"""Shared fixtures: the default model, real ImageNet photos, seeded randomness."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spyglass import models
from spyglass.models import VisionModel

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
