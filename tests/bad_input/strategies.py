"""Malformed arguments, as hypothesis strategies keyed by what is wrong with them.

Each ``*_CASES`` mapping names a way an argument can be wrong and gives a function
``draw -> value`` (``draw`` is hypothesis's ``data.draw``), so that a test parametrised over
the names covers every way in every CI run, and hypothesis varies the details (sizes,
positions, magnitudes) from run to run under the fuzz profile.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

__all__ = [
    "IMAGE_CASES",
    "TARGET_CASES",
    "ConstantLogits",
    "PooledLogits",
    "ScalarOutput",
    "bad_option_values",
    "constructor_defaults",
    "images_of",
]

Draw = Callable[[st.SearchStrategy[Any]], Any]

SIZE = 32  # the tiny models' input size
CLASSES = 5  # and their number of classes


def images_of(draw: Draw, *, n: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A valid batch of 1-3 seeded images of the tiny models' size."""
    count = n if n is not None else draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _poisoned(draw: Draw, value: float) -> torch.Tensor:
    images = images_of(draw)
    n, _, h, w = images.shape
    where = (draw(st.integers(0, n - 1)), draw(st.integers(0, 2)), draw(st.integers(0, h - 1)))
    images[where[0], where[1], where[2], draw(st.integers(0, w - 1))] = value
    return images


IMAGE_CASES: dict[str, Callable[[Draw], object]] = {
    "3-d (no batch axis)": lambda draw: images_of(draw)[0],
    "5-d": lambda draw: images_of(draw)[None],
    "2-d": lambda draw: images_of(draw)[0, 0],
    "one channel": lambda draw: images_of(draw)[:, :1],
    "four channels": lambda draw: torch.cat([images_of(draw, n=1)] * 2, dim=1)[:, :4],
    "channels last": lambda draw: images_of(draw).permute(0, 2, 3, 1),
    "NaN pixel": lambda draw: _poisoned(draw, math.nan),
    "infinite pixel": lambda draw: _poisoned(draw, draw(st.sampled_from([math.inf, -math.inf]))),
    "uint8 in [0, 255]": lambda draw: (images_of(draw) * 255).to(torch.uint8),
    "int64": lambda draw: (images_of(draw) * 255).long(),
    "bool": lambda draw: images_of(draw) > 0.5,
    "complex": lambda draw: images_of(draw).to(torch.complex64),
    "above 1": lambda draw: images_of(draw) * draw(st.floats(1.5, 300.0)),
    "below 0": lambda draw: images_of(draw) - draw(st.floats(0.1, 3.0)),
    "empty batch": lambda draw: images_of(draw)[:0],
    "zero-width": lambda draw: images_of(draw)[..., :0],
    "meta device": lambda draw: torch.empty(1, 3, SIZE, SIZE, device="meta"),
    "numpy array": lambda draw: images_of(draw).numpy(),
    "nested list": lambda draw: images_of(draw, n=1).tolist(),
    "None": lambda draw: None,
}

TARGET_CASES: dict[str, Callable[[Draw], object]] = {
    "negative": lambda draw: draw(st.integers(-(2**40), -1)),
    "not below the classes": lambda draw: draw(st.integers(CLASSES, 2**62)),
    "beyond 64 bits": lambda draw: draw(st.sampled_from([2**63, 2**70, -(2**64)])),
    "float": lambda draw: draw(st.floats(0.0, 4.0)),
    "bool": lambda draw: draw(st.booleans()),
    "str": lambda draw: draw(st.sampled_from(["1", "cat", ""])),
    "float tensor": lambda draw: torch.zeros(draw(st.integers(1, 3))),
    "bool tensor": lambda draw: torch.ones(1, dtype=torch.bool),
    "wrong length": lambda draw: torch.zeros(draw(st.integers(4, 9)), dtype=torch.long),
    "2-d tensor": lambda draw: torch.zeros(1, 1, dtype=torch.long),
    "out-of-range tensor": lambda draw: torch.full((1,), draw(st.integers(CLASSES, 10**6))),
    "numpy array": lambda draw: np.zeros(1, dtype=np.int64),
    "meta tensor": lambda draw: torch.zeros(1, dtype=torch.long, device="meta"),
    "list with a float": lambda draw: [0.5],
    "None": lambda draw: None,
}


def constructor_defaults(cls: type) -> dict[str, Any]:
    """Every keyword-only option of ``cls``'s constructors (and its bases') with its default."""
    options: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass) and klass is not object:
            for name, parameter in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if parameter.kind == parameter.KEYWORD_ONLY:
                    options[name] = parameter.default
    return options


def bad_option_values(name: str, default: object, *, kind: str | None = None) -> list[object]:
    """Values that no option with this default can mean (each gets a clean refusal).

    ``kind`` is the method's kind (for an attribution method): what a bad ``layer`` is
    depends on it.

    Numbers get NaN, ±inf, -1, a bool and a string; names (str options) get an unknown name
    and a number; callables a number. Zero is left out: it is valid for several options
    (a noise of 0, a fill of 0, seed 0), and those that refuse it are tested by hand.
    """
    if name == "progress":
        return ["yes", 2]
    if name == "seed":
        return [-1, 2**64, 1.5, True, "0"]
    if name == "objective":
        return [3, "target_logit"]
    if name == "batch_size":
        return [0, -1, 2.5, True, "8"]
    if name == "layer":
        # "5" is the tiny model's pooling layer: a 1×1 map, which a CAM cannot read (EVA's
        # hybrid mode splits there, rightly: the pooled features are its default cut).
        return [3, "no.such.layer", *(["5"] if kind == "cam" else [])]
    if name == "base":
        return ["no-such-method", 3]
    if name == "base_options":
        return [3, {"steps": 4}]  # a mapping given without a base
    if isinstance(default, bool):
        return ["yes", 2]
    if isinstance(default, (int, float)):
        return [math.nan, math.inf, -math.inf, -1, True, "3"]
    if isinstance(default, str):
        return ["no-such-choice", 3]
    if callable(default):
        return [3]
    if default is None and name == "value":  # a fill colour
        return [math.nan, 5.0, -1.0, "grey", [0.5, 0.5], True]
    return []


class ScalarOutput(nn.Module):
    """A classifier that returns one number per image, ``(N,)``, not logits."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[:, 0]


class PooledLogits(nn.Module):
    """A classifier that forgot its ``Flatten``: ``(N, C, 1, 1)``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[:, :, None, None]


class ConstantLogits(nn.Module):
    """Logits poisoned with ``value`` (NaN or inf): every objective of them is non-finite."""

    def __init__(self, network: nn.Module, value: float) -> None:
        super().__init__()
        self.network = network
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        return logits + self.value * logits.detach().abs().add(1.0)
