"""A harmonization task with a known answer: composite images whose "human" map is known.

Each composite puts a photo of the labelled class on one half (left or right, at random)
and a photo of another class — a *distractor*, never a label — on the other; its map is 1
on the object's half and 0 on the distractor's. A model that classifies them right need
only look at the object's half, and the alignment score (:func:`alignment_score`) then
measures whether its explanation does. Used by the test of :func:`harmonize` and by
``benchmarks/alignment.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import TensorDataset

from spyglass.validation import check_int, check_seed

__all__ = ["composite_task", "read_halves"]


def read_halves(paths: Sequence[str | os.PathLike[str]], size: int) -> Tensor:
    """Photos squashed (bilinear, not cropped) to half a composite: ``(N, 3, size, size // 2)`` in [0, 1].

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "photo.png"; Image.new("RGB", (40, 30)).save(path)
    >>> read_halves([path], 16).shape
    torch.Size([1, 3, 16, 8])
    """
    size = check_int(size, "size", minimum=2)
    if size % 2:
        raise ValueError(f"size must be even (two halves of size // 2 columns); got {size}")
    if not paths:
        raise ValueError("read_halves needs at least one photo path")
    out = []
    for path in paths:
        with Image.open(Path(path)) as image:
            half = image.convert("RGB").resize((size // 2, size), Image.Resampling.BILINEAR)
        out.append(np.asarray(half, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def composite_task(objects: Tensor, labels: Tensor, distractors: Tensor, *, seed: int = 0) -> TensorDataset:
    """Composites of each object half beside a random distractor half, and their "human" maps.

    For each object, in order, a distractor is drawn (with replacement) and a side: with
    ``rng = numpy.random.default_rng(seed)``, first ``rng.integers(len(distractors))``, then
    ``rng.integers(2)`` (1: the object on the left). The map is 1 on the object's half.

    Parameters
    ----------
    objects
        ``(N, 3, H, H // 2)`` halves of the labelled photos (e.g. from :func:`read_halves`).
    labels
        ``(N,)`` their classes.
    distractors
        ``(M, 3, H, H // 2)`` halves of photos of classes that are not labels.
    seed
        Seeds the draws.

    Returns
    -------
    TensorDataset
        ``(images (N, 3, H, H), labels (N,), maps (N, H, H))``, the items :func:`harmonize`
        takes.

    Examples
    --------
    >>> import torch
    >>> task = composite_task(torch.ones(2, 3, 8, 4), torch.tensor([0, 1]), torch.zeros(3, 3, 8, 4))
    >>> images, labels, maps = task.tensors
    >>> images.shape, bool(torch.equal(images.mean(1), maps))    # the object is where the map is
    (torch.Size([2, 3, 8, 8]), True)
    """
    for name, halves in (("objects", objects), ("distractors", distractors)):
        if not isinstance(halves, Tensor) or halves.ndim != 4 or halves.shape[1] != 3:
            got = tuple(halves.shape) if isinstance(halves, Tensor) else type(halves).__name__
            raise ValueError(f"{name} must be a (N, 3, H, H // 2) tensor of image halves; got {got}")
    height, width = objects.shape[2], objects.shape[3]
    if height != 2 * width or tuple(distractors.shape[2:]) != (height, width):
        raise ValueError(
            f"objects and distractors must be halves of the same square, (H, H // 2); got "
            f"{tuple(objects.shape[2:])} and {tuple(distractors.shape[2:])}"
        )
    if len(distractors) == 0:
        raise ValueError("composite_task needs at least one distractor")
    if not isinstance(labels, Tensor) or labels.shape != (len(objects),):
        raise ValueError(f"labels must be a ({len(objects)},) tensor, one per object")
    rng = np.random.default_rng(check_seed(seed))
    images = torch.empty(len(objects), 3, height, height, dtype=objects.dtype)
    maps = torch.zeros(len(objects), height, height, dtype=objects.dtype)
    for i, photo in enumerate(objects):
        other = distractors[int(rng.integers(len(distractors)))]
        left = bool(rng.integers(2))
        images[i] = torch.cat((photo, other) if left else (other, photo), dim=2)
        if left:
            maps[i, :, :width] = 1.0
        else:
            maps[i, :, width:] = 1.0
    return TensorDataset(images, labels.clone(), maps)
