"""Element-wise activations: exact intervals and sound linear relaxations.

An activation ``f`` is described by its *critical points* (kinks of a piecewise-linear
function, the minimum of SiLU and GELU): on ``[l, u]`` the extremes of ``f`` lie at
``l``, ``u`` or a critical point inside, so the interval of ``f`` is exact.

A linear relaxation is a pair of lines ``a_l x + b_l <= f(x) <= a_u x + b_u`` on
``[l, u]``. Any slope gives a sound pair once its intercepts are the min and max of
``f(x) - a x`` over the interval:

- piecewise-linear ``f`` (ReLU, ReLU6, LeakyReLU, clamp): ``f(x) - a x`` is linear between
  the end points and the kinks, so its min and max over those points are exact;
- smooth ``f`` (Sigmoid, Tanh, SiLU, GELU): the min and max over a grid of ``_GRID``
  points, widened by ``K h² / 8`` where ``h`` is the grid step and ``K >= sup |f''|``
  (the error of linear interpolation), so the pair stays sound.

Among a few candidate slopes (the chord, and the slopes of the linear pieces or the
tangents at ``l``, ``m = (l + u) / 2`` and ``u``) each bound takes the one whose line is
best at the midpoint (the highest lower line, the lowest upper line: the smallest area
between line and function for a straight piece). For ReLU this is CROWN's adaptive
lower slope (1 if ``u > -l``, else 0) and the triangle's chord as the upper line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__: list[str] = []

_GRID = 33


@dataclass(frozen=True)
class Activation:
    """An element-wise function, with what its bounds need.

    Attributes
    ----------
    function
        ``f`` itself, on tensors.
    kinks
        Where a piecewise-linear ``f`` changes slope (``None`` for a smooth ``f``).
    piece_slopes
        The slopes of the linear pieces (candidate relaxation slopes).
    curvature
        An upper bound of ``|f''|`` for a smooth ``f``.
    minimum_at
        Where a smooth non-monotone ``f`` has its single minimum.
    monotone
        ``f`` is non-decreasing: its interval is ``[f(l), f(u)]``.
    """

    function: Callable[[Tensor], Tensor]
    kinks: tuple[float, ...] | None = None
    piece_slopes: tuple[float, ...] = ()
    curvature: float = 0.0
    minimum_at: float | None = None
    monotone: bool = False

    def critical_points(self) -> tuple[float, ...]:
        if self.kinks is not None:
            return self.kinks
        return () if self.minimum_at is None else (self.minimum_at,)

    def interval(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """The exact interval ``[min f, max f]`` over ``[lower, upper]`` (element-wise)."""
        if self.monotone:
            return self.function(lower), self.function(upper)
        points = [lower, upper]
        for point in self.critical_points():
            points.append(torch.minimum(torch.maximum(lower, lower.new_tensor(point)), upper))
        values = torch.stack([self.function(p) for p in points])
        return values.amin(0), values.amax(0)

    def relaxation(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Slopes and intercepts ``(a_l, b_l, a_u, b_u)`` of sound lines around ``f`` on the box."""
        f = self.function
        width = upper - lower
        middle = (lower + upper) / 2
        # The chord's slope; on a (near) point interval any slope is sound, and the one at
        # the middle keeps the lines tight.
        tiny = width <= 1e-12 * (1 + lower.abs())
        chord = (f(upper) - f(lower)) / torch.where(tiny, torch.ones_like(width), width)
        if self.kinks is not None:
            points = [lower, upper]
            points += [torch.minimum(torch.maximum(lower, lower.new_tensor(k)), upper) for k in self.kinks]
            grid = torch.stack(points)
            margin = torch.zeros_like(width)
            slopes = [chord] + [torch.full_like(width, s) for s in self.piece_slopes]
        else:
            steps = torch.linspace(0, 1, _GRID, dtype=lower.dtype, device=lower.device)
            grid = lower + steps.view(-1, *[1] * lower.ndim) * width
            margin = self.curvature * (width / (_GRID - 1)) ** 2 / 8
            slopes = [chord] + [_derivative(f, p) for p in (lower, middle, upper)]
        values = f(grid)
        candidates = torch.stack(slopes)  # (S, ...)
        offsets = values.unsqueeze(0) - candidates.unsqueeze(1) * grid.unsqueeze(0)  # (S, P, ...)
        low_intercepts = offsets.amin(1) - margin
        high_intercepts = offsets.amax(1) + margin
        at_middle_low = candidates * middle + low_intercepts
        at_middle_high = candidates * middle + high_intercepts
        best_low = at_middle_low.argmax(0, keepdim=True)
        best_high = at_middle_high.argmin(0, keepdim=True)
        a_l = candidates.gather(0, best_low)[0]
        b_l = low_intercepts.gather(0, best_low)[0]
        a_u = candidates.gather(0, best_high)[0]
        b_u = high_intercepts.gather(0, best_high)[0]
        return a_l, b_l, a_u, b_u


