"""LIME (Ribeiro, Singh & Guestrin, KDD 2016), for images.

A weighted ridge regression of the model's score on which superpixels are kept, fitted
on random coalitions near the full image. We write our own rather than call the ``lime``
package (numpy, one image at a time, not a dependency; captum is a test-only peer): the
method is a sampler, a kernel and a ridge fit on top of the shared surrogate core
(:mod:`spyglass.attributions._surrogate`) and spyglass's perturbation engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from spyglass.attributions._registry import register
from spyglass.attributions._surrogate import Segmentation, SurrogateAttribution, weighted_least_squares
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_positive_float

__all__ = ["Lime"]


@register("lime")
class Lime(SurrogateAttribution):
    r"""LIME: the coefficients of a local linear surrogate over superpixels.

    Ribeiro, Singh & Guestrin, "'Why Should I Trust You?': Explaining the Predictions of
    Any Classifier", KDD 2016. With ``M`` segments, coalitions :math:`z \in \{0, 1\}^M`
    (each segment kept with probability ½; the first coalition keeps all) and the score
    :math:`f(z)` of the image with the other segments filled,

    .. math:: \phi = \arg\min_{\phi, b} \sum_z \pi(z) \big(f(z) - b - z^\top \phi\big)^2
              + \alpha \lVert \phi \rVert^2, \quad
              \pi(z) = \exp\!\Big(-\frac{d(z, \mathbf 1)^2}{2 w^2}\Big)

    with :math:`d` the cosine distance, :math:`1 - \sqrt{|z| / M}`, and :math:`w` the kernel
    width (the ``lime`` package's image kernel and defaults: :math:`w = 0.25`, ridge
    :math:`\alpha = 1` with an unpenalised intercept). A pixel's value is its segment's
    coefficient.

    Cost: ``nb_samples`` forward passes per image, plus one SLIC segmentation.

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
        Coalitions per image (the ``lime`` package's default, 1,000).
    kernel_width
        :math:`w` of the exponential kernel on the cosine distance.
    alpha
        Ridge penalty; 0 is ordinary weighted least squares.
    value
        What a removed segment becomes: a float or 3 floats in [0, 1]; default the model's
        normalisation mean (a zero input to the network), or 0.5 for a plain module.
    seed
        Seeds the coalitions; the same seed gives the same maps at any ``batch_size``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> lime = attributions.Lime(models.load(), nb_samples=64)
    >>> lime(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        segmentation: str | Segmentation = "slic",
        n_segments: int = 50,
        grid_size: int = 8,
        nb_samples: int = 1000,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        value: float | Sequence[float] | Tensor | None = None,
        seed: int = 0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(
            model,
            segmentation=segmentation,
            n_segments=n_segments,
            grid_size=grid_size,
            nb_samples=nb_samples,
            value=value,
            seed=seed,
            objective=objective,
            batch_size=batch_size,
            progress=progress,
        )
        self.kernel_width = check_positive_float(
            kernel_width, "kernel_width", hint="of the exponential kernel on the removed share"
        )
        self.alpha = check_positive_float(alpha, "alpha", allow_zero=True, hint="the ridge penalty")

    def coalitions(self, nb_segments: int) -> tuple[Tensor, Tensor]:
        generator = np.random.default_rng(self.seed)
        kept = generator.integers(0, 2, size=(self.nb_samples, nb_segments))
        kept[0] = 1  # the image itself anchors the local fit, as in the lime package
        distance = 1 - np.sqrt(kept.sum(1) / nb_segments)  # cosine distance to all-ones (1 when empty)
        weights = np.exp(-(distance**2) / (2 * self.kernel_width**2))
        return torch.from_numpy(kept.astype(np.float32)), torch.from_numpy(weights)

    def fit(self, coalitions: Tensor, weights: Tensor, scores: Tensor) -> Tensor:
        coefficients, _ = weighted_least_squares(
            coalitions, scores, weights, alpha=self.alpha, intercept=True
        )
        return coefficients
