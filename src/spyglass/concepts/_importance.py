"""Concept importance: attribution methods run in concept space instead of pixel space.

Split the model ``f = h ∘ g`` at the layer of the dictionary. An image's activations
``A = g(x)`` ``(p, h, w)``, read as ``h·w`` rows of ``p`` features, are coded as ``U`` ``(h·w, r)``
(one row of concept coefficients per spatial position) and rebuilt as
``A = Ψ(U) + E``, where ``Ψ`` is the learner's ``inverse_transform`` (``U W``, plus the mean for
PCA/ICA) and ``E = A − Ψ(U)`` the reconstruction residual. Every method below explains the
score ``s(U) = objective(h, Ψ(U) + E, class)`` as a function of ``U``.

Each method is its pixel-space namesake's rule, the same function applied to ``U`` instead
of pixels (:mod:`spyglass.attributions`: the rule is public beside each method), so that an
option of a rule means the same in both spaces:

- ``"sobol"`` (CRAFT, Fel et al., CVPR 2023): a mask ``m ∈ [0, 1]^r`` over concepts scales
  every position's coefficients, ``U ⊙ m``; the masks are the quasi-Monte Carlo
  pick-freeze design of :func:`~spyglass.sampling.sensitivity_design`, the one pixel Sobol'
  uses (its ``B`` columns paired with ``A``'s so that none correlates, ``pairing="matched"``),
  and the importance of concept ``i`` is its total-order Sobol' index (``nb_design · (r + 2)``
  scores per image), :func:`~spyglass.sampling.total_order_indices` as pixel Sobol' calls them.
- ``"occlusion"``: :func:`~spyglass.attributions.occlusion.occlusion_drops`,
  ``s(U) − s(U ⊙ (1 − e_i))``, concept ``i`` removed at every position.
- ``"rise"`` (Petsiuk et al., BMVC 2018, in concept space): ``N`` random binary masks
  ``m ~ Bernoulli(q)^r`` (:func:`~spyglass.attributions.rise.rise_masks`, ``q =
  keep_probability``, pixel RISE's ``p``), the same at every position, and
  ``φ_i = Σ_k s(U ⊙ m_k) m_{k,i} / (N q)`` (:func:`~spyglass.attributions.rise.rise_average`),
  whose expectation is ``E[s | m_i = 1]``. For an additive ``s(U ⊙ m) = Σ_j m_j c_j + s(0)``
  that is ``c_i + q Σ_{j≠i} c_j + s(0)``, so ``φ_i − φ_j → (1 − q)(c_i − c_j)``.
- ``"gradient_input"``: :func:`~spyglass.attributions.gradient_input.gradient_times_input`,
  ``Σ_positions U ⊙ ∂s/∂U``.
- ``"saliency"``: :func:`~spyglass.attributions.saliency.absolute_gradient`,
  ``Σ_positions |∂s/∂U|`` (pixel space takes the largest over a pixel's channels instead).
- ``"integrated_gradients"``: :class:`~spyglass.attributions.integrated_gradients.StraightPath`
  from ``U = 0``, ``Σ_positions U ⊙ Σ_k w_k ∂s/∂U (α_k U)`` with the trapezoidal rule's
  ``α_k = k / (steps − 1)`` and weights (:func:`~spyglass.attributions.integrated_gradients.trapezoid_rule`).

Changes from the copies these replaced (measured on the test suite's tiny model, 3 images):
concept-space Integrated Gradients used the midpoint rule ``α_k = (k − ½) / steps``; on an affine
top both rules are exact and the values move by float rounding only (< 1e-7), but through a
non-affine top (SemiNMF at a signed layer, then ReLU) they move by up to 0.020 at
``steps=4`` and 0.0047 at ``steps=16``, on importances of about 0.16: the trapezoid's error
against a 2049-point integral is 0.017 (midpoint: 0.0046) at 4 steps and 0.0024 (0.0023)
at 16. ``steps`` must now be at least 2. Concept RISE divided each concept's sum by the
number of masks that kept it, where pixel RISE divides by ``N q``: each value is now scaled by
``(drawn count) / (N q)``, a change of up to 0.006 on values of about 0.29 at ``N = 512``;
the masks drawn for a seed are unchanged at ``q = ½``.

Why the residual is kept. The holistic framework (Fel et al., NeurIPS 2023) writes the
score as a function of the concept coefficients, which is exact only when ``A = Ψ(U)``;
a dictionary of ``r`` concepts rebuilds a real layer only approximately. Keeping ``E``
fixed makes ``s(U)`` equal the model's own score at the unmasked point (``m = 1``), so the
concepts are credited with changes of the model's actual output and not of a
reconstruction of it; what the dictionary misses stays in every evaluation and is
credited to no concept. With it, Gradient×Input is complete for a decomposition at the
last layer (``h`` affine in ``A``): ``Σ_i GxI_i = s(U) − s(0)``, exactly (Fel et al., 2023,
the optimality of Gradient×Input at the last layer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from spyglass.attributions.gradient_input import gradient_times_input
from spyglass.attributions.integrated_gradients import StraightPath
from spyglass.attributions.occlusion import occlusion_drops
from spyglass.attributions.rise import rise_average, rise_masks
from spyglass.attributions.saliency import absolute_gradient
from spyglass.concepts._base import DictionaryLearner
from spyglass.engines.forward import batched_forward
from spyglass.engines.gradients import iter_gradients
from spyglass.models.feature_maps import FeatureLayout
from spyglass.objectives import Objective
from spyglass.sampling import sensitivity_design, total_order_indices

__all__ = ["IMPORTANCE_METHODS", "ConceptSpace"]

IMPORTANCE_METHODS: tuple[str, ...] = (
    "sobol",
    "gradient_input",
    "saliency",
    "integrated_gradients",
    "occlusion",
    "rise",
)
"""Names accepted by :meth:`spyglass.concepts.Craft.importance`."""


class ConceptSpace:
    """The top of the model seen as a function of concept coefficients, for one batch of images.

    Parameters
    ----------
    top
        ``h``: activations ``(B, p, h, w)`` → logits.
    learner
        The fitted dictionary (``Ψ`` is its ``inverse_transform``).
    objective
        What is explained, ``(h, activations, targets) -> (B,)``.
    codes, residual
        ``U`` ``(B, h·w, r)`` and ``E`` ``(B, h·w, p)`` of the images, on the model's device.
    spatial
        ``(h, w)`` of ``(B, p, h, w)`` maps, or the layer's :class:`~spyglass.models.FeatureLayout`.
    target
        The class explained.
    """

    def __init__(
        self,
        top: nn.Module,
        learner: DictionaryLearner,
        objective: Objective,
        codes: Tensor,
        residual: Tensor,
        spatial: tuple[int, int] | FeatureLayout,
        target: int,
    ) -> None:
        self.top, self.learner, self.objective = top, learner, objective
        self.codes, self.residual, self.spatial, self.target = codes, residual, spatial, target

    def activations(self, codes: Tensor, residual: Tensor) -> Tensor:
        """``Ψ(U) + E`` as the layer's tensor, from ``U`` ``(B, n, r)`` and ``E`` ``(B, n, p)`` (n positions).

        ``spatial`` ``(h, w)`` gives ``(B, p, h, w)`` maps; a
        :class:`~spyglass.models.FeatureLayout` gives the layer's layout (ViT tokens, the
        prefix tokens among the positions; channels-last grids).
        """
        batch, positions, n_concepts = codes.shape
        rows = self.learner.inverse_transform(codes.reshape(batch * positions, n_concepts))
        maps = rows.reshape(batch, positions, -1) + residual
        if isinstance(self.spatial, FeatureLayout):
            return self.spatial.from_rows(maps)
        return maps.reshape(batch, *self.spatial, -1).permute(0, 3, 1, 2)

    def _score(self, model: nn.Module, activations: Tensor, _rows: slice) -> Tensor:
        targets = torch.full(
            (activations.shape[0],), self.target, dtype=torch.long, device=activations.device
        )
        return self.objective(model, activations, targets)

    def masked_scores(self, image: int, masks: Tensor, batch_size: int) -> Tensor:
        """Scores ``(M,)`` of image ``image`` with its coefficients scaled by each mask ``(M, r)``."""
        source = _MaskedActivations(self, image, masks.to(self.codes))
        return batched_forward(self.top, source, batch_size=batch_size, progress=False, fn=self._score)

    # --- the estimators: each applies its pixel method's rule to U ------------------------

    def sobol(self, *, nb_design: int, estimator: str, sampler: str, seed: int, batch_size: int) -> Tensor:
        """Total-order Sobol' indices ``(B, r)`` of the concepts, image by image."""
        n_concepts = self.codes.shape[2]
        design = sensitivity_design(n_concepts, nb_design, sampler, seed)
        indices = [
            total_order_indices(self.masked_scores(i, design, batch_size), n_concepts, nb_design, estimator)
            for i in range(self.codes.shape[0])
        ]
        return torch.stack(indices).cpu()

    def occlusion(self, *, batch_size: int) -> Tensor:
        """``s(U) − s(U ⊙ (1 − e_i))`` ``(B, r)``.

        Pixel occlusion's rule, :func:`~spyglass.attributions.occlusion.occlusion_drops`.
        """
        n_concepts = self.codes.shape[2]
        masks = torch.cat([1 - torch.eye(n_concepts), torch.ones(1, n_concepts)])  # intact last
        scores = [self.masked_scores(i, masks, batch_size) for i in range(self.codes.shape[0])]
        return occlusion_drops(torch.stack(scores).to("cpu", torch.float64)).to(torch.float32)

    def rise(self, *, nb_samples: int, keep_probability: float, seed: int, batch_size: int) -> Tensor:
        """:func:`~spyglass.attributions.rise.rise_average` over ``nb_samples`` masks ``(B, r)``."""
        n_concepts = self.codes.shape[2]
        generator = torch.Generator().manual_seed(seed)
        masks = rise_masks(nb_samples, (n_concepts,), keep_probability, generator).to(torch.float64)
        scores = [
            self.masked_scores(i, masks, batch_size).to("cpu", torch.float64)
            for i in range(self.codes.shape[0])
        ]
        return rise_average([(torch.stack(scores), masks)], nb_samples, keep_probability).to(torch.float32)

    def _gradients(
        self, source: _CodesAndResidual | _PathAndResidual, batch_size: int
    ) -> Iterator[tuple[slice, Tensor]]:
        """``(rows, ∂s/∂U)`` batch by batch at the rows of ``source`` (``[U' | E]`` of each image)."""
        n_concepts = self.codes.shape[2]
        head = _ConceptHead(self, n_concepts=n_concepts)
        targets = torch.full((len(source),), self.target, dtype=torch.long)
        for rows, gradient, _ in iter_gradients(
            head, source, targets, objective=self.objective, batch_size=batch_size, progress=False
        ):
            yield rows, gradient[:, :, :n_concepts].to(self.codes)

    def _gradient_at_codes(self, batch_size: int) -> Tensor:
        """``∂s/∂U`` ``(B, h·w, r)`` at the images' own codes."""
        gradients = torch.zeros_like(self.codes)
        for rows, gradient in self._gradients(_CodesAndResidual(self), batch_size):
            gradients[rows] = gradient
        return gradients

    def gradient_input(self, *, batch_size: int) -> Tensor:
        """:func:`~spyglass.attributions.gradient_input.gradient_times_input` over positions ``(B, r)``."""
        gradients = self._gradient_at_codes(batch_size)
        return gradient_times_input(gradients, self.codes, dim=1).cpu().float()

    def saliency(self, *, batch_size: int) -> Tensor:
        """:func:`~spyglass.attributions.saliency.absolute_gradient`, summed over positions ``(B, r)``."""
        return absolute_gradient(self._gradient_at_codes(batch_size), dim=1, pool="sum").cpu().float()

    def integrated_gradients(self, *, steps: int, batch_size: int) -> Tensor:
        """:class:`~spyglass.attributions.integrated_gradients.StraightPath` from ``U = 0`` ``(B, r)``."""
        path = StraightPath(self.codes, torch.zeros_like(self.codes), steps)
        integral = torch.zeros_like(self.codes)
        for rows, gradient in self._gradients(_PathAndResidual(self, path), batch_size):
            path.accumulate(integral, rows, gradient)
        return path.attributions(integral, dim=1).cpu().float()

    def run(self, method: str, options: Mapping[str, float | int | str], batch_size: int) -> Tensor:
        """Dispatch to the estimator named ``method`` (one of :data:`IMPORTANCE_METHODS`)."""
        estimators: dict[str, Callable[[], Tensor]] = {
            "sobol": lambda: self.sobol(
                nb_design=int(options["nb_design"]),
                estimator=str(options["estimator"]),
                sampler=str(options["sampler"]),
                seed=int(options["seed"]),
                batch_size=batch_size,
            ),
            "occlusion": lambda: self.occlusion(batch_size=batch_size),
            "rise": lambda: self.rise(
                nb_samples=int(options["nb_samples"]),
                keep_probability=float(options["keep_probability"]),
                seed=int(options["seed"]),
                batch_size=batch_size,
            ),
            "gradient_input": lambda: self.gradient_input(batch_size=batch_size),
            "saliency": lambda: self.saliency(batch_size=batch_size),
            "integrated_gradients": lambda: self.integrated_gradients(
                steps=int(options["steps"]), batch_size=batch_size
            ),
        }
        return estimators[method]()


