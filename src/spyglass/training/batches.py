"""Seeded batches: the order of every epoch is a function of ``(seed, epoch)`` alone.

Why not a ``DataLoader`` with ``shuffle=True``: its sampler draws each epoch's order from
a generator whose state depends on everything drawn before, so resuming in the middle of
epoch 7 means replaying epochs 0 to 6. Here epoch ``e`` is shuffled by a generator seeded
from ``(seed, e)`` (mixed by NumPy's ``SeedSequence``, so that nearby seeds give unrelated
orders), and a resumed run finds its place from the step count alone. A ``DataLoader``
still does the loading (workers, collation) of any map-style dataset, handed the batches
one by one; a :class:`~torch.utils.data.TensorDataset` is indexed directly, without a
per-item round trip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["batches_per_epoch", "check_dataset", "epoch_batches", "epoch_order", "epoch_seed", "to_device"]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for epoch ``epoch`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def epoch_order(size: int, epoch: int, seed: int, shuffle: bool) -> Tensor:
    """The order in which epoch ``epoch`` visits items ``0 … size − 1`` (identity without shuffling)."""
    if not shuffle:
        return torch.arange(size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


def batches_per_epoch(size: int, batch_size: int, drop_last: bool) -> int:
    """How many batches an epoch of ``size`` items has."""
    return size // batch_size if drop_last else -(-size // batch_size)


def check_dataset(data: object) -> Dataset[Any]:
    """``data`` if it is a map-style dataset with at least one item."""
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        hint = (
            " (wrap tensors in torch.utils.data.TensorDataset)" if isinstance(data, (Tensor, tuple)) else ""
        )
        raise TypeError(
            "data must be a map-style torch.utils.data.Dataset with __len__ (seeded shuffling needs "
            f"random access); got {type(data).__name__}{hint}"
        )
    if len(data) == 0:
        raise ValueError("data must hold at least one item; got an empty dataset")
    return data


def epoch_batches(
    data: Dataset[Any],
    epoch: int,
    *,
    seed: int,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    start: int = 0,
    workers: int = 0,
) -> Iterator[Any]:
    """The batches of epoch ``epoch`` from batch ``start`` on, each collated as a ``DataLoader`` does."""
    size = len(data)  # type: ignore[arg-type]
    order = epoch_order(size, epoch, seed, shuffle)
    count = batches_per_epoch(size, batch_size, drop_last)
    chunks = [order[b * batch_size : (b + 1) * batch_size] for b in range(start, count)]
    if isinstance(data, TensorDataset):
        for chunk in chunks:
            yield tuple(tensor[chunk] for tensor in data.tensors)
        return
    # The generator seeds the workers; without it the loader would draw from the global RNG and a
    # resumed run (which builds its loader at another point of that stream) would drift.
    loader = DataLoader(
        data,
        batch_sampler=[chunk.tolist() for chunk in chunks],
        num_workers=workers,
        generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)),
    )
    yield from loader


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (in tuples, lists and dicts, at any depth) moved to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(to_device(item, device) for item in batch)
    if isinstance(batch, list):
        return [to_device(item, device) for item in batch]
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch
