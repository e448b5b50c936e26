"""KernelSHAP (Lundberg & Lee, NeurIPS 2017), for images.

Shapley values of superpixels as the solution of a weighted linear regression under the
Shapley kernel. We write our own rather than call ``shap`` (not a dependency; captum is a
test-only peer): the method is a coalition sampler and a constrained least-squares fit on
top of the shared surrogate core (:mod:`spyglass.attributions._surrogate`) and spyglass's
perturbation engine.

Coalitions follow the ``shap`` package's scheme: coalition sizes are taken in pairs
``(s, M - s)`` from the heaviest (``s = 1``) inwards; a pair whose coalitions the
remaining budget would draw at least once each in expectation is enumerated with exact
kernel weights, and the rest of the budget is sampled from the Shapley kernel
distribution, each coalition with its complement (paired sampling). With ``nb_samples ≥
2^M`` every coalition is enumerated and the result is the exact Shapley value.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from spyglass.attributions._registry import register
from spyglass.attributions._surrogate import SurrogateAttribution, weighted_least_squares

__all__ = ["KernelShap", "shapley_kernel"]


def shapley_kernel(nb_segments: int, size: int) -> float:
    r"""The Shapley kernel :math:`\pi(z) = \frac{M - 1}{\binom{M}{|z|} |z| (M - |z|)}`, ``0 < |z| < M``."""
    return (nb_segments - 1) / (comb(nb_segments, size) * size * (nb_segments - size))


@register("kernel_shap")
class KernelShap(SurrogateAttribution):
    r"""KernelSHAP: Shapley values of superpixels by weighted linear regression.

    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    With ``M`` segments, coalitions :math:`z \in \{0, 1\}^M` and the score :math:`f(z)` of
    the image with the segments outside :math:`z` filled,

    .. math:: \phi = \arg\min_{\phi} \sum_{0 < |z| < M} \pi(z)
              \big(f(z) - f(\mathbf 0) - z^\top \phi\big)^2
              \quad \text{s.t.} \quad \textstyle\sum_j \phi_j = f(\mathbf 1) - f(\mathbf 0),
              \qquad \pi(z) = \frac{M - 1}{\binom{M}{|z|} |z| (M - |z|)}

    whose solution, over all coalitions, is the Shapley value of each segment. Efficiency
    holds exactly: the constraint eliminates the last segment,
    :math:`\phi_M = f(\mathbf 1) - f(\mathbf 0) - \sum_{j<M} \phi_j`, and the remaining
    :math:`M - 1` values solve an unconstrained weighted least-squares problem
    (:math:`f(\mathbf 1)` and :math:`f(\mathbf 0)` are two of the evaluations). Coalitions
    are enumerated by size where the budget allows and sampled otherwise (see the module
    docstring); with ``nb_samples ≥ 2^M`` the values are exact. A pixel's value is its
    segment's Shapley value.

    Cost: ``min(nb_samples, 2^M)`` forward passes per image, plus one SLIC segmentation.

    Parameters
    ----------
    segmentation
        ``"slic"`` (scikit-image SLIC superpixels, ``n_segments``), ``"grid"``
        (``grid_size × grid_size`` cells) or a callable ``image (3, H, W) -> (H, W)``
        integer labels.
    n_segments
        Approximate number of SLIC superpixels.
    grid_size
        Cells per side for ``"grid"``.
    nb_samples
        Coalitions per image, the full and empty ones included (default 1,000, LIME's
        budget, so the two compare at equal cost; ``shap`` uses ``2M + 2048``).
    value
        What a removed segment becomes: a float or 3 floats in [0, 1]; default the model's
        normalisation mean (a zero input to the network), or 0.5 for a plain module.
    seed
        Seeds the sampled coalitions; the same seed gives the same maps at any ``batch_size``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> shap = attributions.KernelShap(models.load(), segmentation="grid", grid_size=4, nb_samples=64)
    >>> maps = shap(torch.rand(1, 3, 224, 224), 967)
    >>> maps.shape
    torch.Size([1, 224, 224])
    """

    def coalitions(self, nb_segments: int) -> tuple[Tensor, Tensor]:
        """Rows 0 and 1 are the full and empty coalitions (weight 0: they enter through the constraint)."""
        m = nb_segments
        rows: list[NDArray[np.float64]] = [np.ones(m), np.zeros(m)]
        weights: list[float] = [0.0, 0.0]
        left = self.nb_samples - 2
        size_weight = {s: (m - 1) / (s * (m - s)) for s in range(1, m)}  # mass of all coalitions of size s
        remaining = sorted(size_weight)
        remaining_weight = sum(size_weight.values())
        for small in range(1, m // 2 + 1):
            pair = sorted({small, m - small})
            count = sum(comb(m, s) for s in pair)
            pair_weight = sum(size_weight[s] for s in pair)
            # Enumerate the pair if the budget left would draw each of its coalitions once on average.
            if count > left or left * pair_weight < count * remaining_weight * (1 - 1e-9):
                break
            for s in pair:
                for members in combinations(range(m), s):
                    row = np.zeros(m)
                    row[list(members)] = 1
                    rows.append(row)
                    weights.append(shapley_kernel(m, s))
            left -= count
            remaining_weight -= pair_weight
            remaining = [s for s in remaining if s not in pair]
        if remaining and left > 0:
            sampled = self._paired_sample(m, remaining, [size_weight[s] for s in remaining], left)
            rows.extend(sampled)
            weights.extend([remaining_weight / left] * left)
        return torch.from_numpy(np.stack(rows).astype(np.float32)), torch.tensor(weights, dtype=torch.float64)

    def _paired_sample(
        self, m: int, sizes: list[int], size_weights: list[float], count: int
    ) -> NDArray[np.float64]:
        """``count`` coalitions: sizes ∝ ``size_weights``, members uniform, each then its complement."""
        generator = np.random.default_rng(self.seed)
        half = -(-count // 2)
        probabilities = np.asarray(size_weights) / np.sum(size_weights)
        drawn = generator.choice(np.asarray(sizes), size=half, p=probabilities)
        ranks = generator.random((half, m)).argsort(1).argsort(1)  # a uniform random order of the segments
        kept = (ranks < drawn[:, None]).astype(np.float64)
        paired = np.stack([kept, 1 - kept], axis=1).reshape(2 * half, m)
        return paired[:count]

    def fit(self, coalitions: Tensor, weights: Tensor, scores: Tensor) -> Tensor:
        full, empty = scores[0], scores[1]
        gap = full - empty
        if coalitions.shape[1] == 1:
            return gap.reshape(1)
        kept, weights, scores = coalitions[2:], weights[2:], scores[2:]
        last = kept[:, -1]
        # Substitute φ_M = gap − Σ_{j<M} φ_j: f(z) − f(0) − z_M·gap = Σ_{j<M} (z_j − z_M) φ_j.
        others, _ = weighted_least_squares(kept[:, :-1] - last[:, None], scores - empty - last * gap, weights)
        return torch.cat([others, (gap - others.sum()).reshape(1)])
