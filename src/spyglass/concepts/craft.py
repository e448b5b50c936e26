"""CRAFT: concepts a model uses for a class, their importance, where they are, and their parts.

CRAFT (Fel et al., "CRAFT: Concept Recursive Activation FacTorization for Explainability",
CVPR 2023) and its holistic reading (Fel et al., "A Holistic Approach to Unifying Automatic
Concept Extraction and Concept Importance Estimation", NeurIPS 2023):

1. Split the model ``f = h ∘ g`` at a layer: by default :func:`~spyglass.models.default_layer`,
   the last feature map that feeds the decision (a ViT's tokens and a Swin's channels-last grid
   are read as ``(C, h, w)`` maps through :class:`~spyglass.models.FeatureLayout`).
2. Cut every image of the class into ``patch_size`` crops on a grid, resize each crop to
   the model's input size, and average ``g(crop)`` over space: ``A`` ``(n_crops, p)``.
3. Factorise ``A ≈ U W`` (NMF when ``A ≥ 0``, as after a ReLU; Semi-NMF when it is signed;
   or any learner of :mod:`spyglass.concepts`): the rows of ``W`` are the concepts, ``U``
   says how much of each a crop holds.
4. On new images, code ``g(x)`` at every spatial position with ``W`` fixed (non-negative
   least squares for NMF) and estimate each concept's importance for the class
   (:mod:`spyglass.concepts._importance`: Sobol' indices by default).
5. Recursion: a concept's most typical crops, factorised again at an earlier layer, give
   its sub-concepts (:meth:`Craft.decompose`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.concepts._base import DictionaryLearner, NotFittedError
from spyglass.concepts._crops import CropSource, crop_grid, cut_crops, resize
from spyglass.concepts._importance import IMPORTANCE_METHODS, ConceptSpace
from spyglass.concepts._registry import create_learner
from spyglass.engines.forward import batched_forward, iter_batches, model_device
from spyglass.engines.state import eval_mode
from spyglass.models.feature_maps import FeatureLayout, default_layer, feature_layout
from spyglass.models.probing import is_feature_map, probe_layers
from spyglass.models.split import split
from spyglass.models.vision_model import VisionModel
from spyglass.objectives import Objective, target_logit
from spyglass.progress import progress_bar
from spyglass.sampling.designs import check_design_size, check_sampler
from spyglass.sampling.sobol import check_estimator
from spyglass.validation import (
    check_batch_size,
    check_float,
    check_images,
    check_int,
    check_mapping,
    check_seed,
)

__all__ = ["Craft"]

_DECOMPOSE_PERCENTILE = 90.0
_CONCEPT_MAP_METHODS = ("coefficients", "gradcam")


def _layout(activations: object, layer: str, size: tuple[int, int]) -> FeatureLayout:
    """How the layer's output on ``size`` images reads as a feature map (tokens, channels last...)."""
    layout = feature_layout(tuple(activations.shape[1:]), size) if isinstance(activations, Tensor) else None
    if layout is None:
        shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
        raise ValueError(
            f"CRAFT needs a layer that outputs feature maps (N, C, h, w), ViT tokens (N, t + h·w, C) or "
            f"(N, h, w, C) grids; layer {layer!r} outputs {shape}"
        )
    return layout


class _CodedBatch(NamedTuple):
    """One batch of images in concept space, on the model's device."""

    codes: Tensor
    """``U`` ``(B, h·w, r)``."""
    residual: Tensor
    """``E = A − Ψ(U)`` ``(B, h·w, p)``."""
    layout: FeatureLayout
    """How the layer's rows make its tensor (positions: prefix tokens, then the ``h × w`` grid)."""


