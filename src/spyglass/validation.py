"""Checks of user input shared by every public entry point.

Each check raises a ``TypeError`` or ``ValueError`` whose message says what was
expected and what came, so that bad input never surfaces as a deep PyTorch traceback.
Engines and methods call these once, at the boundary; internal code trusts its inputs.

Decisions taken here once, for the whole library:

- **Image dtype.** Any floating dtype is accepted (``torch.from_numpy`` gives float64,
  mixed-precision code float16/bfloat16) and, when the model is given
  (``check_images(images, model=model)``), converted to the dtype of the model's
  floating-point parameters, so a float64 batch explains a float32 model. Integer images
  are refused (their [0, 255] scale is not the library's [0, 1]; the message says to
  divide by 255), and so are complex and bool tensors and tensors on the ``meta`` device
  (they hold no values).
- **Model outputs.** The built-in objectives read logits ``(N, classes)``: a model that
  returns anything else, or targets beyond its classes, is refused on the first batch by
  :func:`check_logits` with a sentence, never an ``IndexError`` from ``gather``.
- **Scores.** Whatever an objective returns goes through :func:`check_scores`: ``(N,)``
  finite values, or an error naming the objective (a NaN score would become a NaN map, a
  failed linear solve or a NaN metric far from its cause).
- **Gradients under ``torch.no_grad`` and ``torch.inference_mode``** are the engines'
  business (:mod:`spyglass.engines.gradients` switches them back on locally);
  :func:`check_differentiable_model` refuses the one case torch cannot serve, a model whose
  weights were created inside ``torch.inference_mode``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "InvalidArgumentError",
    "check_batch_size",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_device",
    "check_differentiable_model",
    "check_finite_tensor",
    "check_float",
    "check_floats",
    "check_fraction",
    "check_images",
    "check_int",
    "check_logits",
    "check_mapping",
    "check_measured",
    "check_model",
    "check_names",
    "check_positive_float",
    "check_probability",
    "check_rows",
    "check_same_shape",
    "check_scores",
    "check_seed",
    "check_sequence_of_names",
    "check_size",
    "check_targets",
    "describe",
    "floating_dtype",
]


def floating_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the first floating-point parameter or buffer of ``model`` (float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def check_model(model: object, name: str = "model") -> nn.Module:
    """Return ``model`` if it is a ``torch.nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(model).__name__}")
    return model


def check_images(images: object, *, name: str = "images", model: nn.Module | None = None) -> Tensor:
    """Return ``images`` if it is a float tensor ``(N, 3, H, W)`` with finite values in [0, 1].

    Parameters
    ----------
    images
        The candidate batch.
    name
        How the argument is called in error messages.
    model
        When given, the images are returned in the model's floating dtype
        (:func:`floating_dtype`): a float64 batch for a float32 model is converted, not
        refused (see the module docstring).

    Raises
    ------
    TypeError
        If ``images`` is not a floating-point tensor (an integer one gets a hint to divide
        by 255).
    ValueError
        If it lives on the meta device, the shape is not ``(N, 3, H, W)`` with ``N >= 1``, a
        value is NaN or infinite, or a value lies outside [0, 1].
    """
    expected = f"{name} must be a float tensor of shape (N, 3, H, W) with values in [0, 1]"
    if not isinstance(images, Tensor):
        hint = " (convert with torch.from_numpy)" if isinstance(images, np.ndarray) else ""
        raise TypeError(f"{expected}; got {type(images).__name__}{hint}")
    if not images.is_floating_point():
        hint = ""
        if not images.is_complex() and images.dtype != torch.bool:
            hint = " (integer pixels in [0, 255]? convert with images.float() / 255)"
        raise TypeError(f"{expected}; got dtype {images.dtype}{hint}")
    if images.device.type == "meta":
        raise ValueError(f"{expected}; got a tensor on the meta device, which holds no values")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " (add a batch dimension with images[None])" if images.ndim == 3 else ""
        raise ValueError(f"{expected}; got shape {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError(f"{expected}; got an empty batch")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{expected}; got images of {images.shape[2]}×{images.shape[3]} pixels")
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
    if model is not None:
        dtype = floating_dtype(model)
        if images.dtype != dtype:
            images = images.to(dtype)
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
        if targets.device.type == "meta":
            raise ValueError(f"{expected}; got a tensor on the meta device, which holds no values")
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


# --- What models and objectives return ----------------------------------------------------


