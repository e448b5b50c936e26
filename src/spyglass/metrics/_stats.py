"""Small statistics the metrics share: row-wise correlations, areas under curves, Youden's index.

Why our own: each is a few lines of torch, runs on ``(N, D)`` rows at once (scipy's
``spearmanr`` works on one pair at a time and on NumPy), and states what happens on a
constant row (NaN, which the metrics count and drop explicitly instead of hiding).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spyglass.validation import check_rows, check_same_shape, describe

__all__ = ["auc", "average_ranks", "pearson_rows", "spearman_rows", "youden_index"]


def pearson_rows(x: Tensor, y: Tensor) -> Tensor:
    r"""Pearson correlation of each row of ``x`` with the same row of ``y`` (``(N, D)`` → ``(N,)``).

    :math:`r = \frac{\sum_d (x_d - \bar x)(y_d - \bar y)}{\lVert x - \bar x\rVert\,\lVert y - \bar y\rVert}`,
    computed in float64; NaN where a row of either side is constant.

    Examples
    --------
    >>> import torch
    >>> pearson_rows(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 4.0, 7.0]])).round(decimals=4)
    tensor([0.9934], dtype=torch.float64)
    """
    check_same_shape(check_rows(x, "x"), check_rows(y, "y"), ("x", "y"))
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    denominator = x.norm(dim=1) * y.norm(dim=1)
    numerator = (x * y).sum(dim=1)
    nan = torch.full_like(numerator, torch.nan)
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), nan).clamp(-1.0, 1.0)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks ``0 … D−1`` of each row of ``(N, D)`` ``values``, tied values sharing their mean rank.

    Examples
    --------
    >>> import torch
    >>> average_ranks(torch.tensor([[10.0, 30.0, 20.0, 30.0]]))
    tensor([[0.0000, 2.5000, 1.0000, 2.5000]], dtype=torch.float64)
    """
    n, d = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones(n, d, dtype=torch.bool, device=values.device)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.flatten().cumsum(0) - 1  # one id per run of equal values, across all rows
    position = torch.arange(d, device=values.device, dtype=torch.float64).expand(n, d).flatten()
    groups = int(group[-1]) + 1
    first = torch.full((groups,), float(d), dtype=torch.float64, device=values.device)
    last = torch.zeros(groups, dtype=torch.float64, device=values.device)
    first.scatter_reduce_(0, group, position, reduce="amin")
    last.scatter_reduce_(0, group, position, reduce="amax")
    mean_rank = ((first + last) / 2)[group].view(n, d)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman_rows(x: Tensor, y: Tensor) -> Tensor:
    """Spearman rank correlation of each row pair (``(N, D)`` → ``(N,)``): Pearson on average ranks.

    NaN where a row of either side is constant (a flat map has no ranking).

    Examples
    --------
    >>> import torch
    >>> spearman_rows(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 4.0, 9.0]])).round(decimals=12)
    tensor([1.], dtype=torch.float64)
    """
    check_same_shape(check_rows(x, "x"), check_rows(y, "y"), ("x", "y"))
    return pearson_rows(average_ranks(x), average_ranks(y))


def auc(curves: Tensor) -> Tensor:
    """Area under each curve ``(N, S + 1)`` by the trapezoid rule, its points spread evenly over [0, 1].

    Examples
    --------
    >>> import torch
    >>> auc(torch.tensor([[1.0, 0.5, 0.0]]))  # (1 + 0.5)/2 · ½ + (0.5 + 0)/2 · ½
    tensor([0.5000])
    """
    check_rows(curves, "curves", min_columns=2)
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


def youden_index(negatives: Tensor, positives: Tensor) -> float:
    r"""The best Youden index of a threshold separating small ``negatives`` from large ``positives``.

    :math:`J = \max_\gamma \mathrm{TPR}_\gamma + \mathrm{TNR}_\gamma - 1` with
    :math:`\mathrm{TPR}_\gamma = |\{p \ge \gamma\}| / |P|` and
    :math:`\mathrm{TNR}_\gamma = |\{n < \gamma\}| / |N|`, over every threshold that matters
    (each observed value and +∞). In [0, 1]: 1 when every positive exceeds every negative, 0
    when no threshold does better than chance (γ below everything gives exactly 0). NaN when
    either side is empty.

    Examples
    --------
    >>> import torch
    >>> round(youden_index(torch.tensor([0.1, 0.2, 0.6]), torch.tensor([0.5, 0.7])), 12)  # γ = 0.5: 2/3
    0.666666666667
    """
    for values, name in ((negatives, "negatives"), (positives, "positives")):
        if not isinstance(values, Tensor) or values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor of scores; got {describe(values)}")
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            raise ValueError(
                f"{name} must be finite scores; got {int((~torch.isfinite(values)).sum())} NaN or infinite"
            )
    if negatives.numel() == 0 or positives.numel() == 0:
        return float("nan")
    negatives = negatives.flatten().to(torch.float64).sort().values
    positives = positives.flatten().to(torch.float64).sort().values
    inf = torch.tensor([torch.inf], dtype=torch.float64)
    thresholds = torch.cat([negatives, positives, inf]).unique()
    below = torch.searchsorted(negatives, thresholds, side="left").to(torch.float64)
    at_least = positives.numel() - torch.searchsorted(positives, thresholds, side="left").to(torch.float64)
    j = at_least / positives.numel() + below / negatives.numel() - 1.0
    return max(0.0, float(j.max()))
