"""Integrated Gradients (Sundararajan, Taly & Yan, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._registry import register
from spyglass.attributions.gradient_input import gradient_times_input
from spyglass.engines.gradients import iter_gradients
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_finite_tensor, check_float, check_int

__all__ = ["IntegratedGradients", "StraightPath", "trapezoid_rule"]


def trapezoid_rule(
    steps: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    r"""Points and weights of the trapezoidal rule on ``[0, 1]`` with ``steps`` points (≥ 2).

    ``α_k = k / (steps − 1)`` and ``w_k = 1 / (steps − 1)``, halved at both ends, so that
    :math:`\int_0^1 g \approx \sum_k w_k\, g(α_k)`, with error
    :math:`g''(\xi) / (12 (steps − 1)^2)`: exact when ``g`` is affine in ``α`` (a score
    quadratic along the path), ``a² h² / 2`` too large for ``g(α) = 3 (a α + b)²``,
    ``h = 1 / (steps − 1)``. The one quadrature of Integrated Gradients, in pixel and in
    concept space.

    Examples
    --------
    >>> alphas, weights = trapezoid_rule(3)
    >>> alphas.tolist(), weights.tolist()
    ([0.0, 0.5, 1.0], [0.25, 0.5, 0.25])
    """
    steps = check_int(steps, "steps", 2, hint="points of the trapezoidal rule, both ends included")
    alphas = torch.linspace(0.0, 1.0, steps, device=device, dtype=dtype)
    weights = torch.full_like(alphas, 1.0 / (steps - 1))
    weights[0] = weights[-1] = 0.5 / (steps - 1)
    return alphas, weights


class StraightPath:
    """Integrated Gradients' path and quadrature, for inputs of any shape ``(N, ...)``.

    Row ``r`` is input ``r // steps`` at ``α = alphas[r % steps]`` on the straight line from
    its baseline, ``x' + α (x − x')``; the points of :func:`trapezoid_rule`. Pixel space walks
    images ``(N, 3, H, W)`` from a reference image, concept space the coefficients
    ``(N, h·w, r)`` from ``U = 0``. Rows are built on demand (an
    :class:`~spyglass.engines.InputSource`), so memory stays bounded by the batch.

    Parameters
    ----------
    inputs, baselines
        ``x`` and ``x'``, the same shape ``(N, ...)``.
    steps
        Points on the path (≥ 2).
    """

    def __init__(self, inputs: Tensor, baselines: Tensor, steps: int) -> None:
        if baselines.shape != inputs.shape:
            raise ValueError(
                f"baselines must have the inputs' shape {tuple(inputs.shape)}; got {tuple(baselines.shape)}"
            )
        self.inputs, self.baselines, self.steps = inputs, baselines, steps
        self.alphas, self.weights = trapezoid_rule(steps, dtype=inputs.dtype, device=inputs.device)

    def __len__(self) -> int:
        return int(self.inputs.shape[0]) * self.steps

    def sources(self, rows: slice) -> Tensor:
        """The input ``(B,)`` that each point of ``rows`` lies on the path of."""
        return torch.arange(rows.start, rows.stop, device=self.inputs.device) // self.steps

    def __getitem__(self, rows: slice) -> Tensor:
        index = torch.arange(rows.start, rows.stop, device=self.inputs.device)
        source, step = index // self.steps, index % self.steps
        alpha = self.alphas[step].view(-1, *([1] * (self.inputs.dim() - 1)))
        return self.baselines[source] + alpha * (self.inputs[source] - self.baselines[source])

    def accumulate(self, integral: Tensor, rows: slice, gradients: Tensor) -> None:
        """Add the gradients ``(B, ...)`` at the points ``rows``, weighted, into ``integral`` ``(N, ...)``."""
        index = torch.arange(rows.start, rows.stop, device=integral.device)
        weights = self.weights.to(integral.device)[index % self.steps]
        weighted = gradients.to(integral.device) * weights.view(-1, *([1] * (gradients.dim() - 1)))
        integral.index_add_(0, index // self.steps, weighted)

    def attributions(self, integral: Tensor, dim: int | tuple[int, ...]) -> Tensor:
        """``Σ_dim (x − x') ⊙ ∫ ∂f``: Gradient×Input of the integrated gradient, from ``x'``."""
        return gradient_times_input(integral, self.inputs - self.baselines, dim)


@register("integrated_gradients")
class IntegratedGradients(Attribution):
    r"""Integrated Gradients along the straight path from a baseline, summed over channels.

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017:

    .. math:: \phi(x)_{ij} = \sum_c (x - x')_{cij} \int_0^1
              \frac{\partial f_y(x' + \alpha (x - x'))}{\partial x_{cij}} \, d\alpha

    The integral is computed with the trapezoidal rule on ``steps`` evenly spaced points
    (both ends included), so ``Σ φ ≈ f_y(x) − f_y(x')`` (completeness) up to the rule's
    error. The path and its quadrature (:class:`StraightPath`) are those of concept-space
    Integrated Gradients too. Cost: ``steps`` gradients per image, streamed in batches of
    ``batch_size``.

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
        self.steps = check_int(steps, "steps", 2)
        if isinstance(baseline, Tensor):
            # Image space like the images: a NaN or a value of 5 would walk a path off the data.
            self.baseline: float | Tensor = check_finite_tensor(
                baseline, "baseline", minimum=0.0, maximum=1.0, hint="an image in pixel space"
            ).detach()
        else:
            self.baseline = check_float(
                baseline, "baseline", minimum=0.0, maximum=1.0, hint="the value of a uniform image"
            )

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
        path = StraightPath(images, self._baselines(images), self.steps)
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
            path.accumulate(integral, rows, gradients)
        return path.attributions(integral, dim=1)
