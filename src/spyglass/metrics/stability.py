"""Stability of attribution maps under input noise: AverageStability (Bhatt et al. 2020).

How far a map moves when the image moves a little. Stability under retraining (MeGe and
ReCo) is :mod:`spyglass.metrics.algorithmic_stability`.

Why our own: it is short once the engines exist, works with any spyglass method (built
by name or by a factory), and flat maps (whose correlation is undefined) are counted and
dropped explicitly instead of silently turning a mean into NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spyglass.metrics._base import MethodMetric, MethodSpec, check_maps, register
from spyglass.metrics._stats import pearson_rows
from spyglass.progress import progress_bar
from spyglass.validation import check_float, check_int, check_measured, check_seed

__all__ = ["AverageStability"]


@register("stability")
class AverageStability(MethodMetric):
    r"""AverageStability: how much a map moves under small input noise (lower is better).

    Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
    IJCAI 2020 (their average sensitivity). For each image ``x``, ``nb_samples`` noisy
    copies :math:`x + \delta`, :math:`\delta \sim \mathcal U[-r, r]` per pixel and channel
    (clipped to [0, 1]), are explained, and

    .. math:: \mathrm{AS}(x) = \mathbb E_\delta\, d\big(\phi(x), \phi(x + \delta)\big),
              \qquad d(a, b) = \big\lVert z(a) - z(b) \big\rVert_2 / \sqrt{HW}
              = \sqrt{2\,(1 - \rho(a, b))}

    with :math:`z` the map standardised to mean 0 and variance 1 and :math:`\rho` the
    Pearson correlation. The distance is our choice (the paper leaves it open): methods
    give maps in different units (logits, Sobol indices, RISE's mean score), and a raw
    :math:`L_2` distance would rank them by scale; this one is scale- and offset-free and
    lies in [0, 2]. A flat map (no ranking at all) has no standardisation: its distances
    are NaN and are left out of the means (see :meth:`distances` to count them).

    Cost: ``nb_samples`` calls of the method on all images.

    Parameters
    ----------
    model
        The classifier the method explains.
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices.
    radius
        ``r``, the half-width of the uniform noise, in pixel units ([0, 1] images).
    nb_samples
        Noisy copies of each image.
    seed
        Seeds the noise.
    batch_size, progress
        The batch size of a method given by name; a progress bar over the noise samples.

    Calling the metric on a method (a registered name or a factory ``model -> explainer``)
    returns the mean distance over images and noise samples, NaN distances left out.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> model = models.load()
    >>> images = torch.rand(2, 3, 224, 224)
    >>> stability = metrics.AverageStability(model, images, 1, nb_samples=3)
    >>> 0.0 <= stability("saliency") <= 2.0
    True
    >>> 0.0 <= stability(attributions.Saliency) <= 2.0        # a class is a factory model -> method
    True
    """

    higher_is_better = False
    reuses_maps = True

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        radius: float = 0.1,
        nb_samples: int = 20,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, images, targets, batch_size=batch_size, progress=progress)
        check_float(radius, "radius", minimum=0, maximum=1, low_open=True, hint="pixel units")
        self.radius = float(radius)
        self.nb_samples = check_int(nb_samples, "nb_samples", 1)
        self.seed = check_seed(seed)

    def distances(self, method: MethodSpec, *, maps: Tensor | None = None) -> Tensor:
        """``(N, nb_samples)`` distances ``d(φ(x), φ(x + δ))``, float64, NaN where a map is flat.

        ``maps`` are the method's maps of the clean images when already computed.
        """
        explain = self.explainer(method)
        reference = explain(self.images, self.targets) if maps is None else maps
        reference = check_maps(reference, self.images).flatten(1)
        generator = torch.Generator().manual_seed(self.seed)
        columns = []
        for _ in progress_bar(range(self.nb_samples), enabled=self.progress, desc="stability"):
            noise = torch.rand(self.images.shape, generator=generator).to(self.images.device)
            noisy = (self.images + (2 * noise - 1) * self.radius).clamp_(0.0, 1.0)
            moved = check_maps(explain(noisy, self.targets), self.images).flatten(1)
            correlation = pearson_rows(reference, moved)
            columns.append((2 * (1 - correlation)).clamp_min(0).sqrt())
        return torch.stack(columns, dim=1).cpu()

    def scores(self, method: MethodSpec, *, maps: Tensor | None = None) -> Tensor:
        """``(N,)`` float32: each image's mean distance (NaN if all its maps are flat)."""
        return self.distances(method, maps=maps).nanmean(dim=1).to(torch.float32)

    def __call__(self, method: MethodSpec, *, maps: Tensor | None = None) -> float:
        """The mean distance over images and noise samples, NaN distances left out."""
        return check_measured(
            self.distances(method, maps=maps),
            "AverageStability",
            "every map is flat (constant), so no correlation between maps is defined",
        )

    def __repr__(self) -> str:
        return f"AverageStability(radius={self.radius}, nb_samples={self.nb_samples})"
