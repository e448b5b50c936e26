"""The demo's "What the model sees": CRAFT on each photo's own crops, for its top-1 class.

The concepts are computed by :func:`spyglass.concepts.class_concepts` (the per-class
pipeline the atlas also runs), one photo at a time; this module only renders them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torchvision.transforms.functional import to_pil_image

from spyglass import plots
from spyglass.concepts import ClassConcepts, class_concepts
from spyglass.demo.page import Page
from spyglass.demo.settings import (
    DEMO_BATCH_SIZE,
    DEMO_CONCEPTS,
    DEMO_CONCEPTS_SHOWN,
    DEMO_CROPS_SHOWN,
    DEMO_PATCH,
)
from spyglass.models import Predictions, VisionModel

__all__ = ["concepts_section", "photo_concepts"]


def photo_concepts(
    model: VisionModel, images: Tensor, predictions: Predictions, progress: bool
) -> list[ClassConcepts]:
    """CRAFT on each photo alone, for its top-1 class: one record per photo.

    One photo is all the demo has of each class, so each photo's concepts are learned from
    crops of that photo alone (a class-level CRAFT needs a folder of photos of the class:
    ``spyglass concepts``). The crops overlap (stride half the patch) to give NMF enough rows.
    """
    return [
        class_concepts(
            model,
            images[i : i + 1],
            int(predictions.indices[i, 0]),
            n_concepts=DEMO_CONCEPTS,
            patch_size=DEMO_PATCH,
            stride=DEMO_PATCH // 2,
            importance="gradient_input",
            n_crops=DEMO_CROPS_SHOWN,
            n_maps=1,
            render=False,
            batch_size=DEMO_BATCH_SIZE,
            progress=progress,
        )
        for i in range(images.shape[0])
    ]


def concepts_section(
    page: Page, names: Sequence[str], images: Tensor, labels: Sequence[str], records: Sequence[ClassConcepts]
) -> None:
    """Add the section: per photo, its most important concepts with their map and best crops.

    ``records[i]`` is :func:`photo_concepts`'s record of photo ``i`` (fitted on that photo
    alone, so its concept maps are on it); ``labels[i]`` names its top-1 class.
    """
    rows = []
    n_concepts = records[0].n_concepts if records else DEMO_CONCEPTS
    for i, (name, label, record) in enumerate(zip(names, labels, records, strict=True)):
        importance = record.importance
        shares = importance / (importance.abs().sum() or 1.0)
        url = page.add_image(f"photo_{name}", to_pil_image(images[i]))
        cells = [
            f'<td><img src="{url}" alt="{page.escape(name)}">'
            f'<div class="label">{page.escape(name)} · {page.escape(label)}</div></td>'
        ]
        for concept in record.ranked[:DEMO_CONCEPTS_SHOWN]:
            evidence = record.evidence[concept]
            crop_urls = [
                page.add_image(f"crop_{name}_{concept}_{j}", to_pil_image(crop))
                for j, crop in enumerate(evidence.crops[:DEMO_CROPS_SHOWN])
            ]
            crops = "".join(f'<img class="crop" src="{crop}" alt="crop">' for crop in crop_urls)
            overlay = page.add_image(
                f"concept_{name}_{concept}", plots.overlay(images[i], evidence.maps[0], signed=False)
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
        + [f'<th scope="col">concept ranked {k + 1}</th>' for k in range(DEMO_CONCEPTS_SHOWN)]
    )
    note = (
        "<p>CRAFT (Fel et al., CVPR 2023) on each photo: the activations of its crops at the "
        f"last feature map are factorised into {n_concepts} concepts (NMF), each concept's "
        "importance for the top-1 class is its Gradient×Input in concept space (exact at this "
        "layer, after which the model is linear; the share is of the sum of their absolute "
        "values), and the "
        f"{DEMO_CONCEPTS_SHOWN} most important are shown with the crops that hold the most of "
        "them and their concept attribution map (Grad-CAM through the implicitly differentiated "
        "coding). One photo per class is little data: with a folder of photos, "
        "<code>spyglass concepts</code> learns the concepts of a whole class.</p>"
    )
    table = f'<table class="attr"><tr>{header}</tr>{"".join(rows)}</table>'
    page.add_section("What the model sees", note + f'<div class="scroll">{table}</div>')
