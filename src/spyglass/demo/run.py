"""``make demo`` and ``spyglass demo``: one report page for the bundled photos.

:func:`run_demo` loads the model, reads the bundled photos and adds the sections in order,
each from its own module of :mod:`spyglass.demo`; the page builder writes the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from spyglass import attributions
from spyglass.data.samples import sample_photos
from spyglass.demo.attributions import attributions_section
from spyglass.demo.concepts import concepts_section, photo_concepts
from spyglass.demo.featureviz import featureviz_section
from spyglass.demo.metrics import metrics_section
from spyglass.demo.page import Page
from spyglass.demo.predictions import predictions_section
from spyglass.demo.settings import DEMO_METHODS
from spyglass.models import DEFAULT_MODEL, load

__all__ = ["run_demo"]


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
        :data:`~spyglass.demo.settings.DEMO_METHODS` that are registered, each at its
        ``"demo"`` settings (:func:`spyglass.attributions.method_settings`); an empty list
        leaves that section and "Which maps to trust" out).
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
    predictions = predictions_section(page, model, names, images, progress)
    if chosen:
        explained = attributions_section(page, model, names, images, predictions, chosen, progress)
        metrics_section(page, images, predictions, explained)
    if concepts:
        records = photo_concepts(model, images, predictions, progress)
        labels = [predictions.names[i][0] for i in range(len(names))]
        concepts_section(page, names, images, labels, records)
    featureviz_section(page, model, names, predictions, progress)
    return page.write(out)
