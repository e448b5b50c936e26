"""The shared statistics, by hand and against scipy."""

import math

import pytest
import torch
from scipy import stats

from spyglass.metrics import auc, spearman_rows, youden_index
from spyglass.metrics._stats import average_ranks, pearson_rows


def test_auc_by_hand() -> None:
    # Points at x = 0, 1/3, 2/3, 1: trapezoids (1 + 0.5)/2, (0.5 + 0.5)/2, (0.5 + 0)/2, each · 1/3.
    curve = torch.tensor([[1.0, 0.5, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert auc(curve).tolist() == pytest.approx([(0.75 + 0.5 + 0.25) / 3, 1.0])


def test_auc_needs_two_points() -> None:
    with pytest.raises(ValueError, match=r"curves must be a float tensor of shape \(N, D\) with D >= 2"):
        auc(torch.ones(2, 1))


def test_youden_index_by_hand() -> None:
    # Negatives 0.1 0.2 0.6, positives 0.5 0.7. γ = 0.5: TPR 2/2, TNR 2/3 → 2/3; γ = 0.7: 1/2 + 1 − 1 = 1/2.
    assert youden_index(torch.tensor([0.1, 0.2, 0.6]), torch.tensor([0.5, 0.7])) == pytest.approx(2 / 3)
    assert youden_index(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.9])) == 1.0  # separated
    assert youden_index(torch.tensor([0.8, 0.9]), torch.tensor([0.1, 0.2])) == 0.0  # reversed: chance at best
    assert math.isnan(youden_index(torch.tensor([]), torch.tensor([0.1])))


def test_youden_index_against_brute_force(generator: torch.Generator) -> None:
    negatives, positives = torch.rand(30, generator=generator), torch.rand(20, generator=generator) + 0.3
    best = 0.0
    for gamma in torch.cat([negatives, positives, torch.tensor([2.0])]).tolist():
        tpr = float((positives >= gamma).double().mean())
        tnr = float((negatives < gamma).double().mean())
        best = max(best, tpr + tnr - 1)
    assert youden_index(negatives, positives) == pytest.approx(best)


def test_average_ranks_share_ties() -> None:
    assert average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[2.5, 0.0, 2.5, 1.0]]


def test_spearman_matches_scipy_with_ties(generator: torch.Generator) -> None:
    x = torch.randint(0, 5, (4, 50), generator=generator).float()  # many ties
    y = x + torch.randint(0, 3, (4, 50), generator=generator).float()
    expected = [stats.spearmanr(a.numpy(), b.numpy()).statistic for a, b in zip(x, y, strict=True)]
    assert spearman_rows(x, y).tolist() == pytest.approx(expected, abs=1e-12)


def test_constant_rows_give_nan() -> None:
    values = pearson_rows(torch.ones(2, 5), torch.rand(2, 5))
    assert bool(values.isnan().all())
    assert bool(spearman_rows(torch.rand(1, 5), torch.zeros(1, 5)).isnan().all())
