"""Concept tests: the planted-concept model of ``tests/tiny.py`` and CRAFT fitted on it, run
on one thread.

Concept tests run on small matrices: one thread each, so that on a shared machine thread
start-up and barriers (torch's OpenMP, scikit-learn's BLAS) do not cost more than the work
itself."""

from collections.abc import Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits

from spyglass.concepts import Craft
from tests.tiny import TinyNet, block_images


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def tiny() -> TinyNet:
    """The planted-concept model (here ``tiny`` is :class:`tests.tiny.TinyNet`)."""
    return TinyNet()


@pytest.fixture
def fitted(tiny: TinyNet) -> Craft:
    """CRAFT with 3 concepts at ``relu2``, fitted on six block images for class 1.

    ``stride=8`` tiles the 8 px blocks, one colour per crop (the default 0.8 · patch overlaps them).
    """
    return Craft(tiny, layer="relu2", n_concepts=3, patch_size=8, stride=8, progress=False).fit(
        block_images(6), 1
    )