def _derivative(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    # A slope only picks a candidate line (its intercepts make it sound), so a central
    # difference is enough.
    step = 1e-4 if x.dtype == torch.float64 else 1e-2
    return (f(x + step) - f(x - step)) / (2 * step)


@functools.cache
def _argmin(name: str) -> float:
    """Where a unimodal activation (SiLU, GELU) has its minimum, by golden-section search."""
    function = _SMOOTH_FUNCTIONS[name]
    low, high = -4.0, 0.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a = high - ratio * (high - low)
        b = low + ratio * (high - low)
        fa = function(torch.tensor(a, dtype=torch.float64))
        fb = function(torch.tensor(b, dtype=torch.float64))
        if fa < fb:
            high = b
        else:
            low = a
    return (low + high) / 2


def _gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


_SMOOTH_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
}

# sup |f''|, with a margin: sigmoid 1/(6√3) = 0.0962, tanh 4/(3√3) = 0.770, SiLU 0.5 (at 0),
# GELU 2φ(0) = 0.798 (the tanh approximation is within 1 % of it); tests/bounds checks
# each against a dense grid.
_CURVATURE = {"sigmoid": 0.0963, "tanh": 0.771, "silu": 0.501, "gelu": 0.799, "gelu_tanh": 0.81}


def piecewise_linear(
    function: Callable[[Tensor], Tensor], kinks: tuple[float, ...], slopes: tuple[float, ...]
) -> Activation:
    """A piecewise-linear activation with the given kinks and piece slopes."""
    monotone = all(slope >= 0 for slope in slopes)
    return Activation(function=function, kinks=kinks, piece_slopes=slopes, monotone=monotone)


def clamp(minimum: float | None, maximum: float | None) -> Activation:
    """``x`` clamped to ``[minimum, maximum]`` (ReLU: ``(0, None)``; ReLU6: ``(0, 6)``)."""
    kinks = tuple(k for k in (minimum, maximum) if k is not None)

    def function(x: Tensor) -> Tensor:
        return torch.clamp(x, min=minimum, max=maximum)

    return piecewise_linear(function, kinks, (0.0, 1.0))


def leaky_relu(negative_slope: float) -> Activation:
    def function(x: Tensor) -> Tensor:
        return F.leaky_relu(x, negative_slope)

    return piecewise_linear(function, (0.0,), (negative_slope, 1.0))


def smooth(name: str) -> Activation:
    """Sigmoid, Tanh, SiLU, GELU (``"gelu_tanh"``: its tanh approximation)."""
    if name == "sigmoid":
        return Activation(function=torch.sigmoid, curvature=_CURVATURE[name], monotone=True)
    if name == "tanh":
        return Activation(function=torch.tanh, curvature=_CURVATURE[name], monotone=True)
    return Activation(function=_SMOOTH_FUNCTIONS[name], curvature=_CURVATURE[name], minimum_at=_argmin(name))
