"""The per-class concept pipeline: everything CRAFT says about one class, as data.

One call, :func:`class_concepts`, runs the chain that the demo page and the atlas both show
for a class of a model, on photos of that class:

1. **fit** — :class:`~spyglass.concepts.Craft` learns ``r`` concepts from crops of the
   images at a layer (by default the last feature map before global pooling);
2. **importance** — each concept's importance for the class, globally and per image
   (Gradient×Input in concept space by default: one gradient per image, and exact at the
   last layer, where the top of the model is affine);
3. **share of the logit** — with Gradient×Input, ``Σ_i GxI_i = s(U) − s(0)``: the class
   logit minus what the concepts' absence leaves (the bias and the dictionary's residual),
   so ``GxI_i / logit`` is the share of the logit each concept accounts for;
4. **best crops** — the crops of the fitting images that hold the most of each concept;
5. **concept maps** — CRAFT's concept attribution maps (Grad-CAM through the implicitly
   differentiated coding) on the images where each concept is most present;
6. **renderings** (optional) — a MACO image of each concept's direction at the layer;
7. **alignment** — when the top of the model is affine (the last layer), the cosine
   between each concept vector and every class's effective classifier weights;
8. **strategic cluster graph** (optional) — UMAP of the per-image importance
   (:func:`~spyglass.concepts.strategic_cluster_graph`).

Nothing here writes a file or draws a picture: the record, :class:`ClassConcepts`, holds
tensors, and callers render or store it (:mod:`spyglass.demo`, the atlas).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.concepts._importance import IMPORTANCE_METHODS
from spyglass.concepts.craft import Craft
from spyglass.concepts.strategic import StrategicClusterGraph, strategic_cluster_graph
from spyglass.engines import batched_forward, eval_mode, iter_batches
from spyglass.engines.forward import model_device
from spyglass.models import VisionModel, split
from spyglass.progress import progress_bar
from spyglass.validation import (
    check_batch_size,
    check_bool,
    check_images,
    check_int,
    check_probability,
    check_seed,
)

if TYPE_CHECKING:  # featureviz is imported when rendering: its optimisation loop is not needed otherwise
    from spyglass.featureviz import Visualization

__all__ = [
    "ClassConcepts",
    "ConceptAlignment",
    "ConceptEvidence",
    "ConceptSettings",
    "class_concepts",
]

# |h(A) − (M mean(A) + b)| on the images' activations, relative to the logits' scale: the
# float32 rounding of a real affine top (1,280 features) stays far below it.
_AFFINE_RTOL = 1e-4


@dataclass(frozen=True)
class ConceptSettings:
    """The settings a :class:`ClassConcepts` was computed with (all plain Python values).

    Two records are comparable when their settings are equal; :meth:`as_dict` gives a
    JSON-ready mapping for a store. ``layer`` is the resolved layer, never ``None``.
    """

    layer: str
    n_concepts: int
    patch_size: int
    stride: int
    dictionary: str
    importance: str
    importance_options: tuple[tuple[str, Any], ...]
    n_crops: int
    n_maps: int
    render: bool
    maco_steps: int
    maco_size: int
    maco_crops: int
    alignment_top_k: int
    strategic: bool
    min_share: float
    seed: int
    batch_size: int

    def as_dict(self) -> dict[str, Any]:
        """The settings as a dict (``importance_options`` as a dict too)."""
        values = dataclasses.asdict(self)
        values["importance_options"] = dict(self.importance_options)
        return values


@dataclass(frozen=True)
class ConceptEvidence:
    """What one concept looks like: its best crops, its maps, and optionally its MACO image.

    Attributes
    ----------
    concept
        Index of the concept in the bank (``ClassConcepts.concepts[concept]``).
    crops
        ``(k, 3, patch_size, patch_size)`` float32 in ``[0, 1]``, the ``k`` fitting crops with
        the largest coefficient of this concept, best first (not resized).
    crop_scores
        ``(k,)`` those coefficients, non-increasing.
    crop_images
        ``(k,)`` long, the index of each crop's source image among the images given.
    crop_boxes
        ``(k, 4)`` long, ``(top, left, bottom, right)`` of each crop in its source image, in
        pixels, bottom and right exclusive.
    map_images
        ``(m,)`` long, the images where the concept is most present (largest mean coefficient
        over the layer's positions, ``ClassConcepts.presence``), most present first.
    maps
        ``(m, H, W)`` float32, the concept attribution map (CRAFT's, ``method="gradcam"`` of
        :meth:`Craft.concept_maps`) on each of those images, at the images' resolution.
    rendering
        A :class:`~spyglass.featureviz.Visualization` of the concept's direction at the layer
        (MACO), or ``None`` when not rendered.
    """

    concept: int
    crops: Tensor
    crop_scores: Tensor
    crop_images: Tensor
    crop_boxes: Tensor
    map_images: Tensor
    maps: Tensor
    rendering: Visualization | None = None


@dataclass(frozen=True)
class ConceptAlignment:
    """Concept ↔ class alignment: cosines between concepts and the classifier's weights.

    The classifier weights are the effective ones of the top of the model ``h``, read off
    ``h`` itself: with ``h`` affine in the spatially averaged activations ``ā``,
    ``h(ā) = M ā + b`` and row ``c`` of ``M`` is class ``c``'s weight vector (for a global
    pooling then a linear layer, exactly the linear layer's weights).

    Attributes
    ----------
    cosine
        ``(n_concepts, n_classes)`` float32, ``cos(w_concept, M_c)`` for every class.
    top_classes
        ``(n_concepts, k)`` long, each concept's ``k`` most aligned classes, most first.
    top_cosines
        ``(n_concepts, k)`` float32, their cosines.
    """

    cosine: Tensor
    top_classes: Tensor
    top_cosines: Tensor


@dataclass(frozen=True)
class ClassConcepts:
    """The result of :func:`class_concepts`: one class's concepts, as data.

    Attributes
    ----------
    class_id
        The class explained.
    craft
        The fitted :class:`~spyglass.concepts.Craft` (for further calls: ``decompose``,
        ``transform`` of new images, fidelity metrics).
    settings
        The :class:`ConceptSettings` used.
    concepts
        ``(n_concepts, p)`` float32, the concept bank ``W`` (``craft.components_``), on the CPU.
    importance
        ``(n_concepts,)`` float32, the class-level importance (mean over the images) under
        ``settings.importance``.
    importance_per_image
        ``(N, n_concepts)`` float32, the per-image importance (the strategic graph's input).
    ranked
        Concept indices by decreasing ``importance``.
    logits
        ``(N,)`` float32, the model's logit of the class on each image.
    logit_share
        ``(n_concepts,)`` ``importance / logits.mean()`` when the importance is Gradient×Input
        (then in logit units; the shares sum to ``1 − mean(s(0)) / mean(logit)``, what is left
        being the bias and the dictionary's residual), else ``None``. Exact when
        ``top_is_affine``.
    logit_share_per_image
        ``(N, n_concepts)`` ``importance_per_image / logits[:, None]``, or ``None`` likewise.
    presence
        ``(N, n_concepts)`` float32, each concept's mean coefficient over the layer's positions
        of each image (what the concept maps' images are chosen by).
    evidence
        One :class:`ConceptEvidence` per concept, in concept-index order.
    top_is_affine
        Whether the top of the model after the layer is affine in the averaged activations
        (checked numerically): Gradient×Input is then exact, and the alignment is defined.
    alignment
        A :class:`ConceptAlignment` when ``top_is_affine``, else ``None``.
    strategic
        The :class:`~spyglass.concepts.StrategicClusterGraph` of the per-image importance
        when asked for (``strategic=True``), else ``None``.
    """

    class_id: int
    craft: Craft
    settings: ConceptSettings
    concepts: Tensor
    importance: Tensor
    importance_per_image: Tensor
    ranked: tuple[int, ...]
    logits: Tensor
    logit_share: Tensor | None
    logit_share_per_image: Tensor | None
    presence: Tensor
    evidence: tuple[ConceptEvidence, ...]
    top_is_affine: bool
    alignment: ConceptAlignment | None
    strategic: StrategicClusterGraph | None

    @property
    def n_concepts(self) -> int:
        return int(self.concepts.shape[0])

    def __len__(self) -> int:
        """The number of images the record was computed on."""
        return int(self.importance_per_image.shape[0])


def _best_crops(craft: Craft, concept: int, n_crops: int) -> tuple[Tensor, ...]:
    """The ``n_crops`` fitting crops of ``concept`` with the largest coefficient, best first."""
    scores = craft.crops_u_[:, concept].detach().cpu()
    # Stable: equal coefficients (NMF codes are often exactly 0) keep the crops' grid order.
    order = scores.argsort(descending=True, stable=True)[:n_crops]
    boxes = craft.crop_boxes_[order]
    top, left = boxes[:, 1], boxes[:, 2]
    size = craft.patch_size
    corners = torch.stack([top, left, top + size, left + size], dim=1)
    crops = craft.crops_[order.to(craft.crops_.device)].detach().to("cpu", torch.float32).clamp(0, 1)
    return crops, scores[order].float(), boxes[:, 0].clone(), corners


def _affine_weights(
    model: nn.Module, craft: Craft, images: Tensor, batch_size: int
) -> tuple[Tensor, Tensor] | None:
    """``(M, b)`` of an affine top ``h(A) = M mean_xy(A) + b``, or ``None`` when the top is not affine.

    ``M`` is ``(n_classes, p)`` and ``b`` ``(n_classes,)``.

    ``M``'s columns are ``h(e_k) − h(0)`` with ``e_k`` the k-th feature switched on at every
    position; the result is trusted only if it reproduces ``h`` on the images' own
    activation maps (a max pooling, or a nonlinearity after the layer, fails that check).
    """
    bottom, top = split(model, craft.layer, check=False)
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        maps = bottom(images[:batch_size].to(device))
        height, width = maps.shape[2:]
        n_features = int(maps.shape[1])

        def averaged(rows: Tensor) -> Tensor:
            logits: Tensor = top(rows[:, :, None, None].expand(-1, -1, height, width))
            return logits.double()

        bias = averaged(torch.zeros(1, n_features, device=device))[0]
        basis = torch.eye(n_features, device=device)
        columns = [averaged(basis[rows]) - bias for rows in iter_batches(n_features, batch_size)]
        weights = torch.cat(columns).T  # (n_classes, p)
        expected = top(maps).double()
        predicted = maps.double().mean(dim=(2, 3)) @ weights.T + bias
    scale = float(expected.abs().max()) + 1.0
    if float((predicted - expected).abs().max()) > _AFFINE_RTOL * scale:
        return None
    return weights.float().cpu(), bias.float().cpu()


def _alignment(concepts: Tensor, weights: Tensor, top_k: int) -> ConceptAlignment:
    cosine = F.normalize(concepts.double(), dim=1) @ F.normalize(weights.double(), dim=1).T
    k = min(top_k, int(weights.shape[0]))
    order = cosine.argsort(dim=1, descending=True, stable=True)[:, :k]
    return ConceptAlignment(
        cosine=cosine.float(),
        top_classes=order,
        top_cosines=cosine.gather(1, order).float(),
    )


def _class_logits(model: nn.Module, images: Tensor, class_id: int, batch_size: int) -> Tensor:
    def logit(net: nn.Module, batch: Tensor, _rows: slice) -> Tensor:
        out: Tensor = net(batch)[:, class_id]
        return out

    scores = batched_forward(model, images, batch_size=batch_size, progress=False, fn=logit)
    return scores.to("cpu", torch.float32)


def _render(
    model: VisionModel, craft: Craft, settings: ConceptSettings, progress: bool
) -> list[Visualization | None]:
    from spyglass import featureviz

    renderings: list[Visualization | None] = []
    bank = craft.components_.detach().float().cpu()
    concepts = progress_bar(
        range(settings.n_concepts), enabled=progress, total=settings.n_concepts, desc="MACO of concepts"
    )
    for concept in concepts:
        renderings.append(
            featureviz.maco(
                model,
                featureviz.direction(craft.layer, bank[concept]),
                steps=settings.maco_steps,
                image_size=settings.maco_size,
                nb_crops=settings.maco_crops,
                seed=settings.seed,
                progress=progress,
            )
        )
    return renderings


def class_concepts(
    model: nn.Module,
    images: Tensor,
    class_id: int,
    *,
    layer: str | None = None,
    n_concepts: int = 10,
    patch_size: int = 64,
    stride: int | None = None,
    dictionary: str | None = None,
    importance: str = "gradient_input",
    importance_options: Mapping[str, Any] | None = None,
    n_crops: int = 10,
    n_maps: int = 3,
    render: bool = True,
    maco_steps: int = 256,
    maco_size: int = 512,
    maco_crops: int = 6,
    alignment_top_k: int = 5,
    strategic: bool = False,
    min_share: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> ClassConcepts:
    """Fit CRAFT on photos of a class and gather what the demo and the atlas show of it.

    See the module docstring for the steps. Computes only: no file is written.

    Parameters
    ----------
    model
        The classifier: a :class:`~spyglass.models.VisionModel` (needed when ``render``), or
        any module :class:`~spyglass.concepts.Craft` accepts.
    images
        ``(N, 3, H, W)`` in ``[0, 1]``, photos of the class (for the atlas: those the model
        predicts as the class).
    class_id
        The class explained.
    layer, n_concepts, patch_size, stride, dictionary
        CRAFT's (see :class:`~spyglass.concepts.Craft`); ``layer=None`` is
        :func:`~spyglass.models.default_layer`'s, ``dictionary=None`` picks NMF or Semi-NMF by the
        sign of the activations (the settings record the learner fitted).
    importance
        The concept importance method of :meth:`Craft.importance` (default
        ``"gradient_input"``; ``logit_share`` is only defined for it).
    importance_options
        Extra keyword arguments of :meth:`Craft.importance` (``nb_design=``, ``steps=``, ...).
    n_crops
        Best crops kept per concept (fewer when the images give fewer crops).
    n_maps
        Images per concept on which its concept attribution map is computed (at most ``N``;
        0 for none).
    render
        Render each concept's direction with :func:`~spyglass.featureviz.maco`.
    maco_steps, maco_size, maco_crops
        MACO's ``steps``, ``image_size`` and ``nb_crops`` (its defaults: 256, 512, 6).
    alignment_top_k
        Classes kept per concept in :attr:`ConceptAlignment.top_classes`.
    strategic
        Also embed the per-image importance with
        :func:`~spyglass.concepts.strategic_cluster_graph` (needs at least 4 images).
    min_share
        The strategic graph's threshold for an important concept.
    seed
        Seeds the dictionary, the importance estimator, MACO and UMAP.
    batch_size
        Crops or images per forward pass: bounds the memory.
    progress
        Show progress bars (on a terminal).

    Returns
    -------
    ClassConcepts
        Tensors on the CPU.

    Raises
    ------
    TypeError, ValueError
        Bad images, class, settings; ``render`` with a model that is not a
        :class:`~spyglass.models.VisionModel`; ``strategic`` with fewer than 4 images; and
        whatever :class:`~spyglass.concepts.Craft` rejects (too few crops, a layer that is not
        a feature map, ...). All raised before the first forward pass but Craft's own.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from spyglass.concepts import class_concepts
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    ... )
    >>> images = F.interpolate(torch.rand(4, 3, 4, 4), size=(32, 32))
    >>> record = class_concepts(net, images, 2, n_concepts=3, patch_size=8, n_crops=5,
    ...                         render=False, progress=False)
    >>> record.importance_per_image.shape, record.evidence[0].crops.shape, record.top_is_affine
    (torch.Size([4, 3]), torch.Size([5, 3, 8, 8]), True)
    >>> record.alignment.top_classes.shape  # 4 classes: the top 5 are all of them
    torch.Size([3, 4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    images = check_images(images, model=model)
    if not isinstance(importance, str) or importance not in IMPORTANCE_METHODS:
        raise ValueError(
            f"importance must be one of {', '.join(map(repr, IMPORTANCE_METHODS))}; got {importance!r}"
        )
    if importance_options is not None and not isinstance(importance_options, Mapping):
        raise TypeError(
            "importance_options must be a mapping of keyword arguments; got "
            f"{type(importance_options).__name__}"
        )
    options = dict(importance_options or {})
    for reserved in ("per_image", "seed", "method"):
        if reserved in options:
            raise ValueError(f"importance_options cannot set {reserved!r}; the pipeline sets it")
    # A mistyped option fails here, before the fit, and not after it.
    accepted = set(inspect.signature(Craft.importance).parameters) - {"self", "images"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"importance_options {unknown} are not options of Craft.importance: {sorted(accepted)}"
        )
    n_crops = check_int(n_crops, "n_crops", 1)
    n_maps = check_int(n_maps, "n_maps", 0)
    render = check_bool(render, "render")
    strategic = check_bool(strategic, "strategic")
    check_bool(progress, "progress")
    maco_steps = check_int(maco_steps, "maco_steps", 1)
    maco_size = check_int(maco_size, "maco_size", 16)
    maco_crops = check_int(maco_crops, "maco_crops", 1)
    alignment_top_k = check_int(alignment_top_k, "alignment_top_k", 1)
    min_share = check_probability(min_share, "min_share")
    seed = check_seed(seed)
    batch_size = check_batch_size(batch_size)
    if render and not isinstance(model, VisionModel):
        raise TypeError(
            "render=True needs a spyglass.models.VisionModel (MACO optimises images in [0, 1]); got "
            f"{type(model).__name__} (pass render=False, or wrap the network in VisionModel)"
        )
    if strategic and images.shape[0] < 4:
        raise ValueError(
            f"strategic=True needs at least 4 images (UMAP embeds each among its neighbours); got "
            f"{images.shape[0]}"
        )

    craft = Craft(
        model,
        layer=layer,
        n_concepts=n_concepts,
        patch_size=patch_size,
        dictionary=dictionary,
        stride=stride,
        batch_size=batch_size,
        progress=progress,
        seed=seed,
    ).fit(images, class_id)
    settings = ConceptSettings(
        layer=craft.layer,
        n_concepts=craft.n_concepts,
        patch_size=craft.patch_size,
        stride=craft.stride,
        dictionary=craft.dictionary_,
        importance=importance,
        importance_options=tuple(sorted(options.items())),
        n_crops=n_crops,
        n_maps=n_maps,
        render=render,
        maco_steps=maco_steps,
        maco_size=maco_size,
        maco_crops=maco_crops,
        alignment_top_k=alignment_top_k,
        strategic=strategic,
        min_share=min_share,
        seed=seed,
        batch_size=batch_size,
    )

    per_image = craft.importance(images, importance, per_image=True, seed=seed, **options).cpu()
    mean_importance = per_image.mean(dim=0)
    ranked = tuple(int(i) for i in mean_importance.argsort(descending=True, stable=True))
    logits = _class_logits(model, images, craft.class_id_, batch_size)
    share: Tensor | None = None
    share_per_image: Tensor | None = None
    if importance == "gradient_input":
        share = mean_importance / logits.mean()
        share_per_image = per_image / logits[:, None]

    presence = craft.transform(images).float().mean(dim=(1, 2)).cpu()  # (N, r)
    n_maps = min(n_maps, images.shape[0])
    strongest = presence.argsort(dim=0, descending=True, stable=True)[:n_maps].T  # (r, n_maps)
    shown = sorted(set(strongest.flatten().tolist()))
    row_of = {image: row for row, image in enumerate(shown)}
    # One pass over the union of the chosen images gives every concept's maps on each of them.
    maps = craft.concept_maps(images[shown], method="gradcam").cpu() if shown else None
    renderings: list[Visualization | None] = [None] * craft.n_concepts
    if render:
        assert isinstance(model, VisionModel)
        renderings = _render(model, craft, settings, progress)

    evidence = []
    for concept in range(craft.n_concepts):
        crops, scores, sources, boxes = _best_crops(craft, concept, n_crops)
        chosen = strongest[concept]
        if maps is not None:
            concept_maps = maps[[row_of[int(j)] for j in chosen], concept]
        else:
            concept_maps = torch.zeros(0, *images.shape[2:])
        evidence.append(
            ConceptEvidence(
                concept=concept,
                crops=crops,
                crop_scores=scores,
                crop_images=sources,
                crop_boxes=boxes,
                map_images=chosen.clone(),
                maps=concept_maps,
                rendering=renderings[concept],
            )
        )

    concepts = craft.components_.detach().to("cpu", torch.float32)
    affine = _affine_weights(model, craft, images, batch_size)
    alignment = None if affine is None else _alignment(concepts, affine[0], alignment_top_k)
    graph = None
    if strategic:
        graph = strategic_cluster_graph(craft, importance=per_image, min_share=min_share, seed=seed)
    return ClassConcepts(
        class_id=craft.class_id_,
        craft=craft,
        settings=settings,
        concepts=concepts,
        importance=mean_importance,
        importance_per_image=per_image,
        ranked=ranked,
        logits=logits,
        logit_share=share,
        logit_share_per_image=share_per_image,
        presence=presence,
        evidence=tuple(evidence),
        top_is_affine=affine is not None,
        alignment=alignment,
        strategic=graph,
    )
