"""The noise tunnel: statistics of an attribution under Gaussian noise on the image.

:class:`NoiseTunnel` wraps *any* attribution method — Grad-CAM, Guided Backprop, RISE … —
and takes the mean, the variance or the mean square of its maps over noisy copies of each
image (as captum's ``NoiseTunnel`` and zennit's ``SmoothGrad`` do). SmoothGrad, VarGrad and
SquareGrad are the three registered presets; by default they take the statistic of the
plain, signed input gradient (before the absolute value and the maximum over colour
channels, as their papers define them), or of any other method's maps with ``base=``:

>>> from spyglass import attributions, models
>>> model = models.load()
>>> smooth_cam = attributions.create("smoothgrad", model, base="gradcam", nb_samples=8)
>>> smooth_guided = attributions.NoiseTunnel(attributions.GuidedBackprop(model), nb_samples=8)

Noise is drawn per noisy copy from a generator seeded from ``(seed, row)``, so the maps
depend on the seed and not on ``batch_size``; the noisy copies are built and explained
``batch_size`` at a time, so memory does not grow with ``nb_samples``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._registry import create, register
from spyglass.engines.forward import iter_batches, model_device
from spyglass.engines.gradients import input_gradients
from spyglass.objectives import Objective, target_logit
from spyglass.progress import progress_bar
from spyglass.validation import (
    check_batch_size,
    check_choice,
    check_int,
    check_mapping,
    check_positive_float,
    check_seed,
)

__all__ = ["STATISTICS", "NoiseTunnel", "SmoothGrad", "SquareGrad", "VarGrad"]

STATISTICS: tuple[str, ...] = ("mean", "var", "square")
"""What a noise tunnel keeps of the values over the noisy copies: their mean, their
population variance, or their mean square."""


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


class _Tunnel(Attribution):
    """Shared body: stream the noisy copies, accumulate the statistic, finish the maps.

    A subclass sets ``self.sample`` (the values of one batch of noisy copies, ``(B, ...)``)
    and may override :meth:`finish` (the statistic ``(N, ...)`` → maps ``(N, H, W)``).
    """

    sample: Callable[[Tensor, Tensor], Tensor]

    def _set_noise(self, nb_samples: int, noise: float, seed: int, statistic: str) -> None:
        self.nb_samples = check_int(nb_samples, "nb_samples", 1, hint="noisy copies per image")
        self.noise = check_positive_float(
            noise, "noise", allow_zero=True, hint="a fraction of the [0, 1] value range"
        )
        self.seed = check_seed(seed)
        self.statistic = check_choice(statistic, "statistic", STATISTICS)

    def finish(self, statistic: Tensor) -> Tensor:
        return statistic

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        source = _NoisyCopies(images, self.nb_samples, self.noise, self.seed)
        flat_targets = targets.repeat_interleave(self.nb_samples)
        n = len(source)
        first: Tensor | None = None
        second: Tensor | None = None
        batches = iter_batches(n, self.batch_size)
        total = -(-n // self.batch_size)
        for rows in progress_bar(batches, enabled=self.progress, total=total, desc=self.desc, unit="batch"):
            values = self.sample(source[rows], flat_targets[rows]).to(images.device, torch.float64)
            if first is None or second is None:
                shape = (images.shape[0], *values.shape[1:])
                first = torch.zeros(shape, dtype=torch.float64, device=images.device)
                second = torch.zeros_like(first)
            index = torch.arange(rows.start, rows.stop, device=images.device) // self.nb_samples
            first.index_add_(0, index, values)
            second.index_add_(0, index, values * values)
        assert first is not None and second is not None  # the base checks refuse empty images
        mean, mean_square = first / self.nb_samples, second / self.nb_samples
        if self.statistic == "mean":
            statistic = mean
        elif self.statistic == "var":
            statistic = (mean_square - mean * mean).clamp_min(0.0)
        else:
            statistic = mean_square
        return self.finish(statistic).float()

    @property
    def desc(self) -> str:
        return self.name or type(self).__name__


class NoiseTunnel(_Tunnel):
    r"""Any attribution method, under noise: the statistic of its maps over noisy copies.

    .. math:: \phi(x) = S_{k=1}^{n} \, m(x + \varepsilon_k),
              \quad \varepsilon_k \sim \mathcal{N}(0, \sigma^2),
              \quad S \in \{\text{mean}, \text{var}, \text{mean square}\}

    where ``m`` is the wrapped method's map (Smilkov et al. 2017 for the mean, Adebayo et
    al. 2018 for the variance, Hooker et al. 2019 for the mean square). The noisy copies
    are not clipped to [0, 1] (nor are they in the papers) and are handed to the wrapped
    method's algorithm directly, ``batch_size`` copies at a time: the wrapped method then
    bounds its own memory by its own ``batch_size``. Its maps must depend on each image
    alone, not on the others explained with it (true of every registered method).
    Cost: ``nb_samples`` times the wrapped method's.

    The statistic is of the wrapped method's *maps*: a SmoothGrad of :class:`Saliency` is
    the mean of ``max_c |∇|``, not the presets' ``max_c |mean ∇|`` (see :class:`SmoothGrad`).

    Parameters
    ----------
    method
        The attribution method to wrap; its model, objective and (by default) batch size
        are used.
    nb_samples
        ``n``, noisy copies per image.
    noise
        ``σ`` as a fraction of the [0, 1] value range.
    statistic
        ``"mean"``, ``"var"`` (population variance) or ``"square"`` (mean square).
    seed
        Seeds the noise; the same seed gives the same maps at any ``batch_size``.
    batch_size
        Noisy copies explained per call of the wrapped method (default: its ``batch_size``).
    progress
        Show a progress bar over those calls (default: the wrapped method's setting). The
        wrapped method's own bars show too unless it was built with ``progress=False``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> model = models.load()
    >>> tunnel = attributions.NoiseTunnel(attributions.GradCAM(model, progress=False), nb_samples=4)
    >>> tunnel(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    def __init__(
        self,
        method: Attribution,
        *,
        nb_samples: int = 50,
        noise: float = 0.2,
        statistic: str = "mean",
        seed: int = 0,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        if not isinstance(method, Attribution):
            raise TypeError(
                f"method must be an attribution method (an Attribution, e.g. attributions.GradCAM(model)); "
                f"got {type(method).__name__}"
            )
        super().__init__(
            method.model,
            objective=method.objective,
            batch_size=method.batch_size if batch_size is None else check_batch_size(batch_size),
            progress=method.progress if progress is None else progress,
        )
        self.method = method
        self.sample = method.explain
        self._set_noise(nb_samples, noise, seed, statistic)

    @property
    def desc(self) -> str:
        return f"noise tunnel ({self.method.name or type(self.method).__name__})"

    def __repr__(self) -> str:
        return (
            f"NoiseTunnel({self.method!r}, nb_samples={self.nb_samples}, noise={self.noise}, "
            f"statistic={self.statistic!r}, seed={self.seed}, batch_size={self.batch_size})"
        )


class _Preset(_Tunnel):
    """SmoothGrad, VarGrad, SquareGrad: a noise tunnel of the input gradient, or of ``base``."""

    kind = "gradient"
    settings = levels(cheap={"nb_samples": 6}, quick={"nb_samples": 8}, demo={"nb_samples": 16})

    preset: ClassVar[str]  # the statistic this registered name stands for

    def __init__(
        self,
        model: nn.Module,
        *,
        nb_samples: int = 50,
        noise: float = 0.2,
        seed: int = 0,
        base: str | Attribution | None = None,
        base_options: Mapping[str, Any] | None = None,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        self._set_noise(nb_samples, noise, seed, self.preset)
        options = dict(check_mapping(base_options, "base_options"))
        self.base: Attribution | None
        if base is None:
            if options:
                raise ValueError(f"base_options {sorted(options)} given without a base method")
            self.base = None
            self.sample = self._input_gradients
        elif isinstance(base, Attribution):
            if base.model is not model:
                raise ValueError(
                    f"base must explain the same model as {type(self).__name__}; it was built for another one"
                )
            if options or objective is not target_logit:
                raise ValueError(
                    "base is an already built method: set its options (and objective) when building it, "
                    "not through base_options or objective"
                )
            self.base = base
            self.sample = base.explain
        elif isinstance(base, str):
            options = {"objective": objective, "batch_size": batch_size, "progress": False, **options}
            try:
                self.base = create(base, model, **options)
            except (TypeError, ValueError) as error:  # say which argument the registry's message is about
                raise type(error)(f"base={base!r}: {error}") from None
            self.sample = self.base.explain
        else:
            raise TypeError(
                f"base must be None (the input gradient), a registered method's name or an Attribution; "
                f"got {type(base).__name__}"
            )

    def _input_gradients(self, noisy: Tensor, targets: Tensor) -> Tensor:
        device = model_device(self.model)
        return input_gradients(self.model, noisy.to(device), targets.to(device), objective=self.objective)

    def finish(self, statistic: Tensor) -> Tensor:
        if self.base is not None:
            return statistic  # a method's maps, already (N, H, W)
        # Signed per-channel gradients: the papers' reduction to a map.
        reduced = statistic.abs() if self.statistic == "mean" else statistic
        return reduced.amax(dim=1)

    def __repr__(self) -> str:
        base = "" if self.base is None else f", base={self.base!r}"
        return (
            f"{type(self).__name__}(nb_samples={self.nb_samples}, noise={self.noise}, "
            f"seed={self.seed}{base}, batch_size={self.batch_size})"
        )


@register("smoothgrad")
class SmoothGrad(_Preset):
    r"""SmoothGrad: the gradient averaged over noisy copies of the image.

    Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
    noise", 2017:

    .. math:: \phi(x)_{ij} = \max_c \Big| \frac{1}{n} \sum_{k=1}^{n}
              \partial f_y(x + \varepsilon_k) / \partial x_{cij} \Big|,
              \quad \varepsilon_k \sim \mathcal{N}(0, \sigma^2)

    The mean is of the signed per-channel gradients; the absolute value and the maximum
    over channels come last. With ``base`` the noise tunnel wraps another method instead
    and averages its maps (:class:`NoiseTunnel`): ``base="gradcam"`` is SmoothGrad of
    Grad-CAM.

    Parameters
    ----------
    nb_samples
        ``n``, noisy copies per image (the paper: 50).
    noise
        ``σ`` as a fraction of the [0, 1] value range (the paper: 10–20 %).
    seed
        Seeds the noise; the same seed gives the same maps at any ``batch_size``.
    base
        ``None`` (the input gradient), a registered method's name (built for the same model
        with ``base_options``, this method's ``objective`` and ``batch_size``, no progress
        bar) or an already built :class:`Attribution` of the same model.
    base_options
        Options of the ``base`` method when it is given by name, e.g. ``{"layer": "bn2"}``.
    batch_size
        Noisy copies per forward/backward pass (or per call of ``base``): the memory bound.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> smooth = attributions.SmoothGrad(models.load(), nb_samples=8)
    >>> smooth(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    >>> smooth_cam = attributions.SmoothGrad(models.load(), base="gradcam", nb_samples=4)
    >>> smooth_cam(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    preset = "mean"


@register("vargrad")
class VarGrad(_Preset):
    r"""VarGrad: the variance of the gradient over noisy copies of the image.

    Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep Neural
    Networks Lack Sensitivity to Parameter Values", ICLR workshop 2018:

    .. math:: \phi(x)_{ij} = \max_c \operatorname{Var}_k \left[
              \partial f_y(x + \varepsilon_k) / \partial x_{cij} \right]

    (population variance over the ``nb_samples`` draws, of the signed per-channel gradients;
    with ``base``, of that method's maps). Options as :class:`SmoothGrad`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> attributions.VarGrad(models.load(), nb_samples=8)(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    preset = "var"


@register("squaregrad")
class SquareGrad(_Preset):
    r"""SquareGrad: the mean squared gradient over noisy copies of the image.

    Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep
    Neural Networks", NeurIPS 2019:

    .. math:: \phi(x)_{ij} = \max_c \frac{1}{n} \sum_{k=1}^{n}
              \left( \partial f_y(x + \varepsilon_k) / \partial x_{cij} \right)^2

    (with ``base``, the mean square of that method's maps). Options as :class:`SmoothGrad`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> attributions.SquareGrad(models.load(), nb_samples=8)(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    preset = "square"
