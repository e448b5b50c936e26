"""The one training loop every trainer of spyglass runs on.

What a trainer brings is its loss, ``loss(model, batch) -> scalar``; the loop brings the
rest: seeded batches (:mod:`spyglass.training.batches`), a progress bar, a validation hook
whose results are kept, and checkpoints that let a crashed run continue exactly where it
stopped. Head fine-tuning for MeGe and ReCo runs on it today; harmonization and
1-Lipschitz training plug their losses into it.

Randomness. The loop runs inside :func:`torch.random.fork_rng`, with torch's global
generator seeded from ``seed``: dropout, random augmentations and anything else drawing
from torch's global generator are reproducible, and the caller's generator is left as it
was. A checkpoint keeps that generator's state, so a resumed run draws what the
uninterrupted run would have drawn. Randomness from NumPy or :mod:`random` is outside
this guarantee.

Files. The loop writes nothing unless given ``checkpoint``; then it writes that one file,
atomically (:func:`~spyglass.training.save_checkpoint`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from spyglass.progress import progress_bar
from spyglass.training.batches import batches_per_epoch, check_dataset, epoch_batches, to_device
from spyglass.training.checkpoint import load_checkpoint, save_checkpoint
from spyglass.validation import (
    check_batch_size,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_seed,
)

__all__ = ["Loss", "TrainingHistory", "Validate", "Validation", "train"]

Loss = Callable[[nn.Module, Any], Tensor]
"""``loss(model, batch) -> scalar tensor``: what one step minimises (``batch`` as the dataset gives it)."""
Validate = Callable[[nn.Module], float | Mapping[str, float]]
"""``validate(model) -> number or {name: number}``: run with the model in eval mode; results are kept."""

_FORMAT = "spyglass-training-checkpoint"
_VERSION = 1
INTERVALS = ("epoch", "step")


@dataclass(frozen=True)
class Validation:
    """One result of the validation hook: after ``step`` optimizer steps and ``epoch`` whole epochs."""

    step: int
    epoch: int
    result: float | dict[str, float]


@dataclass
class TrainingHistory:
    """What a run did, over all its attempts (a resumed run continues the history of the checkpoint).

    Attributes
    ----------
    losses
        The loss of every optimizer step, in order.
    validations
        Each result of the validation hook.
    steps, epochs
        Optimizer steps done and epochs completed.
    resumed_at
        The step this call resumed from (``None`` when it started from scratch).
    seconds
        Wall-clock seconds of each epoch this call completed (not saved in checkpoints).
    """

    losses: list[float] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    resumed_at: int | None = field(default=None, compare=False)
    seconds: list[float] = field(default_factory=list, compare=False)


def _check_result(result: object) -> float | dict[str, float]:
    expected = "validate must return a number or a mapping of names to numbers"
    if isinstance(result, Tensor) and result.numel() == 1:
        return float(result)
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        return float(result)
    if isinstance(result, Mapping):
        values: dict[str, float] = {}
        for key, value in result.items():
            if not isinstance(key, str):
                raise TypeError(f"{expected}; got key {key!r}")
            if isinstance(value, Tensor) and value.numel() == 1:
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{expected}; got {key}={value!r} ({type(value).__name__})")
            values[key] = float(value)
        return values
    raise TypeError(f"{expected}; got {type(result).__name__}")


def _check_loss(value: object, step: int, epoch: int) -> tuple[Tensor, float]:
    expected = "loss must return a scalar tensor that depends on the model's parameters"
    if not isinstance(value, Tensor):
        raise TypeError(f"{expected}; got {type(value).__name__}")
    if value.numel() != 1:
        raise ValueError(f"{expected}; got shape {tuple(value.shape)} (reduce it, e.g. with .mean())")
    if not value.requires_grad:
        raise ValueError(f"{expected}; got a tensor without a gradient (computed under torch.no_grad()?)")
    number = float(value.detach())
    if not math.isfinite(number):
        raise ValueError(
            f"the loss is {number} at step {step + 1} (epoch {epoch + 1}); training stopped before the "
            "update (a smaller learning rate, or a loss that cannot overflow, usually helps)"
        )
    return value.reshape(()), number


def _check_optimizer(optimizer: object, model: nn.Module) -> torch.optim.Optimizer:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    own = {id(p) for p in model.parameters()}
    foreign = sum(id(p) not in own for group in optimizer.param_groups for p in group["params"])
    if foreign:
        raise ValueError(
            f"the optimizer updates {foreign} parameter(s) that are not the model's (built for another "
            "copy of the model?); build it from model.parameters()"
        )
    return optimizer


def _check_scheduler(scheduler: object) -> Any:
    if scheduler is not None and not all(
        callable(getattr(scheduler, name, None)) for name in ("step", "state_dict", "load_state_dict")
    ):
        raise TypeError(
            f"scheduler must be a torch.optim.lr_scheduler scheduler (step, state_dict, load_state_dict); "
            f"got {type(scheduler).__name__}"
        )
    return scheduler


def _device_of(model: nn.Module) -> torch.device:
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def _rng_devices(device: torch.device) -> list[int]:
    return (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def train(
    model: nn.Module,
    data: Dataset[Any],
    loss: Loss,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int = 1,
    max_steps: int | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    validate: Validate | None = None,
    validate_every: int = 1,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    interval: str = "epoch",
    resume: bool = False,
    workers: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> TrainingHistory:
    r"""Train ``model`` on ``data`` by minimising ``loss``, with seeded batches and exact resume.

    Each step draws the next batch (the items of epoch ``e`` in an order seeded by
    ``(seed, e)``), moves its tensors to the model's device, and runs
    ``zero_grad → loss(model, batch).backward() → optimizer.step()`` with the model in
    train mode. Every ``validate_every`` epochs (or steps, with ``interval="step"``) and
    at the end, ``validate(model)`` runs in eval mode (on a copy of the random state, so
    validating never changes the training) and its result is kept; every
    ``checkpoint_every`` epochs (or steps) and at the end, the whole state (model,
    optimizer, scheduler, the global torch generator, step, history) is written to
    ``checkpoint`` atomically. Same seed, same data, same settings: same batches and, on
    CPU, the same weights bit for bit — also when the run is cut anywhere and resumed
    from its checkpoint (``resume=True``).

    The model comes back with its weights trained and with every sub-module's train/eval
    flag and its parameters' ``.grad`` as found (``.grad`` cleared); the caller's torch
    random state is left untouched.

    Parameters
    ----------
    model
        The network to train, in place.
    data
        A map-style dataset (``__len__`` and ``__getitem__``); batches are collated as
        :class:`torch.utils.data.DataLoader` does (a ``TensorDataset`` gives a tuple of
        tensors).
    loss
        ``loss(model, batch) -> scalar tensor``: the value one step minimises. A non-finite
        value stops training with an error before it reaches the weights.
    optimizer
        Built on the model's parameters (and a ``scheduler`` on the optimizer, if any).
    epochs
        Passes over the data.
    max_steps
        Stop after this many optimizer steps in all (counting those before a resume), even in
        the middle of an epoch.
    batch_size, shuffle, drop_last, seed
        Items per step; whether each epoch visits them in a seeded random order; whether a last,
        smaller batch is dropped; the seed of the order and of torch's global generator.
    scheduler, scheduler_interval
        A learning-rate scheduler, stepped after every ``"epoch"`` (default) or every ``"step"``.
    validate, validate_every
        ``validate(model) -> number or {name: number}`` and how often to run it (in ``interval``
        units; it also runs once at the end if the last run was earlier).
    checkpoint, checkpoint_every
        A file to keep the state in, and how often to write it (in ``interval`` units, and at the
        end).
    interval
        The unit of ``validate_every`` and ``checkpoint_every``: ``"epoch"`` or ``"step"``.
    resume
        Continue from ``checkpoint`` if it exists (start from scratch if it does not). Without
        it, an existing checkpoint is an error rather than something silently overwritten.
    workers
        Loader worker processes for a dataset that is not a ``TensorDataset``. Randomness inside a
        dataset's ``__getitem__`` is reproduced exactly on resume only with ``workers=0``.
    progress, desc
        A progress bar over the steps, and its label.

    Returns
    -------
    TrainingHistory
        The losses, the validation results, and the steps and epochs done.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from spyglass.training import train
    >>> x = torch.randn(64, 3)
    >>> data = TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5]))
    >>> model = torch.nn.Linear(3, 1)
    >>> def mse(model, batch):
    ...     inputs, outputs = batch
    ...     return (model(inputs).squeeze(1) - outputs).square().mean()
    >>> history = train(model, data, mse, torch.optim.SGD(model.parameters(), lr=0.1), epochs=30,
    ...                 batch_size=16, progress=False)
    >>> history.steps, history.losses[-1] < 1e-3
    (120, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    data = check_dataset(data)
    check_callable(loss, "loss", "(model, batch) -> scalar tensor")
    optimizer = _check_optimizer(optimizer, model)
    scheduler = _check_scheduler(scheduler)
    check_choice(scheduler_interval, "scheduler_interval", INTERVALS)
    check_choice(interval, "interval", INTERVALS)
    epochs = check_int(epochs, "epochs", 1)
    if max_steps is not None:
        max_steps = check_int(max_steps, "max_steps", 1)
    batch_size = check_batch_size(batch_size)
    seed = check_seed(seed)
    if validate is not None:
        check_callable(validate, "validate", "(model) -> number or {name: number}")
    validate_every = check_int(validate_every, "validate_every", 1)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 1)
    workers = check_int(workers, "workers", 0)
    for name, flag in (
        ("shuffle", shuffle),
        ("drop_last", drop_last),
        ("resume", resume),
        ("progress", progress),
    ):
        check_bool(flag, name)
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str (the progress bar's label); got {type(desc).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path or None; got {type(checkpoint).__name__}")
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.is_dir():
        raise ValueError(f"checkpoint must be a file path; {path} is a folder")
    if path is not None and path.exists() and not resume:
        raise ValueError(
            f"checkpoint {path} exists; pass resume=True to continue from it, or remove it to start over"
        )
    size = len(data)  # type: ignore[arg-type]
    per_epoch = batches_per_epoch(size, batch_size, drop_last)
    if per_epoch == 0:
        raise ValueError(
            f"drop_last=True with batch_size={batch_size} drops every item of a {size}-item dataset; "
            "use a smaller batch_size"
        )
    total = epochs * per_epoch if max_steps is None else min(epochs * per_epoch, max_steps)
    settings = {
        "items": size,
        "batch_size": batch_size,
        "shuffle": bool(shuffle),
        "drop_last": bool(drop_last),
        "seed": seed,
    }
    device = _device_of(model)
    flags = [(module, module.training) for module in model.modules()]
    with torch.random.fork_rng(devices=_rng_devices(device)), torch.enable_grad():
        # Seed only the generators fork_rng restores (torch.manual_seed would reseed every GPU).
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        history = TrainingHistory()
        if path is not None and resume and path.exists():
            history = _resume(path, model, optimizer, scheduler, settings, device)
        try:
            _run(
                model,
                data,
                loss,
                optimizer,
                scheduler,
                history,
                settings=settings,
                per_epoch=per_epoch,
                total=total,
                scheduler_interval=scheduler_interval,
                validate=validate,
                validate_every=validate_every,
                path=path,
                checkpoint_every=checkpoint_every,
                interval=interval,
                workers=workers,
                progress=progress,
                desc=desc,
                device=device,
            )
        finally:
            for module, training in flags:
                module.training = training
            for parameter in model.parameters():
                parameter.grad = None
    return history


def _run(
    model: nn.Module,
    data: Dataset[Any],
    loss: Loss,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    history: TrainingHistory,
    *,
    settings: dict[str, Any],
    per_epoch: int,
    total: int,
    scheduler_interval: str,
    validate: Validate | None,
    validate_every: int,
    path: Path | None,
    checkpoint_every: int,
    interval: str,
    workers: int,
    progress: bool,
    desc: str,
    device: torch.device,
) -> None:
    def due(every: int, step: int, end_of_epoch: bool) -> bool:
        if interval == "step":
            return step % every == 0
        return end_of_epoch and (step // per_epoch) % every == 0

    def run_validation() -> None:
        assert validate is not None
        model.eval()
        # The hook draws from a copy of the generator: validating more or less often (or stopping
        # early, which validates at the stop) never changes what training draws afterwards.
        try:
            with torch.random.fork_rng(devices=_rng_devices(device)):
                result = _check_result(validate(model))
        finally:
            model.train()
        history.validations.append(Validation(history.steps, history.epochs, result))

    def write() -> None:
        assert path is not None
        save_checkpoint(_state(model, optimizer, scheduler, history, settings, device), path)

    def schedule() -> Iterator[tuple[int, Any]]:
        epoch, start = divmod(history.steps, per_epoch)
        while epoch * per_epoch + start < total:
            batches = epoch_batches(
                data,
                epoch,
                seed=settings["seed"],
                batch_size=settings["batch_size"],
                shuffle=settings["shuffle"],
                drop_last=settings["drop_last"],
                start=start,
                workers=workers,
            )
            for index, batch in enumerate(batches, start=start):
                yield index, batch
                if epoch * per_epoch + index + 1 >= total:
                    return
            epoch, start = epoch + 1, 0

    model.train()
    started = time.perf_counter()
    last_validated = history.validations[-1].step if history.validations else None
    last_written = history.steps if path is not None and history.resumed_at is not None else None
    bar = progress_bar(schedule(), enabled=progress, total=total - history.steps, desc=desc, unit="step")
    for index, batch in bar:
        epoch = history.steps // per_epoch
        optimizer.zero_grad(set_to_none=True)
        value, number = _check_loss(loss(model, to_device(batch, device)), history.steps, epoch)
        value.backward()
        optimizer.step()
        if scheduler is not None and scheduler_interval == "step":
            scheduler.step()
        history.losses.append(number)
        history.steps += 1
        end_of_epoch = index == per_epoch - 1
        if end_of_epoch:
            history.epochs += 1
            history.seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
        if validate is not None and due(validate_every, history.steps, end_of_epoch):
            run_validation()
            last_validated = history.steps
        if path is not None and due(checkpoint_every, history.steps, end_of_epoch):
            write()
            last_written = history.steps
    if validate is not None and last_validated != history.steps:
        run_validation()
    if path is not None and last_written != history.steps:
        write()


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    history: TrainingHistory,
    settings: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "settings": dict(settings),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": _rng_state(device),
        "steps": history.steps,
        "epochs": history.epochs,
        "losses": list(history.losses),
        "validations": [{"step": v.step, "epoch": v.epoch, "result": v.result} for v in history.validations],
    }


def _resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    settings: dict[str, Any],
    device: torch.device,
) -> TrainingHistory:
    state = load_checkpoint(path, map_location=device)
    if state.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {path} was not written by spyglass.training.train")
    if state.get("version") != _VERSION:
        raise ValueError(f"checkpoint {path} has format version {state.get('version')}; expected {_VERSION}")
    written = state["settings"]
    changed = [
        f"{key}={written.get(key)!r} there, {value!r} here"
        for key, value in settings.items()
        if written.get(key) != value
    ]
    if changed:
        raise ValueError(
            f"checkpoint {path} was written by a run with other settings ({'; '.join(changed)}); resuming "
            "would not continue that run"
        )
    if (state["scheduler"] is None) != (scheduler is None):
        having = "has" if state["scheduler"] is not None else "has no"
        raise ValueError(
            f"checkpoint {path} {having} scheduler state; pass the same kind of scheduler as that run"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(f"checkpoint {path} does not fit this model or optimizer: {error}") from None
    _set_rng_state(state["rng"], device)
    return TrainingHistory(
        losses=[float(v) for v in state["losses"]],
        validations=[Validation(int(v["step"]), int(v["epoch"]), v["result"]) for v in state["validations"]],
        steps=int(state["steps"]),
        epochs=int(state["epochs"]),
        resumed_at=int(state["steps"]),
    )
