"""The demo's concepts section: the per-class pipeline on each photo, rendered as a table."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from spyglass.concepts import class_concepts
from spyglass.demo import concepts as demo_concepts
from spyglass.demo.page import Page
from spyglass.models import Predictions
from tests.tiny import colour_model


def photos() -> torch.Tensor:
    """Two 16 px photos of 4 × 4 blocks of colour (the tiny model reads red and green)."""
    generator = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(2, 3, 4, 4, generator=generator), size=(16, 16))


def test_photo_concepts_runs_the_pipeline_per_photo_with_the_demo_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_concepts, "DEMO_PATCH", 8)  # 16 px photos: 9 crops of 8 px at stride 4
    monkeypatch.setattr(demo_concepts, "DEMO_CONCEPTS", 2)
    model, images = colour_model(), photos()
    predictions = Predictions(
        indices=torch.tensor([[1, 0], [0, 1]]), probabilities=torch.full((2, 2), 0.5), names=[["g"], ["r"]]
    )
    records = demo_concepts.photo_concepts(model, images, predictions, progress=False)
    assert [r.class_id for r in records] == [1, 0]
    for i, record in enumerate(records):
        assert record.settings.patch_size == 8 and record.settings.stride == 4
        assert record.settings.importance == "gradient_input" and not record.settings.render
        alone = class_concepts(
            model, images[i : i + 1], record.class_id, n_concepts=2, patch_size=8, stride=4, n_crops=4,
            n_maps=1, render=False, progress=False,
        )  # fmt: skip
        assert torch.equal(record.importance, alone.importance)  # fitted on that photo alone


def test_section_shows_the_top_concepts_of_each_photo_with_their_shares() -> None:
    model, images = colour_model(), photos()
    records = [
        class_concepts(model, images[i : i + 1], 2, n_concepts=3, patch_size=8, stride=4, n_crops=4,
                       n_maps=1, render=False, progress=False)
        for i in range(2)
    ]  # fmt: skip
    page = Page("test")
    demo_concepts.concepts_section(page, ["a", "b"], images, ["both", "both"], records)
    html = page.render()
    assert "What the model sees" in html and "factorised into 3 concepts" in html
    assert html.count('alt="concept ') == 2 * 3 and html.count('class="crop"') == 2 * 3 * 4
    for name, record in zip(["a", "b"], records, strict=True):
        row = html[html.index(f'alt="{name}"') :]
        row = row[: row.index("</tr>")]
        shown = [int(c) for c in re.findall(r"concept (\d+) · importance share", row)]
        assert shown == list(record.ranked[:3])
        shares = record.importance / record.importance.abs().sum()
        printed = [int(p) for p in re.findall(r"importance share (-?\d+)%", row)]
        assert printed == [round(100 * float(shares[c])) for c in shown]
    assert len([key for key in page.images if key.startswith("crop_")]) == 2 * 3 * 4
