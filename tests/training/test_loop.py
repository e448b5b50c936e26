"""The training loop: seeded batches, exact resume after a crash, atomic checkpoints, hooks, errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from spyglass import training
from spyglass.training import TrainingHistory, train
from spyglass.training.checkpoint import load_checkpoint, save_checkpoint

ITEMS, FEATURES, CLASSES = 50, 4, 3


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(ITEMS, FEATURES, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x, y, torch.arange(ITEMS))


def network() -> nn.Module:
    """Dropout and batch norm: randomness from torch's global generator, and state beyond weights."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, CLASSES)
    )


def cross_entropy(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y, _ = batch
    return nn.functional.cross_entropy(model(x), y)


def accuracy_and_a_draw(model: nn.Module) -> dict[str, float]:
    """Validation that also draws from the global generator, as a random validation subset would."""
    x, y, _ = dataset().tensors
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return {"accuracy": accuracy, "draw": float(torch.rand(()))}


class Run:
    """A fresh model, optimizer and scheduler, as a new process would build them."""

    def __init__(self) -> None:
        self.model = network()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5)

    def __call__(
        self, loss: Callable[[nn.Module, Any], torch.Tensor] = cross_entropy, **options: Any
    ) -> TrainingHistory:
        settings: dict[str, Any] = {
            "epochs": 3,
            "batch_size": 8,
            "seed": 11,
            "scheduler": self.scheduler,
            "validate": accuracy_and_a_draw,
            "progress": False,
            **options,
        }
        return train(self.model, dataset(), loss, self.optimizer, **settings)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def crash_at(step: int) -> Callable[[nn.Module, Any], torch.Tensor]:
    calls = 0

    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == step:
            raise RuntimeError("power cut")
        return cross_entropy(model, batch)

    return loss


def assert_same_run(a: Run, b: Run, history_a: TrainingHistory, history_b: TrainingHistory) -> None:
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    state_a, state_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for key in state_a:
        for field in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state_a[key][field], state_b[key][field])
    assert a.scheduler.get_last_lr() == b.scheduler.get_last_lr()
    assert history_a == history_b  # losses (floats, compared exactly), validations, steps, epochs


def test_same_seed_gives_the_same_batches_and_weights() -> None:
    seen: dict[int, list[list[int]]] = {0: [], 1: [], 2: []}

    def recording(run: int) -> Callable[[nn.Module, Any], torch.Tensor]:
        def loss(model: nn.Module, batch: Any) -> torch.Tensor:
            seen[run].append(batch[2].tolist())
            return cross_entropy(model, batch)

        return loss

    first, second, other = Run(), Run(), Run()
    history = first(recording(0))
    assert history == second(recording(1))
    other(recording(2), seed=12)
    assert seen[0] == seen[1] and seen[0] != seen[2]
    per_epoch = 7  # 50 items in batches of 8: six full ones and a last one of 2
    assert history.steps == 21 and history.epochs == 3 and len(history.losses) == 21
    epochs = [[i for batch in seen[0][e * per_epoch : (e + 1) * per_epoch] for i in batch] for e in range(3)]
    assert all(sorted(items) == list(range(ITEMS)) for items in epochs)  # each epoch visits every item once
    assert epochs[0] != epochs[1] != epochs[2]  # and in a new order
    assert same_weights(first.model, second.model)
    assert not same_weights(first.model, other.model)
    assert [len(b) for b in seen[0][:per_epoch]] == [8] * 6 + [2]


