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

from spyglass import attributions, metrics, plots
from spyglass.data.samples import SAMPLE_EXPECTED_CLASSES, sample_photos
from spyglass.models import DEFAULT_MODEL, Predictions, VisionModel, load
from spyglass.report import Page

__all__ = ["DEMO_METHODS", "run_demo"]

# The attribution methods of the demo, in column order. Each runs at the "demo" settings it
# declares (attributions.method_settings(name, "demo")), cheap enough for a 2-core CPU: per
# photo, 1 gradient (saliency, gradcam), 16 (integrated_gradients, smoothgrad), 408 forward
# passes (sobol) and 400 (rise); about 80 forward passes or 25 gradients a second there.
DEMO_METHODS: tuple[str, ...] = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "sobol", "rise")
# Images per batch: the per-image cost of the default model is lowest near 16 (DESIGN.md).
_DEMO_BATCH_SIZE = 16
# The metrics of the demo's table, cheap: per method, 7 photos × (11 + 11 + 33) forward passes.
DEMO_METRICS: dict[str, dict[str, object]] = {
    "deletion": {"steps": 10},
    "insertion": {"steps": 10},
    "mufidelity": {"nb_samples": 32},
}
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
) -> dict[str, tuple[attributions.Attribution, Tensor]]:
    targets = predictions.indices[:, 0]
    explained: dict[str, tuple[attributions.Attribution, Tensor]] = {}
    header = ['<th scope="col">photo · top-1 class</th>']
    columns: list[list[str]] = []
    for method in methods:
        start = time.perf_counter()
        explainer = attributions.create(
            method,
            model,
            batch_size=_DEMO_BATCH_SIZE,
            progress=progress,
            **attributions.method_settings(method, "demo"),
        )
        maps = explainer(images, targets)
        explained[method] = (explainer, maps)
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
    return explained


def _metrics_section(
    page: Page,
    images: Tensor,
    predictions: Predictions,
    explained: dict[str, tuple[attributions.Attribution, Tensor]],
) -> None:
    """Which of the maps above to trust: the fidelity metrics of each method on the photos."""
    start = time.perf_counter()
    table = metrics.evaluate(
        {name: method for name, (method, _) in explained.items()},
        images,
        predictions.indices[:, 0],
        metrics=list(DEMO_METRICS),
        metric_options=DEMO_METRICS,
        maps={name: maps for name, (_, maps) in explained.items()},
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


# MACO images of the first photos' top-1 classes, cheap: 2 classes × 48 steps of 4 crops at
# 256 px (about 0.1 s a step on 2 idle cores). The library's defaults are 256 steps at 512 px.
DEMO_FEATUREVIZ: dict[str, int] = {"steps": 48, "image_size": 256, "nb_crops": 4}
_DEMO_FEATUREVIZ_CLASSES = 2


def _featureviz_section(
    page: Page, model: VisionModel, names: list[str], predictions: Predictions, progress: bool
) -> None:
    """What the model "imagines" for the predicted classes: MACO images with their transparency."""
    from spyglass import featureviz

    chosen: dict[int, str] = {}
    for i, name in enumerate(names):
        chosen.setdefault(int(predictions.indices[i, 0]), name)
        if len(chosen) == _DEMO_FEATUREVIZ_CLASSES:
            break
    cards = []
    for class_id, name in chosen.items():
        start = time.perf_counter()
        result = featureviz.maco(
            model,
            featureviz.logit(class_id),
            steps=DEMO_FEATUREVIZ["steps"],
            image_size=DEMO_FEATUREVIZ["image_size"],
            nb_crops=DEMO_FEATUREVIZ["nb_crops"],
            progress=progress,
        )
        seconds = time.perf_counter() - start
        label = page.escape(f"{model.class_names[class_id]} (top-1 of {name})")
        image_url = page.add_image(f"maco_{class_id}", to_pil_image(result.image))
        faded_url = page.add_image(f"maco_{class_id}_transparency", plots.transparent_image(result))
        cards.append(
            f'<figure class="maco"><img src="{image_url}" alt="MACO image of {label}">'
            f'<img src="{faded_url}" alt="MACO image × transparency of {label}">'
            f"<figcaption>{label} · {seconds:.1f} s</figcaption></figure>"
        )
    settings = ", ".join(f"{key}={value}" for key, value in DEMO_FEATUREVIZ.items())
    note = (
        "<p>Images optimised so that the model sees each class in them, with MACO (Fel, Boissin "
        "et al., NeurIPS 2023): the Fourier amplitude is fixed to that of natural photos and only "
        "the phase is learned. Below each image, the image × its transparency: where the model's "
        f"gradient was largest during the optimisation. Cheap settings here ({settings}).</p>"
    )
    page.add_section("What the model imagines", note + f'<div class="cards">{"".join(cards)}</div>')


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
        :data:`DEMO_METHODS` that are registered; an empty list leaves the section out).
        Each runs at its ``"demo"`` settings (:func:`spyglass.attributions.method_settings`).
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
        explained = _attributions_section(page, model, names, images, predictions, chosen, progress)
        _metrics_section(page, images, predictions, explained)
    if concepts:
        _concepts_section(page, model, names, images, predictions, progress)
    _featureviz_section(page, model, names, predictions, progress)
    return page.write(out)
