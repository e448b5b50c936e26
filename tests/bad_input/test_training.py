"""The bad-input contract of :mod:`spyglass.training`: the training loop's and HeadFineTuning's options."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from spyglass.training import HeadFineTuning, train
from tests.bad_input.contract import accepts, refuses
from tests.tiny import tiny_images, tiny_model

not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
not_a_number = st.sampled_from(["0.01", None, True, [0.01]])


@given(value=st.one_of(not_finite, not_a_number, st.floats(max_value=0.0, allow_nan=False)))
def test_head_fine_tuning_refuses_a_bad_learning_rate(value: object) -> None:
    # NaN and inf used to be accepted (NaN weights after the first step); 0 trains nothing.
    model = tiny_model()
    refuses("training.HeadFineTuning", lambda: HeadFineTuning(model, learning_rate=value), model=model)  # type: ignore[arg-type]


@given(value=st.one_of(not_finite, not_a_number, st.floats(max_value=-1e-9, allow_nan=False)))
def test_head_fine_tuning_refuses_a_bad_weight_decay(value: object) -> None:
    model = tiny_model()
    refuses("training.HeadFineTuning", lambda: HeadFineTuning(model, weight_decay=value), model=model)  # type: ignore[arg-type]


BAD_HEAD_OPTIONS: list[dict[str, object]] = [
    {"epochs": 0},
    {"epochs": 2.5},
    {"seed": -1},
    {"seed": 2**64},
    {"batch_size": 0},
    {"progress": "yes"},
]


def _ids(options: dict[str, object]) -> str:
    return ",".join(f"{key}={value!r}" for key, value in options.items())


@pytest.mark.parametrize("options", BAD_HEAD_OPTIONS, ids=_ids)
def test_head_fine_tuning_refuses_bad_options(options: dict[str, Any]) -> None:
    model = tiny_model()
    refuses("training.HeadFineTuning", lambda: HeadFineTuning(model, **options), model=model)


def test_head_fine_tuning_refuses_what_has_no_head_and_bad_labels() -> None:
    refuses("training.HeadFineTuning", lambda: HeadFineTuning("model"), match="nn.Module")  # type: ignore[arg-type]
    refuses("training.HeadFineTuning", lambda: HeadFineTuning(nn.Sequential(nn.ReLU())), match="Linear")
    model = tiny_model()
    tuning = HeadFineTuning(model, epochs=1, batch_size=4)
    images = tiny_images(4)
    for labels in (torch.tensor([0, 1, 2, 7]), torch.tensor([0, 1]), torch.rand(4), [0, 1, 2, 3.5]):
        refuses("training.HeadFineTuning", lambda labels=labels: tuning(images, labels), model=model)  # type: ignore[arg-type]
    refuses("training.HeadFineTuning", lambda: tuning(images * 255, torch.zeros(4).long()), model=model)
    head = accepts("training.HeadFineTuning", lambda: tuning(images, torch.tensor([0, 1, 2, 3])), model=model)
    assert isinstance(head, nn.Module)


def _loss(model: nn.Module, batch: Any) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.mse_loss(model(inputs).squeeze(1), targets)


BAD_TRAIN_OPTIONS: list[dict[str, object]] = [
    {"epochs": 0},
    {"epochs": "2"},
    {"max_steps": 0},
    {"batch_size": -1},
    {"seed": 2**40},
    {"scheduler_interval": "hour"},
    {"interval": None},
    {"validate": "accuracy"},
    {"validate_every": 0},
    {"checkpoint_every": 0},
    {"workers": -1},
    {"shuffle": "yes"},
    {"drop_last": 1},
    {"resume": "no"},
    {"progress": None},
    {"desc": 5},
    {"checkpoint": 5},
]


@pytest.mark.parametrize("options", BAD_TRAIN_OPTIONS, ids=_ids)
def test_train_refuses_bad_options(options: dict[str, Any]) -> None:
    model = nn.Linear(2, 1)
    data = TensorDataset(torch.rand(8, 2), torch.rand(8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    settings: dict[str, Any] = {"progress": False, **options}
    refuses("training.train", lambda: train(model, data, _loss, optimizer, **settings), model=model)


def test_train_refuses_bad_data_loss_and_optimizer(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    data = TensorDataset(torch.rand(8, 2), torch.rand(8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    refuses("training.train", lambda: train(model, [1, 2], _loss, optimizer, progress=False), model=model)  # type: ignore[arg-type]
    refuses("training.train", lambda: train(model, data, "mse", optimizer, progress=False), model=model)  # type: ignore[arg-type]
    refuses("training.train", lambda: train(model, data, _loss, "sgd", progress=False), model=model)  # type: ignore[arg-type]
    refuses("training.train", lambda: train(model, data, _loss, other, progress=False), model=model)
    refuses("training.train", lambda: train(model, data, _loss, optimizer, checkpoint=tmp_path), model=model)

    def nan_loss(model: nn.Module, batch: Any) -> torch.Tensor:
        return _loss(model, batch) * math.nan

    # A loss that turns NaN stops the run with a sentence naming the step (the model has changed
    # by then: the steps before it were taken, as asked).
    fresh = nn.Linear(2, 1)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1)
    error = refuses("training.train", lambda: train(fresh, data, nan_loss, fresh_optimizer, progress=False))
    assert "step" in str(error)