@pytest.mark.parametrize(
    ("interval", "every", "crash"),
    [("step", 5, 13), ("epoch", 1, 17)],  # a crash mid-epoch 2, and one mid-epoch 3 after 2 checkpoints
)
def test_a_crashed_run_resumes_bit_for_bit(tmp_path: Path, interval: str, every: int, crash: int) -> None:
    reference = Run()
    expected = reference(interval=interval)  # validations on the same schedule, no checkpoint
    path = tmp_path / "run.pt"
    options = {"checkpoint": path, "checkpoint_every": every, "interval": interval}
    crashed = Run()
    with pytest.raises(RuntimeError, match="power cut"):
        crashed(crash_at(crash), **options)
    written = load_checkpoint(path)["steps"]
    assert 0 < written < crash
    resumed = Run()  # new objects, as after a restart
    history = resumed(resume=True, **options)
    assert history.resumed_at == written
    assert_same_run(reference, resumed, expected, history)
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]  # no temporary file left behind
    again = Run()
    finished = again(resume=True, **options)  # a finished run resumed: nothing more to do
    assert finished == history and finished.resumed_at == 21
    assert_same_run(reference, again, expected, finished)


def test_stopping_early_and_resuming_equals_one_run(tmp_path: Path) -> None:
    reference = Run()
    expected = reference(interval="step", validate_every=4)
    options = {
        "checkpoint": tmp_path / "run.pt",
        "interval": "step",
        "validate_every": 4,
        "checkpoint_every": 100,
    }
    first = Run()
    stopped = first(max_steps=10, **options)
    assert stopped.steps == 10 and stopped.epochs == 1
    assert [v.step for v in stopped.validations] == [4, 8, 10]  # the last one at the stop
    resumed = Run()
    history = resumed(resume=True, **options)
    assert history.losses == expected.losses
    assert same_weights(reference.model, resumed.model)
    # the stop added a validation the uninterrupted run did not have; the rest are the same
    assert [v.step for v in history.validations] == [4, 8, 10, 12, 16, 20, 21]
    assert [v.step for v in expected.validations] == [4, 8, 12, 16, 20, 21]


def test_validation_hook_runs_in_eval_mode_on_schedule_and_the_model_is_left_as_found() -> None:
    model = network()
    model.train()
    model[1].eval()  # a frozen batch norm: the caller's choice, restored afterwards
    flags = [m.training for m in model.modules()]
    modes: list[tuple[str, bool]] = []

    def loss(net: nn.Module, batch: Any) -> torch.Tensor:
        modes.append(("loss", all(m.training for m in net.modules())))
        return cross_entropy(net, batch)

    def validate(net: nn.Module) -> float:
        modes.append(("validate", any(m.training for m in net.modules())))
        return 0.5

    before = torch.get_rng_state()
    history = train(
        model,
        dataset(),
        loss,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=3,
        batch_size=25,
        validate=validate,
        validate_every=2,
        progress=False,
    )
    assert [(v.step, v.epoch, v.result) for v in history.validations] == [(4, 2, 0.5), (6, 3, 0.5)]
    assert {mode for kind, mode in modes if kind == "loss"} == {True}
    assert {mode for kind, mode in modes if kind == "validate"} == {False}
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is untouched


