"""The demo's feature-visualization section, on a tiny model with tiny settings."""

from __future__ import annotations

import pytest
import torch

from spyglass.demo import settings
from spyglass.demo.featureviz import featureviz_section
from spyglass.demo.page import Page
from spyglass.models import Predictions
from tests.tiny import colour_model


def test_section_shows_one_card_per_distinct_top1_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DEMO_FEATUREVIZ", {"steps": 2, "image_size": 32, "nb_crops": 1})
    model = colour_model()
    predictions = Predictions(
        indices=torch.tensor([[1, 0], [1, 2], [0, 1]]),
        probabilities=torch.full((3, 2), 0.5),
        names=[["green", "red"], ["green", "both"], ["red", "green"]],
    )
    page = Page("test")
    featureviz_section(page, model, ["a", "b", "c"], predictions, progress=False)
    html = page.render()
    assert "What the model imagines" in html
    assert html.count('<figure class="maco">') == 2  # classes 1 (photo a) and 0 (photo c)
    assert "green (top-1 of a)" in html and "red (top-1 of c)" in html
    assert html.count('alt="MACO image × transparency of') == 2
    assert "steps=2, image_size=32, nb_crops=1" in html
