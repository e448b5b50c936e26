"""Several methods × several metrics in one call: the table behind ``spyglass evaluate``.

The CLI, the demo page and ``benchmarks/evaluation.py`` all need the same thing: build
each registered metric for each method, score the method's maps, keep the Deletion and
Insertion curves for a plot, and write a table whose header says which way is better.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from spyglass.attributions import Attribution
from spyglass.metrics._base import create, metric_class
from spyglass.metrics._stats import auc
from spyglass.metrics.fidelity import CurveMetric

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate"]

DEFAULT_METRICS: tuple[str, ...] = ("deletion", "insertion", "mufidelity")


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


def evaluate(
    methods: Mapping[str, Attribution],
    images: Tensor,
    targets: int | Tensor,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    maps: Mapping[str, Tensor] | None = None,
) -> Evaluation:
    """Score every method of ``methods`` with every metric of ``metrics`` on ``images``.

    Parameters
    ----------
    methods
        ``{name: method}``; each is called once on the images (unless its ``maps`` are given).
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices.
    metrics
        Registered metric names (:func:`spyglass.metrics.list_metrics`).
    metric_options
        ``{metric: {option: value}}`` passed to :func:`spyglass.metrics.create`.
    maps
        ``{name: maps (N, H, W)}`` already computed, to reuse.

    Returns
    -------
    Evaluation
        The table; ``curves[metric][method]`` holds the ``(N, S + 1)`` curves of Deletion
        and Insertion.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> methods = {"saliency": attributions.Saliency(model)}
    >>> table = metrics.evaluate(methods, torch.rand(1, 3, 224, 224), 1, metrics=["deletion"],
    ...                          metric_options={"deletion": {"steps": 4}})
    >>> table.header()
    ['method', 'deletion (↓ lower is better)']
    """
    chosen = list(dict.fromkeys(metrics))
    for name in chosen:
        metric_class(name)  # an unknown name fails before any work, with suggestions
    options = {name: dict((metric_options or {}).get(name, {})) for name in chosen}
    result = Evaluation(methods=list(methods), metrics=chosen)
    for method_name, method in methods.items():
        start = time.perf_counter()
        method_maps = (maps or {}).get(method_name)
        if method_maps is None:
            method_maps = method(images, targets)
        result.scores[method_name], result.seconds[method_name] = {}, {"maps": time.perf_counter() - start}
        for name in chosen:
            start = time.perf_counter()
            metric = create(name, method, images, targets, **options[name])
            if isinstance(metric, CurveMetric):
                curves = metric.curves(method_maps)
                result.curves.setdefault(name, {})[method_name] = curves
                value = float(auc(curves).mean())
            else:
                value = metric.evaluate(method_maps)
            result.scores[method_name][name] = value
            result.seconds[method_name][name] = time.perf_counter() - start
    return result
