"""Several methods × several metrics of both kinds in one call: the table behind ``spyglass evaluate``.

The CLI, the demo page and the benchmarks all need the same thing: build each registered
metric once, score every method with it (metrics of maps on the method's maps, metrics of
a method on the method itself), keep the Deletion and Insertion curves for a plot, and
write a table whose header says which way is better.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from spyglass import attributions
from spyglass.metrics._base import (
    MapMetric,
    MethodMetric,
    MethodSpec,
    build_explainer,
    check_images_targets,
    check_method,
    check_options,
    metric_class,
)
from spyglass.metrics._stats import auc
from spyglass.metrics.fidelity import CurveMetric
from spyglass.validation import check_batch_size, check_mapping, check_model, check_sequence_of_names

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate"]

DEFAULT_METRICS: tuple[str, ...] = ("deletion", "insertion", "mufidelity")
"""The metrics run when none is named: fidelity only (the metrics of a method re-run it many times)."""


@dataclass
class Evaluation:
    """Scores of methods (rows) by metrics (columns), with the curves and the time of each cell."""

    methods: list[str]
    metrics: list[str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    curves: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def header(self) -> list[str]:
        """``["method", "deletion (↓ lower is better)", …]``."""
        return ["method", *(f"{m} ({metric_class(m).direction()})" for m in self.metrics)]

    def rows(self, digits: int = 4) -> list[list[str]]:
        """One row of formatted scores per method."""
        return [
            [method, *(f"{self.scores[method][metric]:.{digits}f}" for metric in self.metrics)]
            for method in self.methods
        ]

    def to_markdown(self, digits: int = 4) -> str:
        """The table in Markdown."""
        header = self.header()
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows(digits)]
        return "\n".join(lines) + "\n"

    def to_csv(self, digits: int = 6) -> str:
        """The table as CSV (the header keeps the direction of each metric)."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header())
        writer.writerows(self.rows(digits))
        return buffer.getvalue()

    def to_text(self, digits: int = 4) -> str:
        """The table aligned in plain text, for a terminal."""
        table = [self.header(), *self.rows(digits)]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = []
        for row in table:
            numbers = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
            cells = [row[0].ljust(widths[0]), *numbers]
            lines.append("  ".join(cells))
        return "\n".join(lines)


def _methods(
    methods: Sequence[str] | Mapping[str, MethodSpec],
    method_options: Mapping[str, Any],
    batch_size: int,
    progress: bool,
) -> dict[str, tuple[MethodSpec, MethodSpec]]:
    """``{row: (factory for the metrics of a method, factory for the maps)}``.

    A method given by name becomes ``attributions.create`` with its options, once without
    progress bars (metrics of a method call it many times) and once with them (for its maps).
    """
    if isinstance(methods, Mapping):
        specs = dict(check_mapping(methods, "methods"))
        if not specs:
            raise ValueError("methods must name at least one method; got an empty mapping")
    elif isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError(
            "methods must be a list of registered method names or a mapping of row names to methods; "
            f"got {methods!r}"
        )
    else:
        specs = {name: name for name in check_sequence_of_names(methods, "methods")}
    unknown = sorted(set(method_options) - set(specs))
    if unknown:
        raise ValueError(
            f"method_options name methods that are not evaluated: {unknown}; the methods are {list(specs)}"
        )
    factories: dict[str, tuple[MethodSpec, MethodSpec]] = {}
    for row, spec in specs.items():
        spec = check_method(spec)
        options = dict(check_mapping(method_options.get(row), f"method_options[{row!r}]"))
        if isinstance(spec, str):
            # One factory object per method: MeGe and ReCo key their shared reports by it.
            quiet = functools.partial(
                attributions.create, spec, **{"batch_size": batch_size, **options, "progress": False}
            )
            shown = functools.partial(
                attributions.create, spec, **{"batch_size": batch_size, "progress": progress, **options}
            )
            factories[row] = (quiet, shown)
        elif options:
            raise ValueError(f"method_options[{row!r}] only applies to a method given by name")
        else:
            factories[row] = (spec, spec)
    return factories


