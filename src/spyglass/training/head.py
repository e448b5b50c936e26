"""Head fine-tuning: a fresh classifier head on a frozen backbone, the cheap retraining MeGe and ReCo use."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from spyglass.engines.forward import batched_forward
from spyglass.models.hooks import hooked
from spyglass.training.loop import train
from spyglass.validation import (
    check_batch_size,
    check_bool,
    check_images,
    check_int,
    check_positive_float,
    check_seed,
    check_targets,
)

__all__ = ["HeadFineTuning", "classifier_head"]


def classifier_head(model: nn.Module) -> nn.Linear:
    """The last :class:`torch.nn.Linear` of ``model`` (in declaration order): its classifier head."""
    heads = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not heads:
        raise ValueError("HeadFineTuning needs a model whose output layer is a torch.nn.Linear; found none")
    return heads[-1]


class HeadFineTuning:
    r"""A ``train_fn`` for :class:`~spyglass.metrics.MeGe` and :class:`~spyglass.metrics.ReCo`: a fresh head.

    Retraining a whole ImageNet network per fold is out of reach on a CPU; what MeGe and
    ReCo need is ``k`` models that differ by the data they saw. Here each fold model is a
    copy of ``backbone`` whose last :class:`torch.nn.Linear` (its classifier) is replaced
    by one trained from a seeded random start on the fold's images: multinomial logistic
    regression :math:`\min_{W,b} \mathrm{CE}(W z + b, y) + \lambda \lVert W\rVert^2` on the
    backbone's features :math:`z` (the head's inputs, computed once per call), by
    full-batch Adam on :func:`spyglass.training.train`. On EfficientNet-Lite0 and a few
    hundred images a fold takes seconds.

    Parameters
    ----------
    backbone
        The model; it is not modified (each call returns a new copy).
    epochs
        Full-batch Adam steps.
    learning_rate, weight_decay
        Adam's step size and the L2 penalty :math:`\lambda` on the weights.
    seed
        Seeds the head's initialisation (the same for every fold: folds differ by their data).
    batch_size, progress
        Images per forward pass when computing the features; progress bars.

    Examples
    --------
    >>> import torch
    >>> from spyglass import models
    >>> from spyglass.training import HeadFineTuning
    >>> train_fn = HeadFineTuning(models.load(), epochs=10)
    >>> model = train_fn(torch.rand(4, 3, 224, 224), torch.tensor([0, 1, 0, 1]))
    >>> model(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        epochs: int = 100,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = False,
    ) -> None:
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        classifier_head(backbone)
        self.backbone = backbone
        self.epochs = check_int(epochs, "epochs", 1)
        # A learning rate of 0 trains nothing: refused, as NaN and inf are.
        self.learning_rate = check_positive_float(learning_rate, "learning_rate")
        self.weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")

    def features(self, images: Tensor) -> Tensor:
        """The inputs of the backbone's classifier head for ``images``, ``(N, D)``."""
        head = classifier_head(self.backbone)
        captured: list[Tensor] = []
        checked = False

        def inputs_of_head(net: nn.Module, batch: Tensor, rows: slice) -> Tensor:
            nonlocal checked
            with hooked(
                net, {head: lambda _m, args: captured.append(args[0].flatten(1))}, kind="forward_pre"
            ):
                output = net(batch)
            if len(captured) != 1:
                raise ValueError(
                    f"the classifier head ({head}) ran {len(captured)} times in one forward pass; "
                    "HeadFineTuning needs a model that ends with it"
                )
            feature = captured.pop()
            if not checked:
                if output.shape != (batch.shape[0], head.out_features) or not torch.allclose(
                    output, head(feature), rtol=1e-4, atol=1e-4
                ):
                    raise ValueError(
                        f"the model's output is not the output of its last nn.Linear ({head}); "
                        "HeadFineTuning needs a model that ends with its classifier"
                    )
                checked = True
            return feature

        return batched_forward(
            self.backbone, images, batch_size=self.batch_size, progress=self.progress, fn=inputs_of_head
        )

    def _loss(self, head: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        features, labels = batch
        loss = nn.functional.cross_entropy(head(features), labels)
        return loss + self.weight_decay * cast(nn.Linear, head).weight.square().sum()

    def __call__(self, images: Tensor, labels: Tensor) -> nn.Module:
        """A copy of the backbone with a head trained on ``images`` and ``labels``."""
        images = check_images(images, model=self.backbone)
        head = classifier_head(self.backbone)
        labels = check_targets(labels, images.shape[0], head.out_features)
        features = self.features(images).detach()
        labels = labels.to(features.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        fresh = fresh.to(features.device, features.dtype)
        # Full batch, in the given order: every step is the same deterministic gradient of the
        # regularised objective (no shuffling to seed, and the features are the data).
        train(
            fresh,
            TensorDataset(features, labels),
            self._loss,
            torch.optim.Adam(fresh.parameters(), lr=self.learning_rate),
            epochs=self.epochs,
            batch_size=features.shape[0],
            shuffle=False,
            seed=self.seed,
            progress=self.progress,
            desc="head fine-tuning",
        )
        model = copy.deepcopy(self.backbone)
        target = classifier_head(model)
        with torch.no_grad():
            target.weight.copy_(fresh.weight)
            if target.bias is not None and fresh.bias is not None:
                target.bias.copy_(fresh.bias)
        return model.eval()

    def __eq__(self, other: object) -> bool:
        """Two instances train alike: the same backbone object and the same settings."""
        if not isinstance(other, HeadFineTuning):
            return NotImplemented
        return self.backbone is other.backbone and self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash((id(self.backbone), self._settings()))

    def _settings(self) -> tuple[int, float, float, int, int]:
        return (self.epochs, self.learning_rate, self.weight_decay, self.seed, self.batch_size)

    def __repr__(self) -> str:
        return f"HeadFineTuning(epochs={self.epochs}, learning_rate={self.learning_rate})"
