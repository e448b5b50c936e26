"""The demo's "Where the model looks": attribution maps of each photo's top-1 class, per method."""

from __future__ import annotations

import time

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex
from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from spyglass import attributions, plots
from spyglass.demo.page import Page
from spyglass.demo.settings import DEMO_BATCH_SIZE
from spyglass.models import Predictions, VisionModel

__all__ = ["attributions_section"]


def _ramp(signed: bool) -> str:
    """A small CSS gradient of the colour map a column is drawn with, as its legend."""
    cmap = colormaps[plots.DIVERGING_CMAP if signed else plots.SEQUENTIAL_CMAP]
    stops = ", ".join(to_hex(cmap(float(t))) for t in np.linspace(0.0, 1.0, 7))
    ends = ("−", "+") if signed else ("low", "high")
    return (
        f'<div class="ramp"><span>{ends[0]}</span>'
        f'<i style="background:linear-gradient(to right, {stops})"></i><span>{ends[1]}</span></div>'
    )


def attributions_section(
    page: Page,
    model: VisionModel,
    names: list[str],
    images: Tensor,
    predictions: Predictions,
    methods: list[str],
    progress: bool,
) -> dict[str, tuple[attributions.Attribution, Tensor]]:
    """Add the section; return each method with its maps, for "Which maps to trust"."""
    targets = predictions.indices[:, 0]
    explained: dict[str, tuple[attributions.Attribution, Tensor]] = {}
    header = ['<th scope="col">photo · top-1 class</th>']
    columns: list[list[str]] = []
    for method in methods:
        start = time.perf_counter()
        explainer = attributions.create(
            method,
            model,
            batch_size=DEMO_BATCH_SIZE,
            progress=progress,
            **attributions.method_settings(method, "demo"),
        )
        maps = explainer(images, targets)
        explained[method] = (explainer, maps)
        seconds = time.perf_counter() - start
        signed = plots.is_signed(maps)
        header.append(
            f'<th scope="col">{page.escape(explainer.label.replace("_", " "))}'
            f'<div class="time">{seconds:.1f} s</div>{_ramp(signed)}</th>'
        )
        cells = []
        for i, name in enumerate(names):
            url = page.add_image(f"{method}_{name}", plots.overlay(images[i], maps[i], signed=signed))
            cells.append(f'<td><img src="{url}" alt="{page.escape(f"{method} map of {name}")}"></td>')
        columns.append(cells)
    rows = []
    for i, name in enumerate(names):
        url = page.add_image(f"photo_{name}", to_pil_image(images[i]))
        label = page.escape(predictions.names[i][0])
        first = (
            f'<td><img src="{url}" alt="{page.escape(name)}">'
            f'<div class="label">{page.escape(name)} · {label}</div></td>'
        )
        rows.append("<tr>" + first + "".join(column[i] for column in columns) + "</tr>")
    note = (
        "<p>Attribution maps of each photo's top-1 class over a greyed copy of the photo. "
        "Each map is scaled on its own, robustly (percentiles 1 to 99): signed maps are "
        "red where a pixel speaks for the class and blue where it speaks against it, "
        "one-signed maps brighter where it matters more. The time under each method is "
        f"for all {len(names)} photos on this machine.</p>"
    )
    table = f'<table class="attr"><tr>{"".join(header)}</tr>{"".join(rows)}</table>'
    page.add_section("Where the model looks", note + f'<div class="scroll">{table}</div>')
    return explained