class Items(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """The same items as `dataset()`, one at a time, as a dataset reading files would give them."""

    def __init__(self) -> None:
        self.tensors = dataset().tensors

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(t[index] for t in self.tensors)  # type: ignore[return-value]


def test_any_map_style_dataset_gives_the_batches_a_tensor_dataset_gives() -> None:
    a, b = network(), network()
    history_a = train(
        a,
        dataset(),
        cross_entropy,
        torch.optim.SGD(a.parameters(), lr=0.1),
        epochs=2,
        batch_size=8,
        progress=False,
    )
    history_b = train(
        b,
        Items(),
        cross_entropy,
        torch.optim.SGD(b.parameters(), lr=0.1),
        epochs=2,
        batch_size=8,
        progress=False,
    )
    assert history_a.losses == history_b.losses
    assert same_weights(a, b)


def test_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint({"step": 1, "weight": torch.ones(3)}, tmp_path / "run.pt")

    def torn_write(state: Any, file: Any) -> None:
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2, "weight": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weight"], torch.ones(3))
    assert os.listdir(tmp_path) == ["run.pt"]
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"broken\.pt cannot be read"):
        load_checkpoint(tmp_path / "broken.pt")


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    model = network()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(**changes: Any) -> TrainingHistory:
        arguments: dict[str, Any] = {
            "model": model,
            "data": dataset(),
            "loss": cross_entropy,
            "optimizer": sgd,
        }
        options: dict[str, Any] = {"progress": False}
        for key, value in changes.items():
            (arguments if key in arguments else options)[key] = value
        return train(
            arguments.pop("model"),
            arguments.pop("data"),
            arguments.pop("loss"),
            arguments.pop("optimizer"),
            **options,
        )

    x, y, _ = dataset().tensors
    with pytest.raises(TypeError, match=r"map-style torch\.utils\.data\.Dataset.*TensorDataset"):
        fit(data=(x, y))
    with pytest.raises(ValueError, match="empty dataset"):
        fit(data=TensorDataset(torch.zeros(0, 4)))
    with pytest.raises(TypeError, match=r"loss must be callable \(model, batch\)"):
        fit(loss="cross_entropy")
    with pytest.raises(ValueError, match=r"got shape \(8, 3\).*\.mean\(\)"):
        fit(loss=lambda m, b: m(b[0]), batch_size=8)
    with pytest.raises(ValueError, match="without a gradient"):
        fit(loss=lambda m, b: torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"scalar tensor.*got float"):
        fit(loss=lambda m, b: 1.0)
    with pytest.raises(ValueError, match=r"the loss is nan at step 1 \(epoch 1\)"):
        fit(loss=lambda m, b: cross_entropy(m, b) * float("nan"))
    with pytest.raises(ValueError, match="not the model's"):
        fit(optimizer=torch.optim.SGD(network().parameters(), lr=0.1))
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        fit(optimizer="adam")
    with pytest.raises(ValueError, match="epochs must be a positive int; got 0"):
        fit(epochs=0)
    with pytest.raises(TypeError, match="batch_size must be a positive int"):
        fit(batch_size=2.5)
    with pytest.raises(ValueError, match="interval must be one of 'epoch', 'step'"):
        fit(interval="batch")
    with pytest.raises(ValueError, match="drops every item"):
        fit(batch_size=64, drop_last=True)
    with pytest.raises(TypeError, match=r"validate must return a number.*got str"):
        fit(validate=lambda m: "good")
    with pytest.raises(ValueError, match="is a folder"):
        fit(checkpoint=tmp_path)
    path = tmp_path / "run.pt"
    fit(checkpoint=path, epochs=1)
    with pytest.raises(ValueError, match="exists; pass resume=True"):
        fit(checkpoint=path)
    with pytest.raises(ValueError, match=r"other settings \(batch_size=32 there, 16 here"):
        fit(checkpoint=path, resume=True, batch_size=16)
    with pytest.raises(ValueError, match="does not fit this model"):
        other = nn.Linear(FEATURES, CLASSES)
        train(
            other,
            dataset(),
            cross_entropy,
            torch.optim.SGD(other.parameters(), lr=0.1),
            checkpoint=path,
            resume=True,
            progress=False,
        )


def test_the_module_exports_what_trainers_use() -> None:
    assert set(training.__all__) >= {"train", "TrainingHistory", "HeadFineTuning", "save_checkpoint"}
    first, again = (
        training.epoch_order(10, 3, seed=5, shuffle=True),
        training.epoch_order(10, 3, seed=5, shuffle=True),
    )
    assert torch.equal(first, again) and sorted(first.tolist()) == list(range(10))
    assert not torch.equal(first, training.epoch_order(10, 4, seed=5, shuffle=True))
    assert torch.equal(training.epoch_order(4, 0, seed=5, shuffle=False), torch.arange(4))


def test_validating_more_often_does_not_change_the_training() -> None:
    quiet, chatty = Run(), Run()
    quiet(validate=None)
    chatty(interval="step", validate_every=1)  # a validation that draws random numbers after every step
    assert same_weights(quiet.model, chatty.model)
