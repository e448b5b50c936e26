"""The noise tunnel: statistics of input gradients under Gaussian noise.

SmoothGrad, VarGrad and SquareGrad differ only in the statistic they take over the
noisy gradients, so one class does the work and the three registered names choose the
statistic. Noise is drawn per evaluation from a generator seeded from ``(seed, row)``, so
the maps depend on the seed and not on ``batch_size``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._registry import register
from spyglass.engines.gradients import iter_gradients
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_int, check_positive_float, check_seed

__all__ = ["SmoothGrad", "SquareGrad", "VarGrad"]


class _NoisyCopies:
    """Row ``r`` is image ``r // nb_samples`` plus Gaussian noise seeded by ``(seed, r)``."""

    def __init__(self, images: Tensor, nb_samples: int, sigma: float, seed: int) -> None:
        self.images, self.nb_samples, self.sigma, self.seed = images, nb_samples, sigma, seed

    def __len__(self) -> int:
        return int(self.images.shape[0]) * self.nb_samples

    def __getitem__(self, rows: slice) -> Tensor:
        shape = self.images.shape[1:]
        # torch's CPU generator keeps only 32 bits of a seed: mix (seed, row) with SeedSequence.
        seeds = [
            int(np.random.SeedSequence([self.seed, r]).generate_state(1)[0])
            for r in range(rows.start, rows.stop)
        ]
        noise = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        ).to(self.images.device, self.images.dtype)
        index = torch.arange(rows.start, rows.stop, device=self.images.device) // self.nb_samples
        return self.images[index] + self.sigma * noise


class _NoiseTunnel(Attribution):
    kind = "gradient"
    settings = levels(cheap={"nb_samples": 6}, quick={"nb_samples": 8}, demo={"nb_samples": 16})

    statistic: ClassVar[str]

    def __init__(
        self,
        model: nn.Module,
        *,
        nb_samples: int = 50,
        noise: float = 0.2,
        seed: int = 0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        check_int(nb_samples, "nb_samples", 1)
        check_positive_float(noise, "noise", allow_zero=True, hint="a fraction of the [0, 1] value range")
        check_seed(seed)
        self.nb_samples, self.noise, self.seed = nb_samples, float(noise), seed

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        source = _NoisyCopies(images, self.nb_samples, self.noise, self.seed)
        first = torch.zeros(images.shape, dtype=torch.float64, device=images.device)
        second = torch.zeros_like(first)
        for rows, gradients, _ in iter_gradients(
            self.model,
            source,
            targets.repeat_interleave(self.nb_samples),
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        ):
            index = torch.arange(rows.start, rows.stop, device=images.device) // self.nb_samples
            g = gradients.to(images.device, torch.float64)
            first.index_add_(0, index, g)
            second.index_add_(0, index, g * g)
        mean, mean_square = first / self.nb_samples, second / self.nb_samples
        if self.statistic == "mean":
            per_channel = mean.abs()
        elif self.statistic == "variance":
            per_channel = (mean_square - mean * mean).clamp_min(0.0)
        else:
            per_channel = mean_square
        return per_channel.amax(dim=1).float()


@register("smoothgrad")
class SmoothGrad(_NoiseTunnel):
    r"""SmoothGrad: the gradient averaged over noisy copies of the image.

    Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
    noise", 2017:

    .. math:: \phi(x)_{ij} = \max_c \Big| \frac{1}{n} \sum_{k=1}^{n}
              \partial f_y(x + \varepsilon_k) / \partial x_{cij} \Big|,
              \quad \varepsilon_k \sim \mathcal{N}(0, \sigma^2)

    Parameters
    ----------
    nb_samples
        ``n``, noisy copies per image (the paper: 50).
    noise
        ``σ`` as a fraction of the [0, 1] value range (the paper: 10–20 %).
    seed
        Seeds the noise; the same seed gives the same maps at any ``batch_size``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> smooth = attributions.SmoothGrad(models.load(), nb_samples=8)
    >>> smooth(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    statistic = "mean"


@register("vargrad")
class VarGrad(_NoiseTunnel):
    r"""VarGrad: the variance of the gradient over noisy copies of the image.

    Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep Neural
    Networks Lack Sensitivity to Parameter Values", ICLR workshop 2018:

    .. math:: \phi(x)_{ij} = \max_c \operatorname{Var}_k \left[
              \partial f_y(x + \varepsilon_k) / \partial x_{cij} \right]

    (population variance over the ``nb_samples`` draws). Options as :class:`SmoothGrad`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> attributions.VarGrad(models.load(), nb_samples=8)(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    statistic = "variance"


@register("squaregrad")
class SquareGrad(_NoiseTunnel):
    r"""SquareGrad: the mean squared gradient over noisy copies of the image.

    Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep
    Neural Networks", NeurIPS 2019:

    .. math:: \phi(x)_{ij} = \max_c \frac{1}{n} \sum_{k=1}^{n}
              \left( \partial f_y(x + \varepsilon_k) / \partial x_{cij} \right)^2

    Options as :class:`SmoothGrad`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> attributions.SquareGrad(models.load(), nb_samples=8)(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    statistic = "square"