class Craft:
    """CRAFT concept extraction and the holistic framework's concept importance.

    ``fit`` learns ``r`` concepts of one class from crops of its images, ``A ≈ U W``;
    ``transform`` codes new images at every spatial position; ``importance`` estimates
    how much each concept drives the class score; ``concept_maps`` shows where each
    concept is; ``decompose`` splits a concept into sub-concepts at an earlier layer.

    Parameters
    ----------
    model
        The classifier: a :class:`~spyglass.models.VisionModel` (images in ``[0, 1]``) or any
        module that :func:`~spyglass.models.split` can cut.
    layer
        Where to cut, relative to the network (see :func:`~spyglass.models.list_layers`).
        Default: :func:`~spyglass.models.default_layer`'s rule (Grad-CAM's), the last
        splittable feature map that feeds the logits (``bn2`` of EfficientNet-Lite0, 1280 × 7 × 7
        after a ReLU6; ``layer4`` of a ResNet; ``stages`` of a ConvNeXt; a ViT's block, whose
        tokens are read as an ``h × w`` grid, the class token coded too but left out of the
        crops' spatial average and of the maps).
    n_concepts
        ``r``, the number of concepts.
    patch_size
        Side of the square crops, in pixels of the images given to :meth:`fit`.
    dictionary
        A registered learner (:func:`~spyglass.concepts.list_learners`): ``"nmf"`` (CRAFT's),
        ``"semi_nmf"`` or ``"pca"`` for layers with signed activations, ... Default ``None``
        picks by the sign of the crops' activations at :meth:`fit`: NMF when they are all
        non-negative (after a ReLU), else Semi-NMF (a ViT's tokens, a ConvNeXt's stages); the
        choice and its reason are kept in ``dictionary_`` and ``dictionary_reason_``. An
        explicit ``"nmf"`` on signed activations is refused with a clear error.
    stride
        Step of the crop grid. Default ``int(0.8 · patch_size)``, the paper's code
        (``craft_torch.py``): overlapping crops, 4 × 4 per 224 px image at 64 px. With it,
        spyglass and the authors' package cut the same crops, and on 64 photos (1,024 crops)
        learn the same concept bank (matched cosines ≥ 0.99999) and importance ranking
        (Spearman 1.0; ``benchmarks/concepts.py``); tiling without overlap
        (``stride=patch_size``, the default before) gave other concepts (matched cosines
        0.58–0.98, importance Spearman 0.82).
    input_size
        ``(H, W)`` each crop is resized to (bilinear) before the model sees it. Default: the
        model's input size for a :class:`~spyglass.models.VisionModel`, else the size of the
        images given to :meth:`fit`.
    objective
        What is explained by :meth:`importance`, ``(h, activations, targets) -> (N,)``;
        default the class logit.
    dictionary_options
        Extra keyword arguments of the learner (e.g. ``{"max_iter": 1000}``).
    batch_size
        Crops, images or perturbed activations per forward pass: bounds the memory.
    progress
        Show progress bars (on a terminal).
    seed
        Seeds the dictionary's fit and the Sobol' design; the same seed gives the same result.

    Attributes
    ----------
    layer : str
        The layer of the split.
    learner_ : DictionaryLearner
        The fitted dictionary.
    components_ : Tensor
        ``W`` ``(n_concepts, p)``, the concept bank.
    crops_ : Tensor
        ``(n_crops, 3, patch_size, patch_size)`` the crops of the fitting images, not resized
        (49 KB each at 64 px in float32: about 300 MB for the ~6,200 crops of 390 photos at the
        default stride).
    crop_boxes_ : Tensor
        ``(n_crops, 3)`` long, ``(image, top, left)`` of each crop in the fitting images.
    crop_activations_ : Tensor
        ``A`` ``(n_crops, p)``, the spatially averaged activations of the crops.
    crops_u_ : Tensor
        ``U`` ``(n_crops, n_concepts)``, the crops' concept coefficients (best crops of a
        concept: ``crops_[crops_u_[:, i].argsort(descending=True)]``).
    class_id_ : int
        The class the concepts were extracted for.
    input_size_ : tuple of int
        ``(H, W)`` the crops were resized to.
    reconstruction_error_ : float
        ``‖A − Ψ(U)‖_F / ‖A‖_F`` on the crops.

    Examples
    --------
    Any splittable network works; here a small one, cut after its ReLU (the default layer):

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> from spyglass.concepts import Craft
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(
    ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    ... )
    >>> images = F.interpolate(torch.rand(4, 3, 4, 4), size=(32, 32))  # 8 x 8 blocks of colour
    >>> craft = Craft(net, n_concepts=3, patch_size=8, progress=False).fit(images, class_id=2)
    >>> craft.layer, tuple(craft.components_.shape), tuple(craft.crops_.shape)
    ('1', (3, 8), (100, 3, 8, 8))
    >>> craft.transform(images).shape, craft.concept_maps(images).shape
    (torch.Size([4, 32, 32, 3]), torch.Size([4, 3, 32, 32]))
    >>> importance = craft.importance(images)  # Sobol' indices, mean over the images
    >>> importance.shape
    torch.Size([3])

    On the default model, with photos of one class (tench is class 0):

    >>> from spyglass import data, models
    >>> model = models.load()                                               # doctest: +SKIP
    >>> photos = data.read_images("tench/", model.preprocess).images       # doctest: +SKIP
    >>> craft = Craft(model, n_concepts=10, patch_size=64).fit(photos, 0)  # doctest: +SKIP
    >>> craft.importance(photos).shape                                     # doctest: +SKIP
    torch.Size([10])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | None = None,
        n_concepts: int = 10,
        patch_size: int = 64,
        dictionary: str | None = None,
        *,
        stride: int | None = None,
        input_size: tuple[int, int] | None = None,
        objective: Objective = target_logit,
        dictionary_options: dict[str, Any] | None = None,
        batch_size: int = 32,
        progress: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(
                f"objective must be callable (model, activations, targets) -> (N,); got {objective!r}"
            )
        self.model = model
        self.n_concepts = check_int(n_concepts, "n_concepts", 1)
        self.patch_size = check_int(patch_size, "patch_size", 1)
        # The authors' int(patch_size * 0.80), kept at least 1 for tiny patches.
        default_stride = max(1, int(self.patch_size * 0.8))
        self.stride = default_stride if stride is None else check_int(stride, "stride", 1)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        self.seed = check_seed(seed)
        self.objective = objective
        self.dictionary = dictionary
        self.dictionary_options = dict(check_mapping(dictionary_options, "dictionary_options"))
        # Fail now on an unknown learner or option, not after the crops' forward passes.
        for name in ("nmf", "semi_nmf") if dictionary is None else (dictionary,):
            create_learner(name, self.n_concepts, seed=self.seed, **self.dictionary_options)
        if input_size is not None:
            if len(input_size) != 2:
                raise ValueError(f"input_size must be (H, W); got {input_size!r}")
            input_size = (
                check_int(input_size[0], "input_size[0]", 1),
                check_int(input_size[1], "input_size[1]", 1),
            )
        self.input_size = input_size
        if layer is None:
            self.layer = default_layer(model, input_size=self._check_size())
        else:
            if not isinstance(layer, str):
                raise TypeError(f"layer must be a layer name (str) or None; got {type(layer).__name__}")
            split(model, layer, input_size=self._check_size())  # unknown or unsplittable layer: fail now
            self.layer = layer
        self._learner: DictionaryLearner | None = None
        self._state: dict[str, Any] = {}
        self.parent_concept_: int | None = None
        """For a child of :meth:`decompose`: the parent's concept it decomposes."""
        self.parent_crops_: Tensor | None = None
        """For a child of :meth:`decompose`: indices of its crops among the parent's."""

    def _check_size(self) -> tuple[int, int] | None:
        if self.input_size is not None:
            return self.input_size
        return self.model.input_size if isinstance(self.model, VisionModel) else None

    # --- fitted state ----------------------------------------------------------------------

    def _fitted(self, name: str) -> Any:
        if self._learner is None:
            raise NotFittedError(f"this Craft is not fitted yet; call fit(images, class_id) before {name}")
        return self._state[name]

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._learner is not None

    @property
    def learner_(self) -> DictionaryLearner:
        """The fitted dictionary learner."""
        if self._learner is None:
            self._fitted("learner_")
        return cast(DictionaryLearner, self._learner)

    @property
    def components_(self) -> Tensor:
        """``W`` ``(n_concepts, p)``."""
        return self.learner_.components_

    @property
    def crops_(self) -> Tensor:
        """The fitting crops ``(n_crops, 3, patch_size, patch_size)``, not resized."""
        crops: Tensor = self._fitted("crops_")
        return crops

    @property
    def crop_boxes_(self) -> Tensor:
        """``(image, top, left)`` of every crop ``(n_crops, 3)``."""
        boxes: Tensor = self._fitted("crop_boxes_")
        return boxes

    @property
    def crop_activations_(self) -> Tensor:
        """``A`` ``(n_crops, p)``."""
        activations: Tensor = self._fitted("crop_activations_")
        return activations

    @property
    def crops_u_(self) -> Tensor:
        """``U`` ``(n_crops, n_concepts)``."""
        codes: Tensor = self._fitted("crops_u_")
        return codes

    @property
    def class_id_(self) -> int:
        """The class of the concepts."""
        return int(self._fitted("class_id_"))

    @property
    def input_size_(self) -> tuple[int, int]:
        """``(H, W)`` the crops were resized to."""
        size: tuple[int, int] = self._fitted("input_size_")
        return size

    @property
    def reconstruction_error_(self) -> float:
        """``‖A − Ψ(U)‖_F / ‖A‖_F`` on the crops."""
        return float(self._fitted("reconstruction_error_"))

    # --- fit -------------------------------------------------------------------------------

    def _split(self) -> tuple[nn.Module, nn.Module]:
        # A trace per call, no forward pass: g and h hold references to the model's buffers,
        # which go stale if the model is moved or cast after construction.
        return split(self.model, self.layer, check=False)

    def _check_class(self, class_id: object) -> int:
        if isinstance(class_id, Tensor) and class_id.numel() == 1 and not class_id.is_floating_point():
            class_id = int(class_id.item())
        num_classes = getattr(self.model, "num_classes", None)
        top = num_classes - 1 if isinstance(num_classes, int) else None
        return check_int(class_id, "class_id", 0, maximum=top, hint="a class index")

    def fit(self, images: Tensor, class_id: int) -> Craft:
        """Learn ``n_concepts`` concepts of class ``class_id`` from crops of ``images``.

        Parameters
        ----------
        images
            ``(N, 3, H, W)`` in ``[0, 1]``, photos of the class (any device).
        class_id
            The class explained; kept as ``class_id_`` for :meth:`importance`.

        Returns
        -------
        Craft
            ``self``, fitted.

        Raises
        ------
        TypeError, ValueError
            Bad images or class; ``patch_size`` larger than the images; fewer crops than
            concepts; a layer that is not a feature map; negative activations with a
            learner that needs ``A >= 0`` (NMF: the message names the layer and suggests
            ``dictionary="semi_nmf"`` or ``"pca"``).
        """
        images = check_images(images, model=self.model)
        class_id = self._check_class(class_id)
        height, width = images.shape[2:]
        size = self._check_size() or (int(height), int(width))
        boxes = crop_grid(images.shape[0], int(height), int(width), self.patch_size, self.stride)
        if boxes.shape[0] < self.n_concepts:
            raise ValueError(
                f"CRAFT needs at least n_concepts={self.n_concepts} crops; {images.shape[0]} image(s) of "
                f"{height} x {width} px give {boxes.shape[0]} crops of {self.patch_size} px at stride "
                f"{self.stride} (use more images, a smaller patch_size or stride, or fewer concepts)"
            )
        bottom, top = self._split()
        spatial: list[tuple[int, ...]] = []

        def pooled(g: nn.Module, batch: Tensor, _rows: slice) -> Tensor:
            output = g(batch)
            layout = _layout(output, self.layer, size)
            spatial.append(tuple(output.shape[1:]))
            return layout.to_grid(output).mean(dim=(2, 3))  # over the grid: prefix tokens set aside

        with eval_mode(self.model):
            activations = batched_forward(
                bottom,
                CropSource(images, boxes, self.patch_size, size),
                batch_size=self.batch_size,
                progress=self.progress,
                fn=pooled,
                desc="CRAFT crops",
            )
            self._check_logits(top, spatial[0], class_id)
        dictionary, reason = self._choose_dictionary(activations)
        learner = create_learner(dictionary, self.n_concepts, seed=self.seed, **self.dictionary_options)
        try:
            learner.fit(activations)
        except ValueError as error:
            raise ValueError(
                f"cannot fit the dictionary on layer {self.layer!r} (activations of {activations.shape[0]} "
                f"crops, {activations.shape[1]} features): {error}"
            ) from error
        codes = learner.transform(activations)
        residual = activations - learner.inverse_transform(codes)
        scale = float(torch.linalg.matrix_norm(activations)) or 1.0
        self._learner = learner
        self._state = {
            "crops_": cut_crops(images, boxes, self.patch_size),
            "crop_boxes_": boxes,
            "crop_activations_": activations,
            "crops_u_": codes,
            "class_id_": class_id,
            "input_size_": size,
            "reconstruction_error_": float(torch.linalg.matrix_norm(residual)) / scale,
            "dictionary_": dictionary,
            "dictionary_reason_": reason,
        }
        return self

    def _choose_dictionary(self, activations: Tensor) -> tuple[str, str]:
        """The learner to fit, and why: ``dictionary=None`` picks by the sign of the activations."""
        if self.dictionary is not None:
            return self.dictionary, "given"
        low = float(activations.min())
        if low >= 0:
            return "nmf", "activations are non-negative: NMF, CRAFT's learner"
        return "semi_nmf", (
            f"activations are signed (minimum {low:.3g}): Semi-NMF, which allows signed concepts with "
            "non-negative coefficients (NMF would refuse them)"
        )

    @property
    def dictionary_(self) -> str:
        """The learner fitted: ``dictionary`` when given, else the one picked by the activations' sign."""
        return str(self._fitted("dictionary_"))

    @property
    def dictionary_reason_(self) -> str:
        """Why :attr:`dictionary_` was fitted (``"given"``, or the sign rule's reading)."""
        return str(self._fitted("dictionary_reason_"))

    def _check_logits(self, top: nn.Module, shape: tuple[int, ...], class_id: int) -> None:
        with torch.no_grad():
            logits = top(torch.zeros(1, *shape, device=model_device(self.model)))
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError(f"the model must output (N, n_classes) logits; got {type(logits).__name__}")
        if class_id >= logits.shape[1]:
            raise ValueError(f"class_id must lie in [0, {logits.shape[1] - 1}]; got {class_id}")

    # --- coding new images -----------------------------------------------------------------

    def _coded_batches(self, images: Tensor, desc: str) -> Iterator[_CodedBatch]:
        """Codes and residuals of ``images``, batch by batch, on the model's device."""
        learner = self.learner_
        bottom, _ = self._split()
        device = model_device(self.model)
        batches = iter_batches(images.shape[0], self.batch_size)
        total = -(-images.shape[0] // self.batch_size)
        for rows in progress_bar(batches, enabled=self.progress, total=total, desc=desc, unit="batch"):
            with torch.no_grad():
                output = bottom(images[rows].to(device))
            layout = _layout(output, self.layer, (int(images.shape[2]), int(images.shape[3])))
            batch_rows = layout.rows(output)
            batch, positions, features = batch_rows.shape
            flat = batch_rows.reshape(batch * positions, features)
            codes = learner.transform(flat)
            residual = flat - learner.inverse_transform(codes)
            yield _CodedBatch(
                codes.reshape(batch, positions, -1), residual.reshape(batch, positions, -1), layout
            )

    def transform(self, images: Tensor) -> Tensor:
        """Concept coefficients at every spatial position of the layer, ``(N, h, w, n_concepts)``.

        ``g(x)`` ``(N, p, h, w)`` is read as ``N·h·w`` rows of ``p`` features, each coded
        with ``W`` fixed (the learner's ``transform``: non-negative least squares for NMF).
        Returned on the device of ``images``.
        """
        images = check_images(images, model=self.model)
        parts: list[Tensor] = []
        with eval_mode(self.model):
            for coded in self._coded_batches(images, "CRAFT transform"):
                grid = coded.layout.grid_rows(coded.codes)  # prefix tokens set aside
                codes = grid.reshape(grid.shape[0], coded.layout.height, coded.layout.width, -1)
                parts.append(codes.to(images.device))
        return torch.cat(parts)

    def concept_maps(
        self,
        images: Tensor,
        concepts: int | Sequence[int] | None = None,
        method: str = "coefficients",
    ) -> Tensor:
        """Where each concept is: ``(N, n_concepts, H, W)`` (or ``(N, len(concepts), H, W)``).

        Two maps, both upsampled bilinearly from the layer's ``h × w`` grid to the input:

        ``method="coefficients"`` (the cheap map)
            The concept's coefficient ``u_i(a_xy)`` at every position ``xy`` of the layer
            (:meth:`transform`): one pass of ``g`` and the coding, exactly what the
            dictionary sees, non-negative for NMF.
        ``method="gradcam"`` (CRAFT's Concept Attribution Map)
            Grad-CAM (Selvaraju et al., 2017) with the concept as the output explained. The
            score is the concept's mean coefficient over the image,
            ``s_i = (1/hw) Σ_xy u_i(a_xy)``; its gradient with respect to the activations
            comes from differentiating the coding implicitly (for NMF, the non-negative
            least-squares solution on its active set ``S``:
            ``∂u_S/∂a = (W_S W_Sᵀ)⁻¹ W_S``, see the learner's ``differentiable_transform``),
            as in the CRAFT paper (Fel et al., CVPR 2023, "implicit differentiation to
            unlock Concept Attribution Maps"). Then, Grad-CAM's rule at the layer:
            ``α_k = (1/hw) Σ_xy ∂s_i/∂a_{k,xy}`` and
            ``map_i = ReLU(Σ_k α_k a_k)``. No pass through the network is differentiated:
            the gradient stops at the split layer, where the concepts live. The map shows
            where the activation pattern that raises concept ``i`` lies, including the
            features that the coding trades off against the other concepts.

        Neither map weighs a concept by its importance for the class: multiply by
        :meth:`importance` for that.

        Examples
        --------
        >>> import torch, torch.nn.functional as F
        >>> from torch import nn
        >>> from spyglass.concepts import Craft
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        ...                     nn.Flatten(), nn.Linear(8, 4))
        >>> images = F.interpolate(torch.rand(4, 3, 4, 4), size=(32, 32))
        >>> craft = Craft(net, n_concepts=3, patch_size=8, progress=False).fit(images, class_id=2)
        >>> craft.concept_maps(images[:1], concepts=[0, 2], method="gradcam").shape
        torch.Size([1, 2, 32, 32])
        """
        if method not in _CONCEPT_MAP_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(map(repr, _CONCEPT_MAP_METHODS))}; got {method!r}"
            )
        chosen = self._concept_indices(concepts)
        images = check_images(images, model=self.model)
        if method == "coefficients":
            grid = self.transform(images)[..., chosen].permute(0, 3, 1, 2)
        else:
            grid = self._gradcam_maps(images, chosen)
        return F.interpolate(grid.float(), size=tuple(images.shape[2:]), mode="bilinear", align_corners=False)

    def _gradcam_maps(self, images: Tensor, chosen: list[int]) -> Tensor:
        """CRAFT's concept attribution maps on the layer's grid, ``(N, len(chosen), h, w)``."""
        learner = self.learner_
        bottom, _ = self._split()
        device = model_device(self.model)
        parts: list[Tensor] = []
        batches = iter_batches(images.shape[0], self.batch_size)
        total = -(-images.shape[0] // self.batch_size)
        with eval_mode(self.model):
            for rows in progress_bar(
                batches, enabled=self.progress, total=total, desc="CRAFT concept maps", unit="batch"
            ):
                with torch.no_grad():
                    output = bottom(images[rows].to(device))
                layout = _layout(output, self.layer, (int(images.shape[2]), int(images.shape[3])))
                maps = layout.to_grid(output)
                batch, _, height, width = maps.shape
                flat = layout.grid_rows(layout.rows(output)).reshape(batch * height * width, -1)
                flat = flat.detach().requires_grad_(True)
                with torch.enable_grad():
                    # (batch, positions, r): the mean over the grid is each image's score s_i.
                    scores = learner.differentiable_transform(flat).reshape(batch, height * width, -1).mean(1)
                    cams = []
                    for k, concept in enumerate(chosen):
                        (gradient,) = torch.autograd.grad(
                            scores[:, concept].sum(), flat, retain_graph=k < len(chosen) - 1
                        )
                        alphas = gradient.reshape(batch, height * width, -1).mean(1)  # (batch, p)
                        cams.append(torch.relu(torch.einsum("bp,bphw->bhw", alphas, maps)))
                parts.append(torch.stack(cams, dim=1).detach().to(images.device))
        return torch.cat(parts)

    def _concept_indices(self, concepts: int | Sequence[int] | None) -> list[int]:
        self.learner_  # noqa: B018 - raises NotFittedError before fit
        if concepts is None:
            return list(range(self.n_concepts))
        chosen = [concepts] if isinstance(concepts, (int, np.integer)) else list(concepts)
        for concept in chosen:
            check_int(concept, "concepts", 0, maximum=self.n_concepts - 1, hint="concept indices")
        if not chosen:
            raise ValueError("concepts must name at least one concept")
        return [int(c) for c in chosen]

    # --- importance ------------------------------------------------------------------------

    def importance(
        self,
        images: Tensor,
        method: str = "sobol",
        *,
        per_image: bool = False,
        nb_design: int = 32,
        estimator: str = "jansen",
        sampler: str = "sobol",
        steps: int = 16,
        nb_samples: int = 512,
        keep_probability: float = 0.5,
        seed: int | None = None,
    ) -> Tensor:
        """How much each concept drives the class score on ``images``.

        Every method explains ``s(U) = objective(h, Ψ(U) + E, class_id_)`` as a function of
        the per-position coefficients ``U``, with the reconstruction residual ``E = A − Ψ(U)``
        kept fixed so that the unperturbed point is the model's own score (see
        :mod:`spyglass.concepts._importance` for the formulas and why).

        Parameters
        ----------
        images
            ``(N, 3, H, W)`` in ``[0, 1]``; typically photos of the class.
        method
            ``"sobol"`` (CRAFT: total-order Sobol' indices of masks over concepts, the same
            mask at every position; ``nb_design · (r + 2)`` evaluations of ``h`` per image),
            ``"gradient_input"`` (exact for a decomposition at the last layer, Fel et al.
            2023), ``"saliency"``, ``"integrated_gradients"``, ``"occlusion"`` or ``"rise"``
            (``nb_samples`` random binary masks over concepts). These are the attribution
            methods of the holistic paper's comparison; the pixel-space registry's other
            methods (Grad-CAM, guided backprop, HSIC, ...) assume image inputs and have no
            concept-space form here.
        per_image
            Return ``(N, n_concepts)``, one importance vector per image, instead of their mean.
        nb_design, estimator, sampler
            The Sobol' design and estimator (see :func:`~spyglass.sampling.sobol_total_indices`).
            32 is the papers' default. The design pairs the columns of ``B`` with those of ``A``
            so that they do not correlate (:func:`~spyglass.sampling.sensitivity_design`,
            ``pairing="matched"``): in the textbook pairing some concepts' columns correlate
            at ``|r|`` up to 0.85 (concept 4 of 10 at 32 points; at 50 concepts, 0.85 at 32 and
            64 points and 0.4 at 128), which biases that concept's index whatever the seed; matched, every
            ``|r|`` stays under 0.19 from 16 points on, and a
            :class:`~spyglass.sampling.CorrelatedDesignWarning` says when it does not.
        steps
            Points of the Integrated Gradients path (≥ 2), integrated with the trapezoidal
            rule as pixel-space :class:`~spyglass.attributions.IntegratedGradients` does.
        nb_samples
            RISE's masks (one evaluation of ``h`` each, per image).
        keep_probability
            RISE's probability that a concept is kept by a mask, in ``(0, 1]``, as in
            pixel-space :class:`~spyglass.attributions.RISE`.
        seed
            Seed of the Sobol' design and of RISE's masks; default the Craft's ``seed``.

        Returns
        -------
        Tensor
            ``float32`` ``(n_concepts,)`` (the mean over images), or ``(N, n_concepts)``, on the CPU.
        """
        if not isinstance(method, str) or method not in IMPORTANCE_METHODS:
            raise ValueError(
                f"method must be one of {', '.join(map(repr, IMPORTANCE_METHODS))} (concept-space "
                f"attribution); got {method!r}"
            )
        sampler = check_sampler(sampler)
        options: dict[str, float | int | str] = {
            "nb_design": check_design_size(sampler, nb_design),
            "estimator": check_estimator(estimator),
            "sampler": sampler,
            "steps": check_int(steps, "steps", 2, hint="points of the trapezoidal rule"),
            "nb_samples": check_int(nb_samples, "nb_samples", 1),
            "keep_probability": check_float(
                keep_probability, "keep_probability", minimum=0, maximum=1, low_open=True
            ),
            "seed": self.seed if seed is None else check_seed(seed),
        }
        images = check_images(images, model=self.model)
        parts: list[Tensor] = []
        with eval_mode(self.model):
            for space in self._concept_spaces(images, f"CRAFT importance ({method})"):
                parts.append(space.run(method, options, self.batch_size))
        scores = torch.cat(parts).to(torch.float32)
        return scores if per_image else scores.mean(dim=0)

    def _concept_spaces(self, images: Tensor, desc: str) -> Iterator[ConceptSpace]:
        """``images`` (checked) batch by batch as :class:`ConceptSpace` s of the fitted class.

        The caller holds :func:`~spyglass.engines.state.eval_mode` on the model while it
        iterates; :meth:`importance` and :mod:`spyglass.concepts.fidelity` share this.
        """
        learner = self.learner_
        _, top = self._split()
        for coded in self._coded_batches(images, desc):
            yield ConceptSpace(
                top, learner, self.objective, coded.codes, coded.residual, coded.layout, self.class_id_
            )

    # --- recursion -------------------------------------------------------------------------

    def decompose(
        self,
        concept: int,
        layer: str | None = None,
        n_concepts: int | None = None,
        *,
        percentile: float = _DECOMPOSE_PERCENTILE,
    ) -> Craft:
        """Sub-concepts of ``concept``: a child :class:`Craft` fitted at an earlier layer.

        The child is fitted on the crops whose coefficient for ``concept`` lies strictly
        above its ``percentile``-th percentile over all crops (CRAFT's recursion; above 0 when
        that percentile is 0), each crop seen whole (one crop per image, resized to the
        input size as before). It shares the model, dictionary, batch size and seed.

        Parameters
        ----------
        concept
            Index of the concept to decompose.
        layer
            The child's layer. Default rule: run the model on the kept crops, list the
            named layers that finish before this one's in the forward pass, and take the
            last that outputs a feature map of higher spatial resolution (an earlier stage
            of the network), with non-negative values on those crops when the dictionary
            needs them (NMF), and at which the model can be split. For
            EfficientNet-Lite0 split at ``bn2`` (7 × 7) that is ``blocks.5.0.bn1``, the
            ReLU6 expansion of the first block of the 14 × 14 stage.
        n_concepts
            The child's number of concepts; default ``min(4, n_concepts)``.
        percentile
            In ``[0, 100)``.

        Raises
        ------
        ValueError
            Unfitted; a bad concept index; fewer kept crops than the child's concepts; no
            earlier layer that fits the rule (pass ``layer=``).
        """
        (chosen,) = self._concept_indices(concept if isinstance(concept, (int, np.integer)) else [concept])
        if (
            isinstance(percentile, bool)
            or not isinstance(percentile, (int, float))
            or not 0 <= percentile < 100
        ):
            raise ValueError(f"percentile must be a number in [0, 100); got {percentile!r}")
        child_concepts = (
            min(4, self.n_concepts) if n_concepts is None else check_int(n_concepts, "n_concepts", 1)
        )
        coefficients = self.crops_u_[:, chosen]
        threshold = float(torch.quantile(coefficients.double(), percentile / 100))
        kept = torch.nonzero(coefficients > threshold).squeeze(1)
        if kept.numel() < max(child_concepts, 2):
            raise ValueError(
                f"too few crops to decompose concept {chosen}: {kept.numel()} of {coefficients.numel()} "
                f"crops have a coefficient above its {percentile:g}th percentile ({threshold:.4g}); the "
                f"child needs at least {max(child_concepts, 2)} (fit on more images, or lower "
                f"percentile= or n_concepts=)"
            )
        crops = self.crops_[kept.to(self.crops_.device)]
        if layer is None:
            layer = self._earlier_layer(crops)
        child = Craft(
            self.model,
            layer=layer,
            n_concepts=child_concepts,
            patch_size=self.patch_size,
            dictionary=self.dictionary,
            input_size=self.input_size_,
            objective=self.objective,
            dictionary_options=self.dictionary_options,
            batch_size=self.batch_size,
            progress=self.progress,
            seed=self.seed,
        )
        child.fit(crops, self.class_id_)
        child.parent_concept_ = chosen
        child.parent_crops_ = kept
        return child

    def _earlier_layer(self, crops: Tensor) -> str:
        """The default layer of :meth:`decompose` (see its docstring for the rule)."""
        # Two crops tell the output shapes, and the sign of a layer after a ReLU is the same on any input.
        outputs = _probe_layers(self.model, resize(crops[:2], self.input_size_))
        names = list(outputs)
        if self.layer not in outputs:
            raise ValueError(f"layer {self.layer!r} did not run on the crops; pass layer= to decompose")
        shape, _ = outputs[self.layer]
        needs_nonnegative = (
            self.dictionary is not None
            and create_learner(self.dictionary, 1, **self.dictionary_options).requires_nonnegative
        )
        rejected: list[str] = []
        for name in reversed(names[: names.index(self.layer)]):
            candidate, low = outputs[name]
            if not is_feature_map(candidate) or candidate[1] * candidate[2] <= shape[1] * shape[2]:
                continue
            if needs_nonnegative and low < 0:
                continue
            try:  # the trace settles whether it can be cut; the child's constructor checks h(g(x)) = f(x)
                split(self.model, name, input_size=self.input_size_, check=False)
            except ValueError:
                rejected.append(name)
                continue
            return name
        detail = (
            f" ({len(rejected)} candidate(s) could not be split, e.g. {rejected[0]!r})" if rejected else ""
        )
        sign = " with non-negative activations" if needs_nonnegative else ""
        raise ValueError(
            f"found no layer before {self.layer!r} with a feature map of higher resolution{sign} at which "
            f"the model can be split{detail}; pass layer= to decompose (see spyglass.models.list_layers)"
        )

    def __repr__(self) -> str:
        state = f"fitted on class {self.class_id_}" if self.is_fitted else "not fitted"
        return (
            f"Craft(layer={self.layer!r}, n_concepts={self.n_concepts}, patch_size={self.patch_size}, "
            f"dictionary={self.dictionary!r}) [{state}]"
        )


def _probe_layers(model: nn.Module, images: Tensor) -> dict[str, tuple[tuple[int, ...], float]]:
    """Per named layer, in the order their forward passes finish: output shape per image and minimum."""

    def shape_and_minimum(output: object) -> tuple[tuple[int, ...], float] | None:
        if isinstance(output, Tensor) and output.is_floating_point():
            return tuple(output.shape[1:]), float(output.min())
        return None

    return probe_layers(model, images, summary=shape_and_minimum)