def describe(value: object) -> str:
    """A few words on what ``value`` is, for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} (convert with torch.from_numpy)"
    return type(value).__name__


def _callable_name(function: object) -> str:
    name = getattr(function, "__name__", None)
    return str(name) if name else repr(function)


def check_logits(logits: object, targets: Tensor, *, source: str = "the model") -> Tensor:
    """Return ``logits`` if it is a float tensor ``(N, classes)`` whose classes include every target.

    What the built-in objectives read before indexing the target class, so that a model
    returning ``(N,)``, ``(N, C, 1, 1)`` or too few classes gets a sentence, not an
    ``IndexError`` from ``gather``.
    """
    n = int(targets.shape[0])
    expected = f"{source} must return logits of shape (N, classes) = ({n}, classes)"
    if not isinstance(logits, Tensor):
        raise TypeError(f"{expected}; got {describe(logits)}")
    if not logits.is_floating_point():
        raise TypeError(f"{expected} of a floating dtype; got {describe(logits)}")
    if logits.ndim != 2 or logits.shape[0] != n:
        hint = ""
        if logits.ndim == 4 and logits.shape[0] == n and logits.shape[2:] == (1, 1):
            hint = " (a pooled feature map: end the model with torch.nn.Flatten())"
        elif logits.ndim == 1 and logits.shape[0] == n:
            hint = " (one score per image: pass an objective (model, images, targets) -> (N,) that reads it)"
        raise ValueError(f"{expected}; got shape {tuple(logits.shape)}{hint}")
    classes = int(logits.shape[1])
    if n:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"targets must lie in [0, {classes - 1}] for {source}, which returns {classes} logits; "
                f"got values in [{low}, {high}]"
            )
    return logits


def check_scores(scores: object, n: int, objective: object) -> Tensor:
    """Return ``scores`` if it is a float tensor ``(n,)`` of finite values; the error names ``objective``.

    A NaN score would surface far from its cause (a NaN map, a failed linear solve, a NaN
    metric), so every engine checks what the objective returns, batch by batch.
    """
    who = f"the objective {_callable_name(objective)}"
    expected = f"{who} must return one finite score per input, a float tensor of shape ({n},)"
    if not isinstance(scores, Tensor):
        raise TypeError(f"{expected}; got {describe(scores)}")
    if not scores.is_floating_point():
        raise TypeError(f"{expected}; got dtype {scores.dtype}")
    if tuple(scores.shape) != (n,):
        raise ValueError(f"{expected}; got shape {tuple(scores.shape)}")
    finite = torch.isfinite(scores.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{who} returned {bad} NaN or infinite score(s) among {n}; scores must be finite "
            "(look at the model's outputs on these inputs)"
        )
    return scores


def check_differentiable_model(model: nn.Module) -> nn.Module:
    """Return ``model`` unless its weights are inference tensors, which autograd cannot use.

    A model built or loaded inside ``torch.inference_mode()`` has them; the gradient engine
    can leave inference mode for its own tensors, but not for the model's weights.
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_inference():
            raise ValueError(
                f"{type(model).__name__}'s weights were created inside torch.inference_mode(), so autograd "
                "cannot differentiate through them; build or load the model outside that block "
                "(calling a method inside it is fine)"
            )
    return model


def check_finite_tensor(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    hint: str = "",
) -> Tensor:
    """Return ``value`` if it is a real tensor of finite values within ``[minimum, maximum]``.

    For tensors of the user's that enter a computation as numbers (a baseline image, a
    fill colour): no NaN, no infinity, no value outside the bounds, no meta tensor.
    """
    interval = _interval(minimum, maximum, False, False)
    expected = f"{name} must be a tensor of finite values{' ' + interval if interval else ''}"
    expected += f" ({hint})" if hint else ""
    if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{expected}; got {describe(value)}")
    if value.device.type == "meta":
        raise ValueError(f"{expected}; got a tensor on the meta device, which holds no values")
    if value.numel() == 0:
        raise ValueError(f"{expected}; got an empty tensor of shape {tuple(value.shape)}")
    numbers = value.detach().to(torch.float64)
    finite = torch.isfinite(numbers)
    if not bool(finite.all()):
        raise ValueError(f"{expected}; got {int((~finite).sum())} NaN or infinite value(s)")
    low, high = float(numbers.min()), float(numbers.max())
    if (minimum is not None and low < minimum) or (maximum is not None and high > maximum):
        raise ValueError(f"{expected}; got values in [{low:.4g}, {high:.4g}]")
    return value


def check_rows(value: object, name: str, *, min_columns: int = 1) -> Tensor:
    """Return ``value`` if it is a float tensor ``(N, D)`` with ``D >= min_columns``.

    For the statistics of :mod:`spyglass.metrics` (curves, flattened maps), which work row
    by row on tensors; a numpy array gets a hint to convert it.
    """
    expected = f"{name} must be a float tensor of shape (N, D) with D >= {min_columns}"
    if not isinstance(value, Tensor):
        raise TypeError(f"{expected}; got {describe(value)}")
    if not value.is_floating_point():
        raise TypeError(f"{expected}; got dtype {value.dtype}")
    if value.ndim != 2 or value.shape[1] < min_columns:
        raise ValueError(f"{expected}; got shape {tuple(value.shape)}")
    return value


def check_same_shape(first: Tensor, second: Tensor, names: tuple[str, str]) -> None:
    """Raise a ``ValueError`` unless the two tensors have one shape (``names`` say which they are)."""
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )


def check_measured(values: Tensor, name: str, reason: str) -> float:
    """The mean of the non-NaN ``values`` of a metric; a ``ValueError`` when every one is NaN.

    A metric leaves out what it cannot measure (a flat map has no ranking); when nothing at
    all is left, a NaN result would pass for a score, so ``name`` says why there is nothing
    to measure (``reason``).
    """
    measured = values[~torch.isnan(values)]
    if measured.numel() == 0:
        raise ValueError(f"{name} has nothing to measure on these {values.numel()} value(s): {reason}")
    return float(measured.mean())


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


def check_sequence_of_names(value: object, name: str) -> list[str]:
    """Return ``value`` as a list if it is a non-empty sequence of strings (a lone string is not one)."""
    expected = f"{name} must be a list of names"
    if isinstance(value, str):
        raise TypeError(f"{expected}; got the string {value!r} (write [{value!r}])")
    if not isinstance(value, (Sequence, set, frozenset)) or isinstance(value, (bytes, Mapping)):
        raise TypeError(f"{expected}; got {describe(value)}")
    names = list(value)
    bad = [item for item in names if not isinstance(item, str)]
    if bad:
        raise TypeError(f"{expected}; got an item {bad[0]!r} ({type(bad[0]).__name__})")
    if not names:
        raise ValueError(f"{expected}; got an empty one")
    return names


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
