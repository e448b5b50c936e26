"""The per-class concept pipeline on the tiny model of ``test_craft`` with planted concepts.

Its images are uniform 8 × 8 blocks of colour, so every crop is one colour, the layer
``relu2`` rebuilds exactly from the three planted colour concepts, and the top of the
model (global pooling → linear) is affine: the shares of the logit, the alignment with the
classifier and the best crops can all be written down from the weights.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spyglass import featureviz, models
from spyglass.concepts import ClassConcepts, ConceptSettings, Craft, class_concepts
from spyglass.concepts import pipeline as pipeline_module
from spyglass.concepts import strategic as strategic_module
from spyglass.featureviz import Visualization
from spyglass.models import VisionModel
from tests.concepts.test_craft import N_FEATURES, TinyNet, block_images, split_scores

CLASS = 1
FAST = {"n_concepts": 3, "patch_size": 8, "progress": False, "batch_size": 16}
MACO = {"maco_steps": 2, "maco_size": 16, "maco_crops": 1}


def wrapped(net: TinyNet) -> VisionModel:
    return VisionModel(
        net,
        input_size=(32, 32),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=list("abcd"),
        name="tiny",
    )


@pytest.fixture(scope="module")
def net() -> TinyNet:
    return TinyNet()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return block_images(6, seed=2)


@pytest.fixture(scope="module")
def record(net: TinyNet, images: torch.Tensor) -> ClassConcepts:
    return class_concepts(
        wrapped(net), images, CLASS, layer="relu2", n_crops=4, n_maps=2, render=True, **FAST, **MACO
    )


def test_every_field_has_its_shape_and_type(record: ClassConcepts, images: torch.Tensor) -> None:
    n, r = images.shape[0], 3
    assert isinstance(record.craft, Craft) and record.craft.is_fitted and record.class_id == CLASS
    assert len(record) == n and record.n_concepts == r
    assert isinstance(record.settings, ConceptSettings)
    assert record.settings.layer == "relu2" and record.settings.stride == record.craft.stride == 6
    assert record.settings.as_dict()["importance"] == "gradient_input"
    assert record.concepts.shape == (r, N_FEATURES) and record.concepts.dtype == torch.float32
    for name, shape in [
        ("importance", (r,)),
        ("importance_per_image", (n, r)),
        ("logits", (n,)),
        ("logit_share", (r,)),
        ("logit_share_per_image", (n, r)),
        ("presence", (n, r)),
    ]:
        value = getattr(record, name)
        assert isinstance(value, torch.Tensor) and value.shape == shape and value.dtype == torch.float32, name
        assert value.device.type == "cpu" and bool(torch.isfinite(value).all()), name
    assert sorted(record.ranked) == list(range(r))
    assert len(record.evidence) == r
    for concept, evidence in enumerate(record.evidence):
        assert evidence.concept == concept
        assert evidence.crops.shape == (4, 3, 8, 8) and evidence.crop_scores.shape == (4,)
        assert evidence.crop_images.dtype == torch.long and evidence.crop_images.shape == (4,)
        assert evidence.crop_boxes.dtype == torch.long and evidence.crop_boxes.shape == (4, 4)
        assert evidence.map_images.shape == (2,) and evidence.maps.shape == (2, 32, 32)
        assert isinstance(evidence.rendering, Visualization)
        assert evidence.rendering.image.shape == (3, 16, 16)
    assert record.top_is_affine and record.alignment is not None
    assert record.alignment.cosine.shape == (r, 4)
    assert record.alignment.top_classes.shape == (r, 4)  # top 5 of a 4-class model: all of them
    assert record.strategic is None


def test_importance_is_craft_gradient_input_and_shares_split_the_logit(
    record: ClassConcepts, net: TinyNet, images: torch.Tensor
) -> None:
    direct = record.craft.importance(images, "gradient_input", per_image=True)
    assert torch.allclose(record.importance_per_image, direct, atol=1e-6)
    assert torch.allclose(record.importance, direct.mean(dim=0), atol=1e-6)
    assert list(record.ranked) == direct.mean(dim=0).argsort(descending=True).tolist()
    with torch.no_grad():
        logits = net(images)[:, CLASS]
    assert torch.allclose(record.logits, logits, atol=1e-5)
    # Completeness: Σ_i GxI_i = s(U) − s(0), with s(0) = h(E) computed from the split directly.
    full, emptied = split_scores(record.craft, images, torch.tensor([[1.0] * 3, [0.0] * 3])).unbind(dim=1)
    assert record.logit_share_per_image is not None and record.logit_share is not None
    assert torch.allclose(record.logit_share_per_image.sum(dim=1), (full - emptied) / logits, atol=1e-5)
    # The concepts rebuild relu2 exactly here (E = 0): what they leave of the logit is the bias.
    assert record.craft.reconstruction_error_ < 1e-3
    # In logit units (the tiny logits here would magnify the rounding of a ratio).
    bias = float(net.fc.bias[CLASS].detach())
    assert torch.allclose(
        (record.logit_share_per_image * logits[:, None]).sum(dim=1), logits - bias, atol=1e-4
    )
    assert torch.allclose(record.logit_share.sum() * logits.mean(), logits.mean() - bias, atol=1e-4)


def test_best_crops_are_the_top_scoring_crops_cut_where_they_say(
    record: ClassConcepts, net: TinyNet, images: torch.Tensor
) -> None:
    craft = record.craft
    g, _ = models.split(net, "relu2", check=False)
    for concept, evidence in enumerate(record.evidence):
        everyone = craft.crops_u_[:, concept]
        assert torch.allclose(evidence.crop_scores, everyone.sort(descending=True).values[:4])
        for crop, image, (top, left, bottom, right) in zip(
            evidence.crops, evidence.crop_images, evidence.crop_boxes.tolist(), strict=True
        ):
            assert (bottom - top, right - left) == (8, 8)
            assert torch.equal(crop, images[int(image), :, top:bottom, left:right])
        # Recomputed from the pixels, not read back from Craft: the crops' own coefficients.
        resized = F.interpolate(evidence.crops, size=(32, 32), mode="bilinear", align_corners=False)
        with torch.no_grad():
            codes = craft.learner_.transform(g(resized).mean(dim=(2, 3)))
        assert torch.allclose(codes[:, concept], evidence.crop_scores, atol=1e-4)
        # And no crop left out holds more of the concept than the weakest one kept.
        kept = torch.zeros(len(everyone), dtype=torch.bool)
        for image, (top, left, _, _) in zip(evidence.crop_images, evidence.crop_boxes.tolist(), strict=True):
            box = torch.tensor([int(image), top, left])
            kept |= (craft.crop_boxes_ == box).all(dim=1)
        assert int(kept.sum()) == 4
        assert float(everyone[~kept].max()) <= float(evidence.crop_scores.min()) + 1e-6


def test_maps_are_craft_maps_on_the_images_where_each_concept_is_most_present(
    record: ClassConcepts, images: torch.Tensor
) -> None:
    craft = record.craft
    presence = craft.transform(images).mean(dim=(1, 2))
    assert torch.allclose(record.presence, presence, atol=1e-6)
    for concept, evidence in enumerate(record.evidence):
        assert evidence.map_images.tolist() == presence[:, concept].argsort(descending=True)[:2].tolist()
        direct = craft.concept_maps(images[evidence.map_images], concepts=[concept], method="gradcam")
        assert torch.allclose(evidence.maps, direct[:, 0], atol=1e-6)


def test_alignment_is_the_cosine_with_the_classifier_weights(record: ClassConcepts, net: TinyNet) -> None:
    assert record.alignment is not None
    weights = net.fc.weight.detach()
    by_hand = F.normalize(record.concepts, dim=1) @ F.normalize(weights, dim=1).T
    assert torch.allclose(record.alignment.cosine, by_hand, atol=1e-5)
    assert torch.equal(record.alignment.top_classes, by_hand.argsort(dim=1, descending=True))
    assert torch.allclose(
        record.alignment.top_cosines, by_hand.sort(dim=1, descending=True).values, atol=1e-5
    )
    short = class_concepts(net, block_images(4), CLASS, render=False, alignment_top_k=2, **FAST)
    assert short.alignment is not None and short.alignment.top_classes.shape == (3, 2)


def test_a_nonlinear_top_has_no_alignment_and_no_exactness_claim() -> None:
    signed = TinyNet(signed=True)
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    record = class_concepts(
        signed, images, 3, layer="conv2", dictionary="semi_nmf", n_concepts=2, patch_size=8,
        render=False, progress=False,
    )  # fmt: skip
    assert not record.top_is_affine and record.alignment is None


def test_renderings_are_maco_of_each_concept_direction(record: ClassConcepts, net: TinyNet) -> None:
    for concept in (0, 2):
        direct = featureviz.maco(
            wrapped(net),
            featureviz.direction("relu2", record.concepts[concept]),
            steps=2,
            image_size=16,
            nb_crops=1,
            seed=0,
            progress=False,
        )
        rendering = record.evidence[concept].rendering
        assert rendering is not None and torch.allclose(rendering.image, direct.image)


def test_the_same_seed_gives_the_same_record(net: TinyNet, images: torch.Tensor) -> None:
    options = {"nb_design": 8}
    runs = [
        class_concepts(net, images, CLASS, importance="sobol", importance_options=options, render=False,
                       seed=seed, **FAST)
        for seed in (3, 3, 4)
    ]  # fmt: skip
    first, again, other = runs
    assert first.logit_share is None and first.settings.importance_options == (("nb_design", 8),)
    for name in ("concepts", "importance_per_image", "presence", "logits"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    for a, b in zip(first.evidence, again.evidence, strict=True):
        assert torch.equal(a.crops, b.crops) and torch.equal(a.maps, b.maps)
    assert not torch.equal(first.importance_per_image, other.importance_per_image)  # the seed matters


def test_strategic_graph_embeds_the_per_image_importance(
    net: TinyNet, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # UMAP itself is tested in test_strategic (its first call compiles for most of a minute);
    # here a stand-in embedding checks what the pipeline hands the graph.
    seen: dict[str, object] = {}

    def embed(vectors: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
        seen.update(vectors=vectors.copy(), seed=seed)
        return vectors[:, :2].astype(np.float32)

    monkeypatch.setattr(strategic_module, "_embed", embed)
    record = class_concepts(net, images, CLASS, render=False, strategic=True, min_share=0.2, seed=5, **FAST)
    graph = record.strategic
    assert graph is not None and seen["seed"] == 5 and graph.min_share == 0.2
    assert np.array_equal(seen["vectors"], record.importance_per_image.numpy())
    assert torch.equal(graph.importance, record.importance_per_image)
    assert torch.equal(graph.dominant, record.importance_per_image.argmax(dim=1))
    assert graph.embedding.shape == (6, 2)


def test_the_model_is_left_as_found(net: TinyNet, images: torch.Tensor) -> None:
    model = wrapped(TinyNet())
    model.train()
    model.network.pool.eval()
    flags = [m.training for m in model.modules()]
    class_concepts(model, images, CLASS, n_maps=1, **FAST, **MACO)
    with pytest.raises(ValueError, match="patch_size"):
        class_concepts(model, images, CLASS, **{**FAST, "patch_size": 64}, render=False)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": torch.rand(2, 32, 32)}, ValueError, "shape"),
        ({"images": torch.rand(2, 3, 32, 32) * 255}, ValueError, "255"),
        ({"importance": "lime"}, ValueError, "importance must be one of"),
        ({"importance_options": {"per_image": False}}, ValueError, "per_image"),
        ({"importance_options": [1]}, TypeError, "mapping"),
        ({"n_crops": 0}, ValueError, "n_crops"),
        ({"n_maps": -1}, ValueError, "n_maps"),
        ({"render": "yes"}, TypeError, "render"),
        ({"render": True}, TypeError, "VisionModel"),
        ({"strategic": True}, ValueError, "at least 4 images"),
        ({"min_share": 1.5}, ValueError, "min_share"),
        ({"seed": -1}, ValueError, "seed"),
        ({"class_id": 9}, ValueError, "class_id"),
        ({"layer": "nope"}, ValueError, "nope"),
    ],
)
def test_bad_input_is_refused_clearly(
    net: TinyNet, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    arguments: dict[str, object] = {"images": block_images(2), "class_id": CLASS, "render": False, **FAST}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        class_concepts(net, **arguments)  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(pipeline_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
