"""The demo's "What the model imagines": MACO images of the predicted classes, with their transparency."""

from __future__ import annotations

import time

from torchvision.transforms.functional import to_pil_image

from spyglass import plots
from spyglass.demo import settings
from spyglass.demo.page import Page
from spyglass.models import Predictions, VisionModel

__all__ = ["featureviz_section"]


def featureviz_section(
    page: Page, model: VisionModel, names: list[str], predictions: Predictions, progress: bool
) -> None:
    """What the model "imagines" for the predicted classes: MACO images with their transparency.

    One card per distinct top-1 class, for the first :data:`~spyglass.demo.settings.DEMO_FEATUREVIZ_CLASSES`
    of them in photo order, at the settings of :data:`~spyglass.demo.settings.DEMO_FEATUREVIZ`.
    """
    from spyglass import featureviz

    options = settings.DEMO_FEATUREVIZ  # read at call time, so that a test can shrink it
    chosen: dict[int, str] = {}
    for i, name in enumerate(names):
        chosen.setdefault(int(predictions.indices[i, 0]), name)
        if len(chosen) == settings.DEMO_FEATUREVIZ_CLASSES:
            break
    cards = []
    for class_id, name in chosen.items():
        start = time.perf_counter()
        result = featureviz.maco(
            model,
            featureviz.logit(class_id),
            steps=options["steps"],
            image_size=options["image_size"],
            nb_crops=options["nb_crops"],
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
    described = ", ".join(f"{key}={value}" for key, value in options.items())
    note = (
        "<p>Images optimised so that the model sees each class in them, with MACO (Fel, Boissin "
        "et al., NeurIPS 2023): the Fourier amplitude is fixed to that of natural photos and only "
        "the phase is learned. Below each image, the image × its transparency: where the model's "
        f"gradient was largest during the optimisation. Cheap settings here ({described}).</p>"
    )
    page.add_section("What the model imagines", note + f'<div class="cards">{"".join(cards)}</div>')
