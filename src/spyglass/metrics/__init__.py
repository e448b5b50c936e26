"""Attribution metrics: which explanation to trust, on *your* model.

- fidelity: :class:`Deletion`, :class:`Insertion`, :class:`MuFidelity`;
- stability: :class:`AverageStability` (input noise), :class:`MeGe` and :class:`ReCo`
  (retraining, with :class:`HeadFineTuning` as a cheap default ``train_fn``);
- sanity: :class:`ModelRandomization`.

Each metric says whether higher or lower is better (``higher_is_better``). Fidelity
metrics are built for a model, images and targets, and called on maps:

>>> import torch
>>> from spyglass import attributions, metrics, models
>>> model = models.load()
>>> images = torch.rand(2, 3, 224, 224)
>>> maps = attributions.create("saliency", model)(images, 1)
>>> area = metrics.Deletion(model, images, 1, steps=8)(maps)
>>> "mufidelity" in metrics.list_metrics()
True

Concept-level metrics live beside the concepts (:mod:`spyglass.concepts.fidelity`).
"""

from spyglass.metrics._base import (
    Explainer,
    Metric,
    check_options,
    create,
    list_metrics,
    metric_class,
    register,
)
from spyglass.metrics._stats import auc, pearson_rows, spearman_rows, youden_index
from spyglass.metrics.evaluation import DEFAULT_METRICS, Evaluation, evaluate
from spyglass.metrics.fidelity import BASELINES, CurveMetric, Deletion, Insertion, MuFidelity
from spyglass.metrics.randomization import ModelRandomization
from spyglass.metrics.stability import (
    AlgorithmicStability,
    AverageStability,
    HeadFineTuning,
    MeGe,
    ReCo,
    StabilityReport,
    TrainFn,
)

__all__ = [
    "BASELINES",
    "DEFAULT_METRICS",
    "AlgorithmicStability",
    "AverageStability",
    "CurveMetric",
    "Deletion",
    "Evaluation",
    "Explainer",
    "HeadFineTuning",
    "Insertion",
    "MeGe",
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
