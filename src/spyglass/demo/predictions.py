"""The demo's "What the model predicts": each photo as the model sees it, with its top-5 classes."""

from __future__ import annotations

from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from spyglass.data.samples import SAMPLE_EXPECTED_CLASSES
from spyglass.demo.page import Page
from spyglass.models import Predictions, VisionModel

__all__ = ["predictions_section"]


def predictions_section(
    page: Page, model: VisionModel, names: list[str], images: Tensor, progress: bool
) -> Predictions:
    """Add the section; return the predictions the later sections explain (their top-1)."""
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
