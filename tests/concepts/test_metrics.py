import doctest
import math

import pytest
import torch

from spyglass.concepts import (
    PCA,
    dictionary_stability,
    hoyer_sparsity,
    match_concepts,
    metrics,
    relative_reconstruction_error,
    sparsity,
)


def _bank(seed: int = 0) -> torch.Tensor:
    return torch.rand(5, 12, generator=torch.Generator().manual_seed(seed))


def test_relative_reconstruction_error_by_hand() -> None:
    activations = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    components = torch.eye(2)
    assert relative_reconstruction_error(activations, activations, components) == 0.0
    assert relative_reconstruction_error(activations, torch.zeros(2, 2), components) == 1.0
    # Rebuild the first row only: error = ‖(0, 4)‖ / ‖A‖ = 4 / 5.
    codes = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    assert relative_reconstruction_error(activations, codes, components) == pytest.approx(0.8)


def test_relative_reconstruction_error_with_a_mean() -> None:
    activations = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) + 3.0
    pca = PCA(n_concepts=6).fit(activations)
    codes = pca.transform(activations)
    assert relative_reconstruction_error(activations, codes, pca.components_, mean=pca.mean_) < 1e-5
    assert relative_reconstruction_error(activations, codes, pca.components_) > 0.5
    with pytest.raises(ValueError, match=r"mean must be a tensor of shape \(6,\)"):
        relative_reconstruction_error(activations, codes, pca.components_, mean=torch.zeros(5))


def test_relative_reconstruction_error_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="one row per row of activations"):
        relative_reconstruction_error(torch.ones(4, 3), torch.ones(5, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"codes must be a 2-D float tensor \(n_samples, 2\)"):
        relative_reconstruction_error(torch.ones(4, 3), torch.ones(4, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="all zeros"):
        relative_reconstruction_error(torch.zeros(4, 3), torch.ones(4, 2), torch.ones(2, 3))


def test_sparsity_is_the_fraction_of_zeros() -> None:
    codes = torch.tensor([[0.0, 1.0, 0.0, 0.0], [2.0, 0.0, 1e-9, 3.0]])
    assert sparsity(codes) == pytest.approx(4 / 8)
    assert sparsity(codes, atol=1e-6) == pytest.approx(5 / 8)
    assert sparsity(torch.eye(4)) == pytest.approx(0.75)  # one-hot: 1 − 1/r
    with pytest.raises(ValueError, match="atol must be >= 0"):
        sparsity(codes, atol=-1.0)


def test_hoyer_sparsity_by_hand() -> None:
    assert hoyer_sparsity(torch.eye(4)) == pytest.approx(1.0)
    assert hoyer_sparsity(torch.ones(3, 4)) == pytest.approx(0.0)
    assert hoyer_sparsity(torch.zeros(2, 4)) == pytest.approx(1.0)
    # (1, 1, 0, 0): ‖u‖₁/‖u‖₂ = √2, so (√4 − √2) / (√4 − 1) = 2 − √2.
    assert hoyer_sparsity(torch.tensor([[1.0, -1.0, 0.0, 0.0]])) == pytest.approx(2 - math.sqrt(2))
    with pytest.raises(ValueError, match="at least 2 concepts"):
        hoyer_sparsity(torch.ones(3, 1))


def test_match_concepts_recovers_a_permutation_up_to_scale() -> None:
    reference = _bank()
    order = torch.tensor([3, 0, 4, 1, 2])
    shuffled = torch.empty_like(reference)
    shuffled[order] = reference * torch.tensor([[2.0], [0.5], [3.0], [1.0], [7.0]])
    match = match_concepts(reference, shuffled)
    assert match.permutation.tolist() == order.tolist()
    torch.testing.assert_close(match.cosines, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(
        shuffled[match.permutation] / shuffled[match.permutation].norm(dim=1, keepdim=True),
        reference / reference.norm(dim=1, keepdim=True),
    )


def test_match_concepts_signs_and_extra_concepts() -> None:
    reference = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    flipped = torch.cat(
        [-reference[[2, 0, 1]], torch.randn(2, 8, generator=torch.Generator().manual_seed(2))]
    )
    match = match_concepts(reference, flipped, absolute=True)
    assert match.permutation.tolist() == [1, 2, 0]
    torch.testing.assert_close(match.cosines, torch.ones(3, dtype=torch.float64))
    assert bool((match_concepts(reference, flipped).cosines < 1).all())
    with pytest.raises(ValueError, match="at least as many concepts as reference"):
        match_concepts(flipped, reference)
    with pytest.raises(ValueError, match="got 7 features"):
        match_concepts(reference, torch.ones(3, 7))


def test_match_concepts_is_the_best_assignment_not_the_greedy_one() -> None:
    # Greedy matching pairs reference 0 with candidate 0 (cos 0.9) and leaves 1 with 1 (cos 0);
    # the optimum crosses them for a larger total.
    reference = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    angle = math.acos(0.9)
    candidates = torch.tensor([[math.cos(angle), math.sin(angle)], [1.0, 0.0]])
    match = match_concepts(reference, candidates)
    greedy_total = 0.9 + float(reference[1] @ candidates[1])
    assert float(match.cosines.sum()) > greedy_total
    assert match.permutation.tolist() == [1, 0]


def test_dictionary_stability() -> None:
    bank = _bank()
    assert dictionary_stability(bank, bank.flip(0) * 3) == pytest.approx(1.0)
    assert dictionary_stability(torch.eye(3), torch.eye(3)[[1, 2, 0]]) == pytest.approx(1.0)
    assert dictionary_stability(torch.eye(4)[:2], torch.eye(4)[2:]) == pytest.approx(0.0)
    # Negated concepts: the best matching is still poor, and perfect up to sign.
    assert dictionary_stability(bank, -bank) < 0
    assert dictionary_stability(bank, -bank, absolute=True) == pytest.approx(1.0)
    assert 0 < dictionary_stability(bank, _bank(seed=1)) < 0.99
    with pytest.raises(ValueError, match="same number of concepts"):
        dictionary_stability(bank, bank[:3])


def test_docstring_examples_run() -> None:
    result = doctest.testmod(metrics, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
