"""The demo's "Which maps to trust": the fidelity metrics of each method's maps on the photos."""

from __future__ import annotations

import time

from torch import Tensor

from spyglass import attributions, metrics
from spyglass.demo.page import Page
from spyglass.demo.settings import DEMO_METRICS
from spyglass.models import Predictions

__all__ = ["metrics_section"]


def metrics_section(
    page: Page,
    images: Tensor,
    predictions: Predictions,
    explained: dict[str, tuple[attributions.Attribution, Tensor]],
) -> None:
    """Which of the maps above to trust: the fidelity metrics of each method on the photos."""
    start = time.perf_counter()
    first = next(iter(explained.values()))[0]
    table = metrics.evaluate(
        first.model,
        images,
        predictions.indices[:, 0],
        methods=list(explained),
        method_options={name: attributions.method_settings(name, "demo") for name in explained},
        metrics=list(DEMO_METRICS),
        metric_options=DEMO_METRICS,
        maps={name: maps for name, (_, maps) in explained.items()},
        batch_size=first.batch_size,
        progress=first.progress,
    )
    seconds = time.perf_counter() - start
    header = "".join(f'<th scope="col">{page.escape(cell)}</th>' for cell in table.header())
    rows = "".join(
        "<tr>" + "".join(f"<td>{page.escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows(3)
    )
    settings = "; ".join(
        f"{name}: " + ", ".join(f"{k}={v}" for k, v in options.items())
        for name, options in DEMO_METRICS.items()
    )
    note = (
        "<p>How faithful each method's maps above are to the model, on these photos (means over "
        "the photos; the class is each photo's top-1). Deletion removes the pixels a map ranks "
        "first and measures the area under the class probability as they go (lower is better); "
        "Insertion adds them to a blurred copy (higher is better); MuFidelity correlates the "
        "map's sums over random regions with the logit lost when those regions are blacked out "
        f"(higher is better). Cheap settings ({page.escape(settings)}), computed in "
        f"{seconds:.0f} s.</p>"
    )
    page.add_section("Which maps to trust", note + f"<table><tr>{header}</tr>{rows}</table>")
