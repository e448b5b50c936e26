"""Attribution metrics: which explanation to trust, on *your* model.

Two kinds, one verb each, one registry. Every metric is built for a model, images and
targets, ``Metric(model, images, targets, **options)``; then

- a metric of **maps** is called on the maps a method gave: ``metric(maps) -> float``
  (:class:`Deletion`, :class:`Insertion`, :class:`MuFidelity`);
- a metric of a **method** is called on the method, a registered name or a factory
  ``model -> explainer``, since it runs it itself on noisy images, on retrained or on
  randomised models: ``metric(method) -> float`` (:class:`AverageStability`,
  :class:`MeGe` and :class:`ReCo` with :class:`HeadFineTuning` as the default
  retraining, :class:`ModelRandomization`).

Each metric says whether higher or lower is better (``higher_is_better``) and its
``kind``; :func:`evaluate` runs both kinds for several methods into one table.

>>> import torch
>>> from spyglass import attributions, metrics, models
>>> model = models.load()
>>> images = torch.rand(2, 3, 224, 224)
>>> maps = attributions.create("saliency", model)(images, 1)
>>> area = metrics.Deletion(model, images, 1, steps=8)(maps)
>>> similarity = metrics.ModelRandomization(model, images, 1)("saliency")
>>> metrics.metric_class("mege").kind, "mufidelity" in metrics.list_metrics("maps")
('method', True)

Concept-level metrics live beside the concepts (:mod:`spyglass.concepts.fidelity`).
"""

from spyglass.metrics._base import (
    KINDS,
    Explainer,
    MapMetric,
    MethodMetric,
    MethodSpec,
    Metric,
    check_options,
    create,
    list_metrics,
    metric_class,
    register,
)
from spyglass.metrics._stats import auc, pearson_rows, spearman_rows, youden_index
from spyglass.metrics.algorithmic_stability import AlgorithmicStability, MeGe, ReCo, StabilityReport, TrainFn
from spyglass.metrics.evaluation import DEFAULT_METRICS, Evaluation, evaluate
from spyglass.metrics.fidelity import BASELINES, CurveMetric, Deletion, Insertion, MuFidelity
from spyglass.metrics.randomization import ModelRandomization
from spyglass.metrics.stability import AverageStability
from spyglass.training import HeadFineTuning

__all__ = [
    "BASELINES",
    "DEFAULT_METRICS",
    "KINDS",
    "AlgorithmicStability",
    "AverageStability",
    "CurveMetric",
    "Deletion",
    "Evaluation",
    "Explainer",
    "HeadFineTuning",
    "Insertion",
    "MapMetric",
    "MeGe",
    "MethodMetric",
    "MethodSpec",
    "Metric",
    "ModelRandomization",
    "MuFidelity",
    "ReCo",
    "StabilityReport",
    "TrainFn",
    "auc",
    "check_options",
    "create",
    "evaluate",
    "list_metrics",
    "metric_class",
    "pearson_rows",
    "register",
    "spearman_rows",
    "youden_index",
]