def evaluate(
    model: nn.Module,
    images: Tensor,
    targets: int | Tensor,
    *,
    methods: Sequence[str] | Mapping[str, MethodSpec],
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    maps: Mapping[str, Tensor] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Evaluation:
    """Score every method of ``methods`` with every metric of ``metrics``, of both kinds, on ``images``.

    Each metric is built once for the model, images and targets. A metric of maps scores
    each method's maps (computed once per method, or taken from ``maps``); a metric of a
    method runs the method itself. MeGe and ReCo with the same options share their fold
    models and explanations, so asking for both costs one run of the protocol.

    Parameters
    ----------
    model
        The classifier.
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices (MeGe and ReCo read
        them as the images' true labels).
    methods
        Registered method names (the rows), or ``{row: name or factory model -> explainer}``.
    method_options
        ``{row: {option: value}}`` for the methods given by name.
    metrics
        Registered metric names (:func:`spyglass.metrics.list_metrics`), of either kind.
    metric_options
        ``{metric: {option: value}}`` passed to the metric's constructor.
    maps
        ``{row: maps (N, H, W)}`` already computed, to reuse.
    batch_size, progress
        Model evaluations per batch for the methods and the metrics (a metric's own
        ``batch_size``/``progress`` options win); progress bars.

    Returns
    -------
    Evaluation
        The table; ``curves[metric][method]`` holds the ``(N, S + 1)`` curves of Deletion
        and Insertion.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> table = metrics.evaluate(models.load(), torch.rand(1, 3, 224, 224), 1, methods=["saliency"],
    ...                          metrics=["deletion"], metric_options={"deletion": {"steps": 4}})
    >>> table.header()
    ['method', 'deletion (↓ lower is better)']
    """
    model = check_model(model)
    images, labels = check_images_targets(images, targets, model)
    batch_size = check_batch_size(batch_size)
    chosen = list(dict.fromkeys(check_sequence_of_names(metrics, "metrics")))
    all_options = check_mapping(metric_options, "metric_options")
    unknown = sorted(set(all_options) - set(chosen))
    if unknown:
        raise ValueError(
            f"metric_options name metrics that are not evaluated: {unknown}; the metrics are {chosen}"
        )
    options = {
        name: {
            "batch_size": batch_size,
            "progress": progress,
            **check_mapping(all_options.get(name), f"metric_options[{name!r}]"),
        }
        for name in chosen
    }
    for name in chosen:  # an unknown name or option fails before any work, with suggestions
        check_options(name, options[name])
    factories = _methods(methods, check_mapping(method_options, "method_options"), batch_size, progress)
    given = check_mapping(maps, "maps")
    strays = sorted(set(given) - set(factories))
    if strays:  # a typo would otherwise compute the maps again and drop the given ones unseen
        raise ValueError(
            f"maps name methods that are not evaluated: {strays}; the methods are {list(factories)}"
        )
    built = {name: metric_class(name)(model, images, labels, **options[name]) for name in chosen}
    of_methods = [metric for metric in built.values() if isinstance(metric, MethodMetric)]
    for index, later in enumerate(of_methods):
        any(later.reuse(earlier) for earlier in of_methods[:index])
    reads_maps = [
        isinstance(m, MapMetric) or (isinstance(m, MethodMetric) and m.reuses_maps) for m in built.values()
    ]
    # Every method is built once before any work, so that a mistyped method option fails first.
    explainers = {
        row: build_explainer(shown, model, batch_size=batch_size) for row, (_, shown) in factories.items()
    }
    result = Evaluation(methods=list(factories), metrics=chosen)
    for row, (factory, _) in factories.items():
        start = time.perf_counter()
        method_maps = given.get(row)
        if method_maps is None and any(reads_maps):
            method_maps = explainers[row](images, labels)
        result.scores[row], result.seconds[row] = {}, {"maps": time.perf_counter() - start}
        for name, metric in built.items():
            start = time.perf_counter()
            if isinstance(metric, CurveMetric):
                curves = metric.curves(_computed(method_maps))
                result.curves.setdefault(name, {})[row] = curves
                value = float(auc(curves).mean())
            elif isinstance(metric, MapMetric):
                value = metric(_computed(method_maps))
            else:
                assert isinstance(metric, MethodMetric)
                value = metric(factory, maps=method_maps)
            result.scores[row][name] = value
            result.seconds[row][name] = time.perf_counter() - start
    return result


def _computed(maps: Tensor | None) -> Tensor:
    assert maps is not None  # computed above whenever a metric of maps is chosen
    return maps
