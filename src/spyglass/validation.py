"""Checks of user input shared by every public entry point.

Each check raises a ``TypeError`` or ``ValueError`` whose message says what was
expected and what came, so that bad input never surfaces as a deep PyTorch traceback.
Engines and methods call these once, at the boundary; internal code trusts its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "InvalidArgumentError",
    "check_batch_size",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_device",
    "check_float",
    "check_floats",
    "check_fraction",
    "check_images",
    "check_int",
    "check_mapping",
    "check_names",
    "check_positive_float",
    "check_probability",
    "check_seed",
    "check_size",
    "check_targets",
]


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
    if isinstance(targets, (bool, np.bool_)):
        raise TypeError(f"{expected}; got a bool")
    if isinstance(targets, np.ndarray):
        raise TypeError(f"{expected}; got a numpy array (convert with torch.from_numpy)")
    if isinstance(targets, (int, np.integer)):
        _check_index_range(int(targets), expected)
        result = torch.full((n,), int(targets), dtype=torch.long)
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
        if not all(isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)) for t in targets):
            raise TypeError(f"{expected}; got a sequence with non-int items")
        if len(targets) != n:
            raise ValueError(f"{expected}; got {len(targets)}")
        for target in targets:
            _check_index_range(int(target), expected)
        result = torch.tensor([int(t) for t in targets], dtype=torch.long)
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


def _check_index_range(target: int, expected: str) -> None:
    # torch.long holds 64 bits; a Python int beyond that would fail deep inside torch.
    if not -(2**63) <= target < 2**63:
        raise ValueError(f"{expected}; got {target}, which no class index can be")


# --- Scalars and containers -------------------------------------------------------------
# One phrasing for every option of the library: "<name> must be <what>; got <value>". A value
# of the right type out of range is a ValueError; a value of the wrong type an
# InvalidArgumentError, which is both a ValueError and a TypeError (as scikit-learn's
# InvalidParameterError), so that code catching either sees it.


class InvalidArgumentError(ValueError, TypeError):
    """An option of the wrong type: both a ``ValueError`` and a ``TypeError``."""


_SEED_LIMIT = 2**32  # what NumPy's legacy RandomState and scikit-learn's random_state accept


def _int_phrase(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an int in [{minimum}, {maximum}]"
    if minimum == 1:
        return "a positive int"
    if minimum == 0:
        return "a non-negative int"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(
    value: object, name: str, minimum: int | None = None, *, maximum: int | None = None, hint: str = ""
) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a ``bool``) in ``[minimum, maximum]``.

    NumPy integers are accepted (what ``np.argmax`` and friends return); floats are not,
    even integral ones, since ``steps=2.5`` is a mistake rather than a request.

    ``hint`` (what the number means, in a few words) is added to the error message.

    Raises
    ------
    InvalidArgumentError
        If ``value`` is not an integer (a ``ValueError`` and a ``TypeError``).
    ValueError
        If it lies outside the bounds.

    Examples
    --------
    >>> check_int(8, "steps", minimum=2)
    8
    """
    expected = f"{name} must be {_int_phrase(minimum, maximum)}{f' ({hint})' if hint else ''}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{expected}; got {value!r} ({type(value).__name__})")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{expected}; got {number}")
    return number


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` if it is an int in ``[0, 2**32)``, the range every seeded library here accepts."""
    expected = f"{name} must be a non-negative int below 2**32"
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"{expected}; got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) < _SEED_LIMIT:
        raise ValueError(f"{expected}; got {int(seed)}")
    return int(seed)


def check_batch_size(batch_size: object) -> int:
    """Return ``batch_size`` if it is a positive int."""
    return check_int(batch_size, "batch_size", minimum=1)


def _interval(minimum: float | None, maximum: float | None, low_open: bool, high_open: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if low_open else '['}{minimum:g}, {maximum:g}{')' if high_open else ']'}"
    if minimum is not None:
        return f"{'>' if low_open else '>='} {minimum:g}"
    if maximum is not None:
        return f"{'<' if high_open else '<='} {maximum:g}"
    return ""


def check_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number within the given bounds.

    ``low_open``/``high_open`` exclude the bound itself (``minimum=0, low_open=True`` is
    "> 0"). NaN and ±inf are always refused: no option of the library means anything there.
    ``hint`` (what the number means, in a few words) is added to the error message.

    Examples
    --------
    >>> check_float(0.5, "keep_probability", minimum=0, maximum=1, low_open=True)
    0.5
    """
    interval = _interval(minimum, maximum, low_open, high_open)
    expected = (
        f"{name} must be a finite number{' ' + interval if interval else ''}{f' ({hint})' if hint else ''}"
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"{expected}; got {value!r} ({type(value).__name__})")
    number = float(value)
    too_low = minimum is not None and (number <= minimum if low_open else number < minimum)
    too_high = maximum is not None and (number >= maximum if high_open else number > maximum)
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{expected}; got {value!r}")
    return number


def check_positive_float(value: object, name: str, *, allow_zero: bool = False, hint: str = "") -> float:
    """Return ``value`` if it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    return check_float(value, name, minimum=0.0, low_open=not allow_zero, hint=hint)


def check_fraction(value: object, name: str) -> float:
    """Return ``value`` if it is a finite number strictly between 0 and 1."""
    return check_float(value, name, minimum=0.0, maximum=1.0, low_open=True, high_open=True)


def check_probability(value: object, name: str) -> float:
    """Return ``value`` if it is a number in [0, 1]."""
    return check_float(value, name, minimum=0.0, maximum=1.0)


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (a NumPy bool too); ``1`` and ``"yes"`` are not."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_mapping(value: object, name: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a mapping with string keys (``None`` is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of names to values; got {type(value).__name__}")
    bad = [key for key in value if not isinstance(key, str)]
    if bad:
        raise TypeError(f"{name} must have str keys; got {bad[0]!r}")
    return value


def check_callable(value: object, name: str, signature: str) -> Callable[..., Any]:
    """Return ``value`` if it is callable; ``signature`` says in the error what it should look like."""
    if not callable(value):
        raise TypeError(f"{name} must be callable {signature}; got {value!r}")
    return value


# Checks for models, data, concepts and the CLI.


def check_size(value: object, name: str = "input_size") -> tuple[int, int]:
    """Return ``value`` as ``(height, width)`` if it is a pair of positive ints.

    Examples
    --------
    >>> check_size((224, 224))
    (224, 224)
    """
    expected = f"{name} must be (height, width), two positive ints"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidArgumentError(f"{expected}; got {value!r}")
    height, width = (check_int(side, f"{name}[{i}]", 1, hint=expected) for i, side in enumerate(value))
    return height, width


def check_floats(
    value: object, name: str, length: int, *, minimum: float | None = None, low_open: bool = False
) -> tuple[float, ...]:
    """Return ``value`` as a tuple of ``length`` finite floats (each ``>= minimum``, or ``>`` it).

    Examples
    --------
    >>> check_floats((0.5, 0.5, 0.5), "mean", 3)
    (0.5, 0.5, 0.5)
    """
    bound = "" if minimum is None else f" {'>' if low_open else '>='} {minimum:g}"
    expected = f"{name} must be {length} finite numbers{bound}"
    if isinstance(value, Tensor):
        value = value.detach().cpu().flatten().tolist()
    elif isinstance(value, np.ndarray):
        value = value.flatten().tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidArgumentError(f"{expected}; got {value!r} ({type(value).__name__})")
    if len(value) != length:
        raise ValueError(f"{expected}; got {len(value)}: {value!r}")
    numbers = []
    for item in value:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.integer, np.floating)):
            raise InvalidArgumentError(f"{expected}; got {value!r}")
        number = float(item)
        too_low = minimum is not None and (number <= minimum if low_open else number < minimum)
        if not math.isfinite(number) or too_low:
            raise ValueError(f"{expected}; got {value!r}")
        numbers.append(number)
    return tuple(numbers)


def check_names(value: object, name: str, length: int | None = None) -> list[str]:
    """Return ``value`` as a list of strings if it is a non-empty sequence of them (not one string).

    ``length``, when given, is how many there must be.
    """
    count = "at least one" if length is None else str(length)
    expected = f"{name} must be a list of {count} str"
    if isinstance(value, (str, bytes)):
        raise InvalidArgumentError(f"{expected}; got the single string {value!r} (wrap it in a list)")
    if not isinstance(value, Sequence):
        raise InvalidArgumentError(f"{expected}; got {type(value).__name__}")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise InvalidArgumentError(f"{expected}; got an item {bad[0]!r} ({type(bad[0]).__name__})")
    if not value or (length is not None and len(value) != length):
        raise ValueError(f"{expected}; got {len(value)}")
    return list(value)


def check_device(value: object, name: str = "device") -> torch.device:
    """Return ``value`` as a ``torch.device`` this machine has (``"cpu"``, ``"cuda:0"``, ``"mps"``…).

    The meta device (tensors without data) is refused: nothing can be computed there.
    """
    expected = f"{name} must be a device this machine has, such as 'cpu' or 'cuda'"
    if not isinstance(value, (str, torch.device)):
        raise InvalidArgumentError(f"{expected}; got {value!r} ({type(value).__name__})")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"{expected}; got {value!r}, which is not a device name") from None
    if device.type == "meta":
        raise ValueError(f"{expected}; got the meta device, which holds no data to compute with")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{expected}; got {value!r}, but torch sees no CUDA GPU here")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{expected}; got {value!r}, but torch sees {count} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{expected}; got {value!r}, but MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{expected}; got {value!r}, which spyglass does not run on")
    return device
