"""What every attribution metric shares: two kinds, one verb each, one registry, and input checks.

Every metric is built the same way, for a model, images and targets (plus its options):
``Metric(model, images, targets, **options)``. What it is then called on says its kind:

- a metric of **maps** (:class:`MapMetric`: Deletion, Insertion, MuFidelity) scores maps
  that some method gave for those images: ``metric(maps) -> float``, and
  ``metric.scores(maps) -> (N,)`` per image;
- a metric of a **method** (:class:`MethodMetric`: AverageStability, MeGe, ReCo,
  ModelRandomization) has to run the method itself, on noisy images, on retrained or on
  randomised models: ``metric(method) -> float``, where ``method`` is a registered name or
  a factory ``model -> explainer`` (an attribution class such as
  ``attributions.Saliency`` is one), so the metric can build it on any model it needs.

Whether higher or lower is better is a class attribute, so that tables can say so in their
header. The CLI, the demo and the benchmarks enumerate the metrics from the registry
(:func:`list_metrics`, with their :attr:`Metric.kind`) and build them with :func:`create`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from torch import Tensor, nn

from spyglass import attributions
from spyglass.attributions import Attribution
from spyglass.registry import Registry
from spyglass.validation import (
    check_batch_size,
    check_bool,
    check_choice,
    check_images,
    check_measured,
    check_model,
    check_targets,
)

__all__ = [
    "KINDS",
    "Explainer",
    "MapMetric",
    "MethodMetric",
    "MethodSpec",
    "Metric",
    "build_explainer",
    "check_method",
    "check_options",
    "create",
    "list_metrics",
    "metric_class",
    "register",
]

Explainer = Callable[[Tensor, Tensor], Tensor]
"""``explain(images (N, 3, H, W), targets (N,)) -> maps (N, H, W)``: any attribution method."""
MethodSpec = str | Callable[[nn.Module], Explainer]
"""A registered method name, or a factory ``model -> explainer`` (``attributions.Saliency``,
``functools.partial(attributions.create, "rise", nb_samples=500)``, ``lambda m: my_method``)."""
KINDS: tuple[str, ...] = ("maps", "method")
"""The two kinds of metric: of maps (called on maps) and of a method (called on a method)."""


class Metric(ABC):
    """A metric of attributions for fixed images and targets of a model.

    Subclasses set ``higher_is_better`` and derive from :class:`MapMetric` or
    :class:`MethodMetric`, which set ``kind`` and the verb.

    Parameters
    ----------
    model
        The classifier (images in [0, 1]).
    images, targets
        ``(N, 3, H, W)`` in [0, 1] and an int or ``(N,)`` class indices (in range when the
        model says how many classes it has).
    batch_size, progress
        Model evaluations per batch (the memory bound); progress bars.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        self.model = check_model(model)
        self.images, self.targets = check_images_targets(images, targets, self.model)
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_bool(progress, "progress")

    @classmethod
    def direction(cls) -> str:
        """``"↑ higher is better"`` or ``"↓ lower is better"``."""
        return "↑ higher is better" if cls.higher_is_better else "↓ lower is better"


class MapMetric(Metric):
    """A metric of maps: ``metric(maps) -> float``, the mean of :meth:`scores` (NaN scores left out)."""

    kind = "maps"

    #: Why an image can get a NaN score, said when every image does (the metric then refuses).
    unmeasured: ClassVar[str] = "every image's score is undefined"

    @abstractmethod
    def scores(self, maps: Tensor) -> Tensor:
        """One score per image of ``maps`` ``(N, H, W)``, ``(N,)`` ``float32`` on the CPU."""

    def __call__(self, maps: Tensor) -> float:
        """The mean over the images of :meth:`scores`, NaN scores left out (an error if all are)."""
        return check_measured(self.scores(maps), type(self).__name__, self.unmeasured)


class MethodMetric(Metric):
    """A metric of a method: ``metric(method, maps=None) -> float``.

    ``method`` is a registered name (built with the metric's ``batch_size``, without
    progress bars) or a factory ``model -> explainer``. ``maps`` are the method's maps of
    the images on :attr:`model` when already computed: a metric that needs them
    (``reuses_maps``) skips computing them again, the others ignore them.
    """

    kind = "method"
    reuses_maps: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, method: MethodSpec, *, maps: Tensor | None = None) -> float:
        """The score of ``method`` on the images."""

    def explainer(self, method: MethodSpec, model: nn.Module | None = None) -> Explainer:
        """``method`` built for ``model`` (the metric's own model by default)."""
        return build_explainer(method, self.model if model is None else model, batch_size=self.batch_size)

    def reuse(self, other: MethodMetric) -> bool:
        """Take over the work ``other`` has done or will do, if it computes the same thing; say if so.

        :func:`~spyglass.metrics.evaluate` calls it so that MeGe and ReCo, two readings of one
        protocol, train their fold models and explain once. By default nothing is shared.
        """
        return False