class _MaskedActivations:
    """Row ``k`` is image ``image``'s activations rebuilt from ``U ⊙ masks[k]`` (plus its residual)."""

    def __init__(self, space: ConceptSpace, image: int, masks: Tensor) -> None:
        self.space, self.image, self.masks = space, image, masks

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        masks = self.masks[rows]
        codes = self.space.codes[self.image][None] * masks[:, None, :]
        residual = self.space.residual[self.image][None].expand(masks.shape[0], -1, -1)
        return self.space.activations(codes, residual)


class _CodesAndResidual:
    """Row ``k`` is ``[U | E]`` of image ``k``: the gradient engine's one input tensor."""

    def __init__(self, space: ConceptSpace) -> None:
        self.space = space

    def __len__(self) -> int:
        return int(self.space.codes.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        return torch.cat([self.space.codes[rows], self.space.residual[rows]], dim=2)


class _PathAndResidual:
    """Row ``k`` is ``[path[k] | E]``: a point of the Integrated Gradients path and its image's residual."""

    def __init__(self, space: ConceptSpace, path: StraightPath) -> None:
        self.space, self.path = space, path

    def __len__(self) -> int:
        return len(self.path)

    def __getitem__(self, rows: slice) -> Tensor:
        return torch.cat([self.path[rows], self.space.residual[self.path.sources(rows)]], dim=2)


class _ConceptHead(nn.Module):
    """``[U | E]`` ``(B, h·w, r + p)`` → logits ``h(Ψ(U) + E)``: the gradient engine's input is one tensor."""

    def __init__(self, space: ConceptSpace, n_concepts: int) -> None:
        super().__init__()
        self.top = space.top
        self.space = space
        self.n_concepts = n_concepts

    def forward(self, stacked: Tensor) -> Tensor:
        codes, residual = stacked[:, :, : self.n_concepts], stacked[:, :, self.n_concepts :]
        output: Tensor = self.top(self.space.activations(codes, residual))
        return output
