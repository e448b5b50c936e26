"""What harmonization does on real photos with a known answer (tiny size).

Composite 32×32 images from the shared Imagenette photos: the labelled class's photo on a
random half, a photo of a distractor class (never a label) on the other; the "human" map
covers the object's half. The same tiny CNN, seed and recipe (12 epochs, Adam 2e-3) trained
with the map term (strength 1) and without it (strength 0).

Measured here (seeds 0, 1, 2 of the loop; 160 training and 80 test composites):

- the alignment of the *signed* channel-mean saliency, the quantity the loss trains,
  rises from −0.013 / −0.003 / −0.018 to 0.121 / 0.109 / 0.113 (score units, ÷ 0.65753);
- the alignment of Saliency (|∇| max over channels, the default of ``alignment_score`` and
  the reference's evaluation) does *not* rise: 0.062 / 0.033 / 0.064 → 0.025 / 0.005 / −0.036.
  The loss rectifies the standardised signed gradient, so a strongly *negative* gradient
  on the distractor half costs nothing: the trained model puts it there (mean signed φ on
  the distractor half −2.6e-3 against +9e-5 on the object) and |∇| sees it;
- test accuracy falls 6–11 points (0.70–0.75 → 0.60–0.64).

So this test checks the first point only, which fails if the pyramid term, its rescaling
or the double backprop is broken; the issue's claim on the |∇| score does not hold at this
size and is left to the benchmark at 64–96 px.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from spyglass.alignment import alignment_score, composite_task, harmonize, read_halves, signed_saliency

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "imagenette-val"
LABELS = ("n01440764", "n03028079")  # tench, church
DISTRACTORS = ("n03445777", "n03888257", "n02979186")  # golf ball, parachute, cassette player
SIZE = 32


def _halves(wnid: str, count: int, offset: int) -> torch.Tensor:
    return read_halves(sorted((DATA / wnid).iterdir())[offset : offset + count], SIZE)


def _composites(per_class: int, offset: int, seed: int) -> TensorDataset:
    distractors = torch.cat([_halves(w, per_class, offset) for w in DISTRACTORS])
    objects = torch.cat([_halves(w, per_class, offset) for w in LABELS])
    labels = torch.arange(len(LABELS)).repeat_interleave(per_class)
    return composite_task(objects, labels, distractors, seed=seed)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 2),
    )


@pytest.mark.skipif(not DATA.is_dir(), reason="the shared Imagenette photos are absent")
def test_harmonization_raises_signed_saliency_alignment():
    train_set = _composites(per_class=80, offset=0, seed=0)
    test_set = _composites(per_class=40, offset=80, seed=1)
    images, labels, maps = test_set.tensors
    results = {}
    for strength in (0.0, 1.0):
        model = _cnn()
        harmonize(model, train_set, epochs=12, batch_size=16, lr=2e-3, strength=strength, progress=False)
        model.eval()
        with torch.no_grad():
            accuracy = float((model(images).argmax(1) == labels).float().mean())
        signed = alignment_score(
            model, images, labels, maps, explainer=lambda x, y, m=model: signed_saliency(m, x, y)[1].detach()
        )
        results[strength] = (accuracy, signed.score)
    (base_acc, base_align), (harm_acc, harm_align) = results[0.0], results[1.0]
    assert harm_align > base_align + 0.08, results
    assert base_acc > 0.6 and harm_acc > base_acc - 0.15, results
