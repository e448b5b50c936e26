"""MACO works on the real default model: its class images are recognised, and transfer to Lite1.

Settings of this test (cheaper than the library's defaults, so that it takes well under a
minute on 2 CPU cores): ``image_size=256`` and ``steps=64`` with ``nb_crops=4``, seed 0;
the default crop sizes, which at 256 px are 0.875 to 1 of the image side (1 to 1.5 times
the model's 224 px input, capped at the whole image). The defaults (256 steps at 512 px)
are measured in ``benchmarks/featureviz.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spyglass import models
from spyglass.featureviz import default_crop_size, logit, maco, random_crops
from spyglass.models import VisionModel

# Five Imagenette classes: tench, English springer, cassette player, golf ball, parachute.
CLASSES = (0, 217, 482, 574, 701)
SETTINGS = {"image_size": 256, "steps": 64, "nb_crops": 4, "seed": 0, "progress": False}
EVAL_CROPS = 16


@pytest.fixture(scope="module")
def lite1() -> VisionModel:
    return models.load("efficientnet_lite1")


@pytest.mark.slow
def test_maco_class_images_are_recognised_and_transfer(lite0: VisionModel, lite1: VisionModel) -> None:
    crop = default_crop_size(SETTINGS["image_size"], lite0.input_size)  # type: ignore[arg-type]
    probabilities, top5_shares, whole = [], [], []
    for class_id in CLASSES:
        image = maco(lite0, logit(class_id), **SETTINGS).image  # type: ignore[arg-type]
        # Crops drawn like the optimisation's (same size range), without noise, another seed.
        views = random_crops(
            image, EVAL_CROPS, crop_size=crop, output_size=lite0.input_size,
            generator=torch.Generator().manual_seed(100 + class_id),
        )  # fmt: skip
        with torch.no_grad():
            probabilities.append(float(lite0(views).softmax(dim=1)[:, class_id].mean()))
            logits = lite1(F.interpolate(views, size=lite1.input_size, mode="bilinear", antialias=True))
            top5_shares.append(float((logits.topk(5, dim=1).indices == class_id).any(dim=1).float().mean()))
            shrunk = F.interpolate(image[None], size=lite0.input_size, mode="bilinear", antialias=True)
            whole.append(float(lite0(shrunk).softmax(dim=1)[0, class_id]))
    report = f"crop p={probabilities}, Lite1 top-5 share={top5_shares}, whole-image p={whole}"
    assert sum(probabilities) / len(CLASSES) >= 0.9, report
    assert sum(top5_shares) / len(CLASSES) > 0.5, report  # most crops, over the five classes
    assert sum(share > 0.5 for share in top5_shares) >= 4, report
