"""The bad-input contract of the 1-Lipschitz half of :mod:`spyglass.alignment`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from spyglass.alignment import (
    export_lipschitz,
    hkr_loss,
    lipschitz_classifier,
    lipschitz_constant,
    ot_counterfactual,
    train_lipschitz,
)
from tests.bad_input.contract import accepts, refuses

SIZE = 16


def small() -> Any:
    return lipschitz_classifier(2, input_size=(SIZE, SIZE), widths=(4,), depth=1)


BAD_BUILDS: list[dict[str, Any]] = [
    {"num_classes": 0},
    {"num_classes": 2.0},
    {"input_size": (0, 16)},
    {"input_size": 16},
    {"input_size": (15, 16)},
    {"widths": "16,32"},
    {"widths": (3,)},
    {"widths": (16.0,)},
    {"hidden": (-2,)},
    {"depth": 0},
    {"head": "lorth"},
    {"class_names": ["only one"]},
]


@pytest.mark.parametrize("options", BAD_BUILDS, ids=str)
def test_the_builder_refuses_bad_sizes(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"num_classes": 2, "input_size": (SIZE, SIZE), "widths": (4,), **options}
    refuses("alignment.lipschitz_classifier", lambda: lipschitz_classifier(**arguments))


def _calls() -> list[tuple[str, Callable[[Any], object]]]:
    images = torch.rand(2, 3, SIZE, SIZE)
    data = TensorDataset(torch.rand(4, 3, SIZE, SIZE), torch.tensor([0, 1, 0, 1]))
    return [
        ("alignment.lipschitz_constant", lambda m: lipschitz_constant(m, images * 255)),
        ("alignment.lipschitz_constant", lambda m: lipschitz_constant(m, images[0])),
        ("alignment.lipschitz_constant", lambda m: lipschitz_constant(m, images, iterations=0)),
        ("alignment.lipschitz_constant", lambda m: lipschitz_constant(m, images, step_size=math.inf)),
        ("alignment.lipschitz_constant", lambda m: lipschitz_constant("model", images)),
        ("alignment.ot_counterfactual", lambda m: ot_counterfactual(m, images.double().mul(math.nan))),
        ("alignment.ot_counterfactual", lambda m: ot_counterfactual(m, images, step=0)),
        ("alignment.ot_counterfactual", lambda m: ot_counterfactual(m, images, step=math.nan)),
        (
            "alignment.ot_counterfactual",
            lambda m: ot_counterfactual(m, images, targets=torch.tensor([0.0, 1.0])),
        ),
        ("alignment.ot_counterfactual", lambda m: ot_counterfactual(m, images, targets=torch.tensor([0, 2]))),
        ("alignment.ot_counterfactual", lambda m: ot_counterfactual(m, images, targets=torch.tensor([0]))),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, lr=math.nan, progress=False)),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, lr=math.inf, progress=False)),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, alpha=500.0, progress=False)),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, min_margin=-1.0, progress=False)),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, temperature=0, progress=False)),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m, data, epochs=0, progress=False)),
        (
            "alignment.train_lipschitz",
            lambda m: train_lipschitz(m, TensorDataset(data.tensors[0], torch.rand(4)), progress=False),
        ),
        (
            "alignment.train_lipschitz",
            lambda m: train_lipschitz(
                m, TensorDataset(data.tensors[0], torch.tensor([0, 1, 2, 3])), progress=False
            ),
        ),
        ("alignment.train_lipschitz", lambda m: train_lipschitz(m.network, data, progress=False)),
        ("alignment.export_lipschitz", lambda m: export_lipschitz(m.network)),
        ("alignment.hkr_loss", lambda m: hkr_loss(0)),
        ("alignment.hkr_loss", lambda m: hkr_loss(2, alpha=math.nan)),
    ]


@pytest.mark.parametrize("index", range(len(_calls())))
def test_bad_calls_are_refused_and_leave_the_model_as_found(index: int) -> None:
    entry, call = _calls()[index]
    model = small()
    refuses(entry, lambda: call(model), model=model)


def test_unusual_but_valid_input_is_accepted() -> None:
    model = small()
    images = torch.rand(1, 3, SIZE, SIZE, dtype=torch.float64)
    accepts(
        "alignment.lipschitz_constant", lambda: lipschitz_constant(model, images, ascent_steps=0), model=model
    )
    accepts("alignment.ot_counterfactual", lambda: ot_counterfactual(model, images, step=3), model=model)
