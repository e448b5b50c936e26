"""The one verb of the attribution family: ``method(images, targets) -> maps``.

The base class checks the input once, hands the method body clean tensors, and checks
what comes back, so that a method's ``explain`` is its algorithm and little else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spyglass.objectives import Objective, target_logit
from spyglass.validation import (
    check_batch_size,
    check_bool,
    check_callable,
    check_images,
    check_model,
    check_targets,
)

__all__ = ["KINDS", "SETTINGS_LEVELS", "Attribution", "levels"]

# What a method needs of the model, which says where it can run and what it can be composed with.
KINDS = ("gradient", "propagation", "cam", "black-box", "verified")
# Settings levels, cheapest first; "default" is the constructor's own defaults and is never declared.
SETTINGS_LEVELS = ("cheap", "quick", "demo", "default")


def levels(
    *,
    cheap: Mapping[str, Any] | None = None,
    quick: Mapping[str, Any] | None = None,
    demo: Mapping[str, Any] | None = None,
) -> Mapping[str, Mapping[str, Any]]:
    """A method's ``settings`` class data: its options per level, read-only.

    A level left out runs at the constructor's defaults (see :class:`Attribution`).

    Examples
    --------
    >>> from spyglass.attributions import levels
    >>> settings = levels(cheap={"steps": 8}, demo={"steps": 16})
    >>> dict(settings["demo"])
    {'steps': 16}
    """
    given = {"cheap": cheap, "quick": quick, "demo": demo}
    return MappingProxyType(
        {level: MappingProxyType(dict(options)) for level, options in given.items() if options is not None}
    )


class Attribution(ABC):
    """An attribution method bound to a model.

    Parameters
    ----------
    model
        The classifier to explain: a :class:`~spyglass.models.VisionModel` (images in
        [0, 1]) or any module mapping such images to logits.
    objective
        What is explained, ``(model, images, targets) -> (N,)``; default the target logit.
    batch_size
        Model evaluations per batch: bounds the memory of every method.
    progress
        Show progress bars (on a terminal).

    Calling the method returns ``(N, H, W)`` float32 maps at input resolution; the model
    is left as it was found (mode, hooks, gradients).

    Each registered method declares, as class data read through the registry
    (:func:`~spyglass.attributions.list_methods`, :func:`~spyglass.attributions.method_settings`),
    so that the tests, the demo, the benchmarks and the CLI keep no table of their own:

    ``kind``
        One of :data:`KINDS`: ``"gradient"`` (gradients of the objective with respect to
        the input), ``"propagation"`` (a rewritten backward pass: Guided Backprop,
        DeconvNet), ``"cam"`` (a layer's activations weighted by gradients: needs a
        convolutional feature map), ``"black-box"`` (forward passes on perturbed
        images only) or ``"verified"`` (bounds of the output over whole sets of
        perturbations, propagated through the traced graph and its weights: needs a
        model that :func:`~spyglass.models.trace` traces, made of operations that
        :mod:`spyglass.bounds` has rules for; EVA).
    ``settings``
        Options per level of :data:`SETTINGS_LEVELS`, declared only where the
        constructor's defaults cost too much for that level: ``"cheap"`` runs on a 32 px
        model with a few classes in milliseconds (the registry-wide tests); ``"quick"``
        takes about a second per 224 px photo on two CPU cores (smoke runs, the
        benchmarks' ``--quick``); ``"demo"`` gives maps worth looking at in a few seconds
        per 224 px photo (the demo page); ``"default"`` is the constructor's defaults.
    ``truth_check_exempt``
        Empty, or why the method cannot pass the registry's truth check (its map's mass
        must lie in the one block of the image a model reads); the test reports it.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Mapping[str, Any]]] = levels()
    truth_check_exempt: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        *,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        self.model = check_model(model)
        self.objective = check_callable(objective, "objective", "(model, images, targets) -> (N,)")
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")

    def __call__(self, images: Tensor, targets: int | Tensor) -> Tensor:
        """Explain ``targets`` on ``images`` ``(N, 3, H, W)`` in [0, 1]; return ``(N, H, W)``.

        Images of any floating dtype are computed in the model's (float64 from
        ``torch.from_numpy`` included); the targets are checked against the model's outputs
        on the first batch (:func:`~spyglass.validation.check_logits`).
        """
        images = check_images(images, model=self.model)
        num_classes = getattr(self.model, "num_classes", None)
        labels = check_targets(
            targets, images.shape[0], num_classes if isinstance(num_classes, int) else None
        )
        maps = self.explain(images, labels.to(images.device))
        expected = (images.shape[0], images.shape[2], images.shape[3])
        if maps.shape != expected:  # a defect of the method, not of the user's input
            raise RuntimeError(
                f"{type(self).__name__} returned maps of shape {tuple(maps.shape)}; expected {expected}"
            )
        return maps.detach().to(torch.float32)

    @property
    def label(self) -> str:
        """How figures title this method's maps: its registered name (a method may add what holds of them)."""
        return self.name or type(self).__name__

    @abstractmethod
    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        """The method's algorithm on checked input: ``(N, 3, H, W)``, ``(N,)`` → ``(N, H, W)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"
