"""The main job on the embedded default: one report page for the bundled photos.

``make demo`` and ``spyglass demo`` run :func:`run_demo`. Today the page shows each
bundled photo as the model sees it (resized and centre-cropped) with its top-5 classes;
each later family (attributions, metrics, concepts, feature visualization) adds its
section here, so the demo stays one command.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms.functional import to_pil_image

from spyglass.data.samples import SAMPLE_EXPECTED_CLASSES, sample_photos
from spyglass.models import DEFAULT_MODEL, VisionModel, load
from spyglass.report import Page

__all__ = ["run_demo"]


def _predictions_section(
    page: Page, model: VisionModel, names: list[str], images: torch.Tensor, progress: bool
) -> None:
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


def run_demo(out: str | Path = "out/demo", *, model_name: str = DEFAULT_MODEL, progress: bool = True) -> Path:
    """Explain the bundled photos with ``model_name`` and write ``out/index.html``.

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
    model = load(model_name)
    photos = sample_photos()
    names = list(photos)
    images = torch.stack([model.preprocess(photo) for photo in photos.values()])
    page = Page(
        "spyglass demo",
        subtitle=f"{model.name} · {len(names)} bundled photographs (scikit-image, scikit-learn)",
    )
    _predictions_section(page, model, names, images, progress)
    return page.write(out)
