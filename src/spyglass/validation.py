"""Checks of user input shared by every public entry point.

Each check raises a ``TypeError`` or ``ValueError`` whose message says what was
expected and what came, so that bad input never surfaces as a deep PyTorch traceback.
Engines and methods call these once, at the boundary; internal code trusts its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_images", "check_targets"]


def check_images(images: object, *, name: str = "images") -> Tensor:
    """Return ``images`` if it is a float tensor ``(N, 3, H, W)`` with finite values in [0, 1].

    Parameters
    ----------
    images
        The candidate batch.
    name
        How the argument is called in error messages.

    Raises
    ------
    TypeError
        If ``images`` is not a floating-point tensor.
    ValueError
        If the shape is not ``(N, 3, H, W)`` with ``N >= 1``, a value is NaN or infinite,
        or a value lies outside [0, 1].
    """
    expected = f"{name} must be a float tensor of shape (N, 3, H, W) with values in [0, 1]"
    if not isinstance(images, Tensor):
        raise TypeError(f"{expected}; got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{expected}; got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " (add a batch dimension with images[None])" if images.ndim == 3 else ""
        raise ValueError(f"{expected}; got shape {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{expected}; got an empty batch")
    # min and max propagate NaN and see ±inf, so they check finiteness without the
    # (N, 3, H, W) boolean temporary that isfinite would allocate on a large batch.
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(images)).sum())
        raise ValueError(f"{expected}; got {bad} NaN or infinite value(s)")
    if low < 0.0 or high > 1.0:
        hint = ""
        if high > 1.0 and high <= 255.0 and low >= 0.0:
            hint = " (pixel values in [0, 255]? divide by 255)"
        elif low < 0.0:
            hint = " (already normalised? the model wrapper normalises; pass raw pixels)"
        raise ValueError(f"{expected}; got values in [{low:.4g}, {high:.4g}]{hint}")
    return images


def check_targets(targets: object, n: int, num_classes: int | None = None) -> Tensor:
    """Return ``targets`` as a ``long`` tensor of shape ``(n,)``.

    Parameters
    ----------
    targets
        A Python ``int`` (the same class for every image), or an integer tensor of shape
        ``(n,)`` (or a 0-d tensor), or a sequence of ``n`` ints.
    n
        The number of images the targets belong to.
    num_classes
        When given, every target must lie in ``[0, num_classes)``.
    """
    expected = f"targets must be an int or {n} integer class indices"
    if isinstance(targets, bool):
        raise TypeError(f"{expected}; got a bool")
    if isinstance(targets, int):
        result = torch.full((n,), targets, dtype=torch.long)
    elif isinstance(targets, Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"{expected}; got a tensor of dtype {targets.dtype}")
        if targets.ndim == 0:
            result = targets.reshape(1).expand(n).long()
        elif targets.ndim == 1 and targets.shape[0] == n:
            result = targets.long()
        else:
            raise ValueError(f"{expected}; got a tensor of shape {tuple(targets.shape)}")
    elif isinstance(targets, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
            raise TypeError(f"{expected}; got a sequence with non-int items")
        if len(targets) != n:
            raise ValueError(f"{expected}; got {len(targets)}")
        result = torch.tensor(list(targets), dtype=torch.long)
    else:
        raise TypeError(f"{expected}; got {type(targets).__name__}")
    if num_classes is not None and result.numel() > 0:
        low, high = int(result.min()), int(result.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"targets must lie in [0, {num_classes - 1}] for a {num_classes}-class model; "
                f"got values in [{low}, {high}]"
            )
    return result
