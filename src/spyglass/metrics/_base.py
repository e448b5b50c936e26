"""What every attribution metric shares: one verb, a direction, a registry, and input checks.

A metric is built for a set of images and targets (and a model or a method), then scores
the maps a method gave for them: ``metric.evaluate(maps) -> float``. Whether higher or
lower is better is a class attribute, so that tables can say so in their header. The CLI,
the demo and the benchmark enumerate the metrics from the registry and build each one
from an attribution method with :func:`create`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from torch import Tensor, nn

from spyglass.attributions import Attribution
from spyglass.registry import Registry
from spyglass.validation import check_images, check_targets

__all__ = ["Explainer", "Metric", "create", "list_metrics", "metric_class", "register"]

Explainer = Callable[[Tensor, Tensor], Tensor]
"""``explain(images (N, 3, H, W), targets (N,)) -> maps (N, H, W)``: any attribution method."""


class Metric(ABC):
    """A score of attribution maps for fixed images and targets.

    Subclasses set ``higher_is_better`` and implement :meth:`for_method` (build the
    metric from an attribution method, taking its model, batch size and progress setting)
    and :meth:`evaluate` (the score of that method's maps of the images).
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool]

    @classmethod
    @abstractmethod
    def for_method(cls, method: Attribution, images: Tensor, targets: int | Tensor, **options: Any) -> Metric:
        """Build the metric for ``method`` (its ``model``, ``batch_size`` and ``progress``)."""

    @abstractmethod
    def evaluate(self, maps: Tensor) -> float:
        """The score of ``maps`` ``(N, H, W)``, the method's explanations of the images."""

    @classmethod
    def direction(cls) -> str:
        """``"↑ higher is better"`` or ``"↓ lower is better"``."""
        return "↑ higher is better" if cls.higher_is_better else "↓ lower is better"


_METRICS: Registry[type[Metric]] = Registry("metric")
_POSITIONAL = ("model", "method", "images", "targets")
M = TypeVar("M", bound=type[Metric])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a :class:`Metric` available as ``create(name, …)``."""
    return _METRICS.register(name)  # type: ignore[return-value]


def list_metrics() -> list[str]:
    """Registered metric names, in registration order."""
    return _METRICS.names()


def metric_class(name: str) -> type[Metric]:
    """The class registered under ``name``."""
    return _METRICS.get(name)


def check_options(name: str, options: Mapping[str, Any]) -> type[Metric]:
    """The class of metric ``name`` after checking that it takes every option (before any work)."""
    return _METRICS.check_options(name, options, positional=_POSITIONAL)


def create(name: str, method: Attribution, images: Tensor, targets: int | Tensor, **options: Any) -> Metric:
    """Build the metric registered as ``name`` for ``method`` on ``images`` and ``targets``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> saliency = attributions.create("saliency", models.load(), batch_size=16)
    >>> images = torch.rand(1, 3, 224, 224)
    >>> deletion = metrics.create("deletion", saliency, images, 1, steps=4)
    >>> 0.0 <= deletion.evaluate(saliency(images, 1)) <= 1.0
    True
    """
    return check_options(name, options).for_method(method, images, targets, **options)


# ------------------------------------------------------------------------------ checks


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return model


def check_attribution(method: object, what: str) -> Attribution:
    if not isinstance(method, Attribution):
        raise TypeError(
            f"method must be a spyglass.attributions.Attribution ({what}); got {type(method).__name__}"
        )
    return method


def check_images_targets(images: object, targets: object, model: nn.Module) -> tuple[Tensor, Tensor]:
    """Checked images and ``(N,)`` long targets (in range when the model says how many classes)."""
    checked = check_images(images)
    num_classes = getattr(model, "num_classes", None)
    labels = check_targets(targets, checked.shape[0], num_classes if isinstance(num_classes, int) else None)
    return checked, labels


def check_maps(maps: object, images: Tensor) -> Tensor:
    """``maps`` as a float tensor ``(N, H, W)`` matching ``images`` ``(N, 3, H, W)``, finite."""
    expected = (images.shape[0], images.shape[2], images.shape[3])
    message = f"maps must be a float tensor of shape (N, H, W) = {expected}, one map per image"
    if not isinstance(maps, Tensor):
        hint = " (convert with torch.from_numpy)" if isinstance(maps, np.ndarray) else ""
        raise TypeError(f"{message}; got {type(maps).__name__}{hint}")
    if not maps.is_floating_point():
        raise TypeError(f"{message}; got dtype {maps.dtype}")
    if tuple(maps.shape) != expected:
        hint = " (sum or average over the channel axis first)" if maps.ndim == 4 else ""
        raise ValueError(f"{message}; got shape {tuple(maps.shape)}{hint}")
    if not bool(maps.isfinite().all()):
        raise ValueError(f"{message}; got {int((~maps.isfinite()).sum())} NaN or infinite value(s)")
    return maps.detach()