# ------------------------------------------------------------------------------ registry

_METRICS: Registry[type[Metric]] = Registry("metric")
_POSITIONAL = ("model", "images", "targets")
M = TypeVar("M", bound=type[Metric])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a :class:`MapMetric` or :class:`MethodMetric` available by ``name``."""
    decorate = _METRICS.register(name)

    def checked(cls: M) -> M:
        if getattr(cls, "kind", None) not in KINDS:
            raise TypeError(f"{cls.__name__} must derive from MapMetric or MethodMetric to be registered")
        return decorate(cls)  # type: ignore[return-value]

    return checked


def list_metrics(kind: str | None = None) -> list[str]:
    """Registered metric names, metrics of maps first, each kind in registration order.

    Only those of ``kind`` when given: ``"maps"`` (metrics called on maps) or ``"method"``
    (called on a method).

    Examples
    --------
    >>> from spyglass import metrics
    >>> metrics.list_metrics("maps")
    ['deletion', 'insertion', 'mufidelity']
    >>> [metrics.metric_class(name).kind for name in ("mege", "deletion")]
    ['method', 'maps']
    """
    if kind is not None:
        check_choice(kind, "kind", KINDS)
    kinds = KINDS if kind is None else (kind,)
    return [name for each in kinds for name in _METRICS.names() if _METRICS.get(name).kind == each]


def metric_class(name: str) -> type[Metric]:
    """The class registered under ``name``."""
    return _METRICS.get(name)


def check_options(name: str, options: Mapping[str, Any]) -> type[Metric]:
    """The class of metric ``name`` after checking that it takes every option (before any work)."""
    return _METRICS.check_options(name, options, positional=_POSITIONAL)


def create(name: str, model: nn.Module, images: Tensor, targets: int | Tensor, **options: Any) -> Metric:
    """Build the metric registered as ``name`` for ``model`` on ``images`` and ``targets``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> images = torch.rand(1, 3, 224, 224)
    >>> deletion = metrics.create("deletion", model, images, 1, steps=4, batch_size=16)
    >>> 0.0 <= deletion(attributions.Saliency(model)(images, 1)) <= 1.0
    True
    >>> stability = metrics.create("stability", model, images, 1, nb_samples=2, progress=False)
    >>> 0.0 <= stability("saliency") <= 2.0
    True
    """
    return check_options(name, options)(model, images, targets, **options)


# ------------------------------------------------------------------------------ checks


def check_method(method: object) -> MethodSpec:
    """``method`` if it is a registered method name or a factory ``model -> explainer``."""
    if isinstance(method, str):
        attributions.method_class(method)  # an unknown name fails here, with suggestions
        return method
    if isinstance(method, Attribution):
        raise TypeError(
            f"method must be a registered method name or a function model -> explainer, so the metric can "
            f"build it on the models it needs; got a built {type(method).__name__} (pass its name, its "
            f"class, or e.g. lambda model: {type(method).__name__}(model, ...))"
        )
    if not callable(method):
        raise TypeError(
            "method must be a registered method name or a function model -> explainer; "
            f"got {type(method).__name__}"
        )
    return method


def build_explainer(method: MethodSpec, model: nn.Module, *, batch_size: int = 32) -> Explainer:
    """``method`` built for ``model``: by name (``batch_size``, no progress bars) or by its factory."""
    method = check_method(method)
    if isinstance(method, str):
        return attributions.create(method, model, batch_size=batch_size, progress=False)
    explainer = method(model)
    if not callable(explainer):
        raise TypeError(
            f"method(model) must return an explainer, callable (images, targets) -> maps (N, H, W); "
            f"got {type(explainer).__name__}"
        )
    return explainer


def check_images_targets(images: object, targets: object, model: nn.Module) -> tuple[Tensor, Tensor]:
    """Checked images and ``(N,)`` long targets (in range when the model says how many classes)."""
    checked = check_images(images, model=model)
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
