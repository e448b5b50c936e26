"""Integrated Gradients (Sundararajan, Taly & Yan, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._registry import register
from spyglass.engines.gradients import iter_gradients
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_int

__all__ = ["IntegratedGradients"]


class _StraightPath:
    """Row ``r`` is image ``r // steps`` at ``alpha[r % steps]`` along the path from its baseline."""

    def __init__(self, images: Tensor, baselines: Tensor, alphas: Tensor) -> None:
        self.images, self.baselines, self.alphas = images, baselines, alphas
        self.steps = int(alphas.shape[0])

    def __len__(self) -> int:
        return int(self.images.shape[0]) * self.steps

    def __getitem__(self, rows: slice) -> Tensor:
        index = torch.arange(rows.start, rows.stop, device=self.images.device)
        image, step = index // self.steps, index % self.steps
        alpha = self.alphas[step].view(-1, 1, 1, 1)
        return self.baselines[image] + alpha * (self.images[image] - self.baselines[image])


@register("integrated_gradients")
class IntegratedGradients(Attribution):
    r"""Integrated Gradients along the straight path from a baseline, summed over channels.

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017:

    .. math:: \phi(x)_{ij} = \sum_c (x - x')_{cij} \int_0^1
              \frac{\partial f_y(x' + \alpha (x - x'))}{\partial x_{cij}} \, d\alpha

    The integral is computed with the trapezoidal rule on ``steps`` evenly spaced points
    (both ends included), so ``Σ φ ≈ f_y(x) − f_y(x')`` (completeness) up to the rule's
    error. Cost: ``steps`` gradients per image, streamed in batches of ``batch_size``.

    Parameters
    ----------
    steps
        Points on the path (≥ 2); the paper suggests 20 to 300.
    baseline
        The reference image ``x'``: a value in [0, 1] for a uniform image (default 0,
        black), or a tensor ``(3, H, W)`` or ``(N, 3, H, W)`` in [0, 1].

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> ig = attributions.IntegratedGradients(models.load(), steps=16)
    >>> ig(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    kind = "gradient"
    settings = levels(cheap={"steps": 8}, quick={"steps": 8}, demo={"steps": 16})

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 50,
        baseline: float | Tensor = 0.0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        check_int(steps, "steps", 2)
        if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            if not 0.0 <= float(baseline) <= 1.0:
                raise ValueError(f"a constant baseline must lie in [0, 1]; got {baseline}")
        elif not isinstance(baseline, Tensor):
            raise TypeError(f"baseline must be a float in [0, 1] or a tensor; got {type(baseline).__name__}")
        self.steps = steps
        self.baseline = baseline

    def _baselines(self, images: Tensor) -> Tensor:
        if not isinstance(self.baseline, Tensor):
            return torch.full_like(images, float(self.baseline))
        baseline = self.baseline.to(device=images.device, dtype=images.dtype)
        if baseline.shape == images.shape[1:]:
            return baseline.expand_as(images)
        if baseline.shape == images.shape:
            return baseline
        raise ValueError(
            f"baseline must have shape {tuple(images.shape[1:])} or {tuple(images.shape)}; "
            f"got {tuple(baseline.shape)}"
        )

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        baselines = self._baselines(images)
        alphas = torch.linspace(0.0, 1.0, self.steps, device=images.device, dtype=images.dtype)
        weights = torch.full_like(alphas, 1.0 / (self.steps - 1))
        weights[0] = weights[-1] = 0.5 / (self.steps - 1)
        path = _StraightPath(images, baselines, alphas)
        integral = torch.zeros_like(images)
        for rows, gradients, _ in iter_gradients(
            self.model,
            path,
            targets.repeat_interleave(self.steps),
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc="integrated gradients",
        ):
            index = torch.arange(rows.start, rows.stop, device=images.device)
            weighted = gradients.to(images.device) * weights[index % self.steps].view(-1, 1, 1, 1)
            integral.index_add_(0, index // self.steps, weighted)
        return ((images - baselines) * integral).sum(dim=1)
