"""Concept tests run on small matrices: one thread each, so that on a shared machine
thread start-up and barriers (torch's OpenMP, scikit-learn's BLAS) do not cost more than
the work itself."""

from collections.abc import Iterator

import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
