"""Helpers to compare our maps with a peer implementation (Captum) or a reference, on real photos."""

from pathlib import Path

import pytest
import torch

from spyglass import data
from spyglass.models import VisionModel


def captum_attr():  # type: ignore[no-untyped-def]
    """``captum.attr``, or skip the calling test: Captum is a test dependency, never a runtime one."""
    return pytest.importorskip("captum.attr")


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def agree(ours: torch.Tensor, theirs: torch.Tensor, minimum: float = 0.99) -> list[float]:
    """Assert a per-image Pearson correlation of at least ``minimum``; return the correlations."""
    correlations = [pearson(ours[i], theirs[i]) for i in range(ours.shape[0])]
    for i, r in enumerate(correlations):
        assert r >= minimum, f"image {i}: Pearson {r:.4f} with the peer (all: {correlations})"
    return correlations


def imagenet_photos(
    folder: Path, model: VisionModel, classes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The photos of ``classes`` from ``imagenet-samples`` (file i is class i), preprocessed, with labels."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    batch = data.read_images([files[k] for k in classes], model.preprocess, progress=False)
    assert batch.labels.tolist() == classes, batch.paths
    return batch.images, batch.labels
