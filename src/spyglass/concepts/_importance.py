"""Concept importance: attribution methods run in concept space instead of pixel space.

Split the model ``f = h ∘ g`` at the layer of the dictionary. An image's activations
``A = g(x)`` ``(p, h, w)``, read as ``h·w`` rows of ``p`` features, are coded as ``U`` ``(h·w, r)``
(one row of concept coefficients per spatial position) and rebuilt as
``A = Ψ(U) + E``, where ``Ψ`` is the learner's ``inverse_transform`` (``U W``, plus the mean for
PCA/ICA) and ``E = A − Ψ(U)`` the reconstruction residual. Every method below explains the
score ``s(U) = objective(h, Ψ(U) + E, class)`` as a function of ``U``:

- ``"sobol"`` (CRAFT, Fel et al., CVPR 2023): a mask ``m ∈ [0, 1]^r`` over concepts scales
  every position's coefficients, ``U ⊙ m``; the masks are the quasi-Monte Carlo
  pick-freeze design of :func:`~spyglass.sampling.sensitivity_design`, the one pixel Sobol'
  uses (its ``B`` columns paired with ``A``'s so that none correlates, ``pairing="matched"``),
  and the importance of concept ``i`` is its total-order Sobol' index (``nb_design · (r + 2)``
  scores per image).
- ``"occlusion"``: ``s(U) − s(U ⊙ (1 − e_i))``, concept ``i`` removed at every position.
- ``"rise"`` (Petsiuk et al., BMVC 2018, in concept space): ``M`` random binary masks
  ``m ~ Bernoulli(½)^r``, the same at every position, and
  ``φ_i = Σ_k s(U ⊙ m_k) m_{k,i} / Σ_k m_{k,i}``, the mean score when concept ``i`` is kept.
  For an additive ``s`` the differences ``φ_i − φ_j`` converge to those of the concepts'
  contributions.
- ``"gradient_input"``: ``Σ_positions U ⊙ ∂s/∂U``.
- ``"saliency"``: ``Σ_positions |∂s/∂U|``.
- ``"integrated_gradients"``: ``Σ_positions U ⊙ mean_k ∂s/∂U (α_k U)``, ``α_k = (k − ½) / steps``
  (the midpoint rule on the straight path from ``U = 0``).

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

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spyglass.concepts._base import DictionaryLearner
from spyglass.engines.forward import batched_forward
from spyglass.engines.gradients import iter_gradients
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
        ``(h, w)``.
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
        spatial: tuple[int, int],
        target: int,
    ) -> None:
        self.top, self.learner, self.objective = top, learner, objective
        self.codes, self.residual, self.spatial, self.target = codes, residual, spatial, target

    def activations(self, codes: Tensor, residual: Tensor) -> Tensor:
        """``Ψ(U) + E`` as ``(B, p, h, w)`` maps, from ``U`` ``(B, h·w, r)`` and ``E`` ``(B, h·w, p)``."""
        batch, positions, n_concepts = codes.shape
        rows = self.learner.inverse_transform(codes.reshape(batch * positions, n_concepts))
        maps = rows.reshape(batch, positions, -1) + residual
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

    # --- the estimators -------------------------------------------------------------------

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
        """``s(U) − s(U ⊙ (1 − e_i))`` ``(B, r)``."""
        n_concepts = self.codes.shape[2]
        masks = torch.cat([torch.ones(1, n_concepts), 1 - torch.eye(n_concepts)])
        rows = []
        for i in range(self.codes.shape[0]):
            scores = self.masked_scores(i, masks, batch_size)
            rows.append(scores[0] - scores[1:])
        return torch.stack(rows).cpu().to(torch.float32)

    def rise(self, *, nb_samples: int, seed: int, batch_size: int) -> Tensor:
        """``Σ_k s(U ⊙ m_k) m_k / Σ_k m_k`` ``(B, r)`` over ``nb_samples`` Bernoulli(½) masks."""
        n_concepts = self.codes.shape[2]
        generator = torch.Generator().manual_seed(seed)
        masks = (torch.rand(nb_samples, n_concepts, generator=generator) < 0.5).to(torch.float64)
        kept = masks.sum(dim=0).clamp(min=1.0)  # a concept never kept scores 0, not NaN
        rows = []
        for i in range(self.codes.shape[0]):
            scores = self.masked_scores(i, masks, batch_size).to("cpu", torch.float64)
            rows.append(scores @ masks / kept)
        return torch.stack(rows).to(torch.float32)

    def _mean_gradients(self, alphas: Tensor, batch_size: int) -> Tensor:
        """``mean_k ∂s/∂U (α_k U)`` ``(B, h·w, r)``: the gradient averaged along the scaled codes."""
        n_concepts = self.codes.shape[2]
        source = _ScaledCodes(self, alphas)
        head = _ConceptHead(self, n_concepts=n_concepts)
        targets = torch.full((len(source),), self.target, dtype=torch.long)
        total = torch.zeros_like(self.codes)
        for rows, gradient, _ in iter_gradients(
            head, source, targets, objective=self.objective, batch_size=batch_size, progress=False
        ):
            images = torch.arange(rows.start, rows.stop, device=total.device) // alphas.numel()
            total.index_add_(0, images, gradient[:, :, :n_concepts].to(total))
        return total / alphas.numel()

    def gradient_input(self, *, batch_size: int) -> Tensor:
        """``Σ_positions U ⊙ ∂s/∂U`` ``(B, r)``."""
        gradients = self._mean_gradients(torch.ones(1), batch_size)
        return (self.codes * gradients).sum(dim=1).cpu().float()

    def saliency(self, *, batch_size: int) -> Tensor:
        """``Σ_positions |∂s/∂U|`` ``(B, r)``."""
        return self._mean_gradients(torch.ones(1), batch_size).abs().sum(dim=1).cpu().float()

    def integrated_gradients(self, *, steps: int, batch_size: int) -> Tensor:
        """``Σ_positions U ⊙ mean_k ∂s/∂U (α_k U)`` ``(B, r)``, midpoint rule with ``steps`` points."""
        alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
        gradients = self._mean_gradients(alphas, batch_size)
        return (self.codes * gradients).sum(dim=1).cpu().float()

    def run(self, method: str, options: dict[str, int | str], batch_size: int) -> Tensor:
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
                nb_samples=int(options["nb_samples"]), seed=int(options["seed"]), batch_size=batch_size
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


class _ScaledCodes:
    """Row ``k`` is ``[α U | E]`` of image ``k // len(alphas)`` with ``α = alphas[k % len(alphas)]``."""

    def __init__(self, space: ConceptSpace, alphas: Tensor) -> None:
        self.space, self.alphas = space, alphas.to(space.codes)

    def __len__(self) -> int:
        return int(self.space.codes.shape[0] * self.alphas.numel())

    def __getitem__(self, rows: slice) -> Tensor:
        index = torch.arange(rows.start, rows.stop, device=self.alphas.device)
        images, steps = index // self.alphas.numel(), index % self.alphas.numel()
        codes = self.space.codes[images] * self.alphas[steps][:, None, None]
        return torch.cat([codes, self.space.residual[images]], dim=2)


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
