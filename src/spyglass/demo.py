"""The main job on the embedded default: one report page for the bundled photos.

``make demo`` and ``spyglass demo`` run :func:`run_demo`. The page shows each bundled
photo as the model sees it (resized and centre-cropped) with its top-5 classes, then
where the model looks: attribution maps of its top-1 class. Each later family (metrics,
concepts, feature visualization) adds its section here, so the demo stays one command.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import to_hex
from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from spyglass import attributions, plots
from spyglass.data.samples import SAMPLE_EXPECTED_CLASSES, sample_photos
from spyglass.models import DEFAULT_MODEL, Predictions, VisionModel, load
from spyglass.report import Page

__all__ = ["DEMO_METHODS", "run_demo"]

# The attribution methods of the demo, in column order, with settings cheap enough for a
# 2-core CPU: model evaluations per photo are in the comments (7 photos; about 80 forward
# passes or 25 gradients a second there). A method shows up once it is registered; a new
# method adds its line here, with options that keep it cheap.
DEMO_METHODS: dict[str, dict[str, object]] = {
    "saliency": {},  # 1 gradient
    "integrated_gradients": {"steps": 16},  # 16 gradients
    "smoothgrad": {"nb_samples": 16},  # 16 gradients
    "gradcam": {},  # 1 gradient
    "sobol": {"grid_size": 7, "nb_design": 8},  # 8 · (7² + 2) = 408 forward passes
    "rise": {"nb_samples": 400},  # 400 forward passes
}
# Images per batch: the per-image cost of the default model is lowest near 16 (DESIGN.md).
_DEMO_BATCH_SIZE = 16
# CRAFT on each photo's own crops: 64 px at stride 32 give 36 crops of a 224 px photo.
_DEMO_CONCEPTS, _DEMO_PATCH = 5, 64
_DEMO_CONCEPTS_SHOWN, _DEMO_CROPS_SHOWN = 3, 4


def _predictions_section(
    page: Page, model: VisionModel, names: list[str], images: Tensor, progress: bool
) -> Predictions:
    predictions = model.predict(images, top_k=5, progress=progress)
    cards = []
    for i, name in enumerate(names):
        url = page.add_image(f"photo_{name}", to_pil_image(images[i]))
        rows = []
        for _index, label, probability in predictions.rows(i):
            bar = f'<div class="bar" style="width:{100 * probability:.1f}%"></div>'
            rows.append(
                [
                    page.escape(label),
                    f'<td class="p">{100 * probability:.1f}%</td>',
                    f'<td class="b">{bar}</td>',
                ]
            )
        verdict = ""
        if name in SAMPLE_EXPECTED_CLASSES:
            top = int(predictions.indices[i, 0])
            ok = top in SAMPLE_EXPECTED_CLASSES[name]
            verdict = f' <span class="{"ok" if ok else "miss"}">{"✓" if ok else "✗ unexpected"}</span>'
        cards.append(
            f'<figure><img src="{url}" alt="{page.escape(name)}">'
            f"<figcaption>{page.escape(name)}{verdict}</figcaption>{page.table(rows)}</figure>"
        )
    page.add_section("What the model predicts", f'<div class="cards">{"".join(cards)}</div>')
    return predictions


def _ramp(signed: bool) -> str:
    """A small CSS gradient of the colour map a column is drawn with, as its legend."""
    cmap = colormaps[plots.DIVERGING_CMAP if signed else plots.SEQUENTIAL_CMAP]
    stops = ", ".join(to_hex(cmap(float(t))) for t in np.linspace(0.0, 1.0, 7))
    ends = ("−", "+") if signed else ("low", "high")
    return (
        f'<div class="ramp"><span>{ends[0]}</span>'
        f'<i style="background:linear-gradient(to right, {stops})"></i><span>{ends[1]}</span></div>'
    )


def _attributions_section(
    page: Page,
    model: VisionModel,
    names: list[str],
    images: Tensor,
    predictions: Predictions,
    methods: list[str],
    progress: bool,
) -> None:
    targets = predictions.indices[:, 0]
    header = ['<th scope="col">photo · top-1 class</th>']
    columns: list[list[str]] = []
    for method in methods:
        start = time.perf_counter()
        explainer = attributions.create(
            method,
            model,
            batch_size=_DEMO_BATCH_SIZE,
            progress=progress,
            **DEMO_METHODS.get(method, {}),
        )
        maps = explainer(images, targets)
        seconds = time.perf_counter() - start
        signed = plots.is_signed(maps)
        header.append(
            f'<th scope="col">{page.escape(method.replace("_", " "))}'
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


def _concepts_section(
    page: Page, model: VisionModel, names: list[str], images: Tensor, predictions: Predictions, progress: bool
) -> None:
    """What the model sees in each photo: CRAFT on the photo's own crops, for its top-1 class.

    One photo is all the demo has of each class, so each photo's concepts are learned from
    crops of that photo alone (a class-level CRAFT needs a folder of photos of the class:
    ``spyglass concepts``). The crops overlap (stride half the patch) to give NMF enough rows.
    """
    from spyglass.concepts import Craft

    rows = []
    for i, name in enumerate(names):
        image = images[i : i + 1]
        class_id = int(predictions.indices[i, 0])
        craft = Craft(
            model,
            n_concepts=_DEMO_CONCEPTS,
            patch_size=_DEMO_PATCH,
            stride=_DEMO_PATCH // 2,
            batch_size=_DEMO_BATCH_SIZE,
            progress=progress,
        ).fit(image, class_id)
        importance = craft.importance(image, "gradient_input")
        shares = importance / (importance.abs().sum() or 1.0)
        ranked = importance.argsort(descending=True)[:_DEMO_CONCEPTS_SHOWN].tolist()
        maps = craft.concept_maps(image, concepts=ranked, method="gradcam")[0]
        url = page.add_image(f"photo_{name}", to_pil_image(images[i]))
        label = page.escape(predictions.names[i][0])
        cells = [
            f'<td><img src="{url}" alt="{page.escape(name)}">'
            f'<div class="label">{page.escape(name)} · {label}</div></td>'
        ]
        for k, concept in enumerate(ranked):
            best = craft.crops_u_[:, concept].argsort(descending=True)[:_DEMO_CROPS_SHOWN].tolist()
            crop_urls = [
                page.add_image(f"crop_{name}_{concept}_{j}", to_pil_image(craft.crops_[j].clamp(0, 1)))
                for j in best
            ]
            crops = "".join(f'<img class="crop" src="{crop}" alt="crop">' for crop in crop_urls)
            overlay = page.add_image(
                f"concept_{name}_{concept}", plots.overlay(images[i], maps[k], signed=False)
            )
            share = f"{100 * float(shares[concept]):.0f}%"
            cells.append(
                f'<td><img src="{overlay}" alt="{page.escape(f"concept {concept} of {name}")}">'
                f'<div class="crops">{crops}</div>'
                f'<div class="label">concept {concept} · importance share {share}</div></td>'
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(
        ['<th scope="col">photo · top-1 class</th>']
        + [f'<th scope="col">concept ranked {k + 1}</th>' for k in range(_DEMO_CONCEPTS_SHOWN)]
    )
    note = (
        "<p>CRAFT (Fel et al., CVPR 2023) on each photo: the activations of its crops at the "
        f"last feature map are factorised into {_DEMO_CONCEPTS} concepts (NMF), each concept's "
        "importance for the top-1 class is its Gradient×Input in concept space (exact at this "
        "layer, after which the model is linear; the share is of the sum of their absolute "
        "values), and the "
        f"{_DEMO_CONCEPTS_SHOWN} most important are shown with the crops that hold the most of "
        "them and their concept attribution map (Grad-CAM through the implicitly differentiated "
        "coding). One photo per class is little data: with a folder of photos, "
        "<code>spyglass concepts</code> learns the concepts of a whole class.</p>"
    )
    table = f'<table class="attr"><tr>{header}</tr>{"".join(rows)}</table>'
    page.add_section("What the model sees", note + f'<div class="scroll">{table}</div>')


def _demo_methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        registered = attributions.list_methods()
        return [name for name in DEMO_METHODS if name in registered]
    if isinstance(methods, str):
        raise TypeError(f"methods must be a sequence of method names; got the string {methods!r}")
    for name in methods:
        attributions.method_class(name)  # unknown names fail before any work, with suggestions
    return list(dict.fromkeys(methods))


def run_demo(
    out: str | Path = "out/demo",
    *,
    model_name: str = DEFAULT_MODEL,
    methods: Sequence[str] | None = None,
    concepts: bool = True,
    progress: bool = True,
) -> Path:
    """Explain the bundled photos with ``model_name`` and write ``out/index.html``.

    Parameters
    ----------
    out
        Folder of the page and its images.
    model_name
        See :func:`spyglass.models.load`.
    methods
        Attribution methods of the "Where the model looks" section (default: those of
        :data:`DEMO_METHODS` that are registered, with its cheap settings; an empty list
        leaves the section out).
    concepts
        Include the "What the model sees" section (CRAFT on each photo).
    progress
        Show progress bars (on a terminal).

    Returns
    -------
    Path
        The written ``index.html``.

    Examples
    --------
    >>> from spyglass.demo import run_demo
    >>> run_demo("out/demo")                                    # doctest: +SKIP
    PosixPath('out/demo/index.html')
    """
    chosen = _demo_methods(methods)
    model = load(model_name)
    photos = sample_photos()
    names = list(photos)
    images = torch.stack([model.preprocess(photo) for photo in photos.values()])
    page = Page(
        "spyglass demo",
        subtitle=f"{model.name} · {len(names)} bundled photographs (scikit-image, scikit-learn)",
    )
    predictions = _predictions_section(page, model, names, images, progress)
    if chosen:
        _attributions_section(page, model, names, images, predictions, chosen, progress)
    if concepts:
        _concepts_section(page, model, names, images, predictions, progress)
    return page.write(out)
