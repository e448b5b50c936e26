import doctest
import re
import warnings

import numpy as np
import pytest
import torch

from spyglass.sampling import (
    CORRELATION_THRESHOLD,
    PAIRINGS,
    SAMPLERS,
    CorrelatedDesignWarning,
    pair_correlations,
    pick_freeze_design,
    sample,
    sensitivity_design,
    total_order_indices,
)
from spyglass.sampling import designs as designs_module


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_shape_dtype_range(sampler: str) -> None:
    points = sample(sampler, 64, 5, seed=0)
    assert points.shape == (64, 10)
    assert points.dtype == torch.float32
    assert float(points.min()) >= 0.0 and float(points.max()) <= 1.0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_sample_other_seed_other_sample(sampler: str) -> None:
    first = sample(sampler, 32, 3, seed=7)
    assert torch.equal(first, sample(sampler, 32, 3, seed=7))
    assert not torch.equal(first, sample(sampler, 32, 3, seed=8))


@pytest.mark.parametrize("sampler", ["sobol", "lhs"])
def test_stratified_samplers_put_one_point_in_each_interval(sampler: str) -> None:
    # A scrambled Sobol' net of 2^m points and a Latin hypercube both have exactly one point
    # in each of the N intervals [k/N, (k+1)/N) of every coordinate; plain uniform points do not.
    nb_design = 128
    points = sample(sampler, nb_design, 4, seed=3).double()
    cells = torch.floor(points * nb_design).long()
    for column in cells.T:
        assert sorted(column.tolist()) == list(range(nb_design))
    uniform = torch.floor(sample("random", nb_design, 4, seed=3).double() * nb_design).long()
    assert any(len(set(column.tolist())) < nb_design for column in uniform.T)


def test_scrambled_sobol_is_scipy_with_its_seed() -> None:
    # The sampler is scipy's scrambled Sobol', not a home-made sequence: check it against scipy.
    from scipy.stats import qmc

    rng_keyword = designs_module._RNG_KEYWORD
    engine = qmc.Sobol(6, scramble=True, **{rng_keyword: np.random.default_rng(5)})
    expected = torch.from_numpy(engine.random_base2(4)).float()
    assert torch.equal(sample("sobol", 16, 3, seed=5), expected)


@pytest.mark.parametrize("pairing", PAIRINGS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_design_layout(sampler: str, pairing: str) -> None:
    nb_design, nb_dims = 16, 4
    points = sample(sampler, nb_design, nb_dims, seed=1)
    design, report = sensitivity_design(nb_dims, nb_design, sampler, seed=1, pairing=pairing, report=True)
    assert design.shape == (nb_design * (nb_dims + 2), nb_dims)
    assert design.dtype == torch.float32
    assert float(design.min()) >= 0.0 and float(design.max()) <= 1.0
    a, b = design[:nb_design], design[nb_design : 2 * nb_design]
    # A is the first half of one 2d-dimensional sample, B the second half's columns in the
    # order of the report: the textbook order for "halves", a permutation of it for "matched".
    assert torch.equal(a, points[:, :nb_dims])
    assert sorted(report.columns) == list(range(nb_dims, 2 * nb_dims))
    assert torch.equal(b, points[:, list(report.columns)])
    if pairing == "halves":
        assert report.columns == tuple(range(nb_dims, 2 * nb_dims))
    for i in range(nb_dims):
        c_i = design[(2 + i) * nb_design : (3 + i) * nb_design]
        others = [j for j in range(nb_dims) if j != i]
        assert torch.equal(c_i[:, others], a[:, others])
        assert torch.equal(c_i[:, i], b[:, i])
        assert not torch.equal(c_i[:, i], a[:, i])


# --- the pairing of A and B ----------------------------------------------------------------


def by_hand_correlations(design: torch.Tensor, nb_design: int) -> np.ndarray:
    a = design[:nb_design].double().numpy()
    b = design[nb_design : 2 * nb_design].double().numpy()
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


@pytest.mark.parametrize(("nb_dims", "nb_design"), [(10, 32), (121, 32), (121, 64), (121, 128), (50, 64)])
def test_matched_pairs_do_not_correlate_where_the_halves_do(nb_dims: int, nb_design: int) -> None:
    # The textbook halves pair columns (i, d + i) of scipy's Sobol' engine, some of which
    # correlate at |r| > 0.6 whatever the seed (d = 121: cells 40 and 105 up to N = 128).
    for seed in (0, 1):
        with pytest.warns(CorrelatedDesignWarning, match=r"correlate at r = [+-]0\.[6-9]"):
            halves, old = sensitivity_design(nb_dims, nb_design, seed=seed, pairing="halves", report=True)
        assert old.max_correlation > 0.6
        by_hand = by_hand_correlations(halves, nb_design)
        np.testing.assert_allclose(old.correlations.numpy(), by_hand, atol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            design, report = sensitivity_design(nb_dims, nb_design, seed=seed, report=True)
        assert report.pairing == "matched"
        by_hand = by_hand_correlations(design, nb_design)
        np.testing.assert_allclose(report.correlations.numpy(), by_hand, atol=1e-6)
        assert report.max_correlation < 0.1
        assert report.max_correlation == pytest.approx(float(np.abs(by_hand).max()))
        assert 0 <= report.worst_input < nb_dims


@pytest.mark.parametrize("nb_dims", [1, 2, 3, 5, 10, 20, 50, 121, 256])
@pytest.mark.parametrize("nb_design", [16, 256])
def test_matched_design_stays_under_the_threshold(nb_dims: int, nb_design: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CorrelatedDesignWarning
        _, report = sensitivity_design(nb_dims, nb_design, seed=3, report=True)
    assert report.max_correlation < CORRELATION_THRESHOLD


def test_the_warning_names_the_input_and_the_way_out() -> None:
    with pytest.warns(CorrelatedDesignWarning) as record:
        _, report = sensitivity_design(121, 32, seed=0, pairing="halves", report=True)
    assert issubclass(CorrelatedDesignWarning, UserWarning)
    message = str(record[0].message)
    assert f"input {report.worst_input} correlate" in message
    assert "nb_dims=121, nb_design=32" in message and "pairing='matched'" in message
    assert record[0].filename == __file__  # stacklevel points at the caller


def test_a_dominant_input_reads_its_index_at_every_cell() -> None:
    # y = x_k + 0.01 Σ_{j≠k} x_j on an 11 × 11 grid, k swept over all 121 cells: the total
    # index of x_k is 1 / (1 + 120e-4) = 0.988. The textbook halves read 0.15 at cell 40.
    nb_dims, nb_design = 121, 32
    weights = torch.full((nb_dims, nb_dims), 0.01, dtype=torch.float64)
    weights.fill_diagonal_(1.0)
    truth = 1.0 / (1.0 + (nb_dims - 1) * 1e-4)

    def dominant_readings(design: torch.Tensor) -> torch.Tensor:
        scores = design.double() @ weights.T  # column k: the function dominated by x_k
        return torch.stack([total_order_indices(scores[:, k], nb_dims, nb_design)[k] for k in range(nb_dims)])

    for seed in (0, 1, 2):
        matched = dominant_readings(sensitivity_design(nb_dims, nb_design, seed=seed))
        assert float(matched.min()) >= 0.8, (seed, int(matched.argmin()))
        with pytest.warns(CorrelatedDesignWarning):
            halves = dominant_readings(sensitivity_design(nb_dims, nb_design, seed=seed, pairing="halves"))
        assert float(halves.min()) < 0.5
        # Measured over seeds 0-2: mean error 0.023-0.037 matched, against 0.09-0.11 for the halves.
        assert float((matched - truth).abs().mean()) < 0.045 < float((halves - truth).abs().mean())


def test_pair_correlations_by_hand() -> None:
    a = torch.tensor([[0.1, 0.9], [0.4, 0.2], [0.7, 0.5]])
    r = pair_correlations(a, torch.flip(a, dims=[0]))
    assert r.dtype == torch.float64
    # Column 1 against itself reversed: (0.9, 0.2, 0.5) vs (0.5, 0.2, 0.9), centred (1/3)(1.1, -1, 0.2)...
    expected = np.corrcoef([0.9, 0.2, 0.5], [0.5, 0.2, 0.9])[0, 1]
    np.testing.assert_allclose(r.numpy(), [-1.0, expected], atol=1e-12)
    # A constant column correlates with nothing.
    assert pair_correlations(torch.ones(4, 1), torch.rand(4, 1)).tolist() == [0.0]
    with pytest.raises(ValueError, match=r"same shape, N >= 2; got shapes \(3, 2\) and \(3, 1\)"):
        pair_correlations(a, a[:, :1])
    with pytest.raises(TypeError, match="ndarray"):
        pair_correlations(a.numpy(), a)  # type: ignore[arg-type]


def test_unknown_pairing_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pairing must be one of 'matched', 'halves'; got 'sorted'"):
        sensitivity_design(3, 8, pairing="sorted")


def test_design_determinism() -> None:
    assert torch.equal(sensitivity_design(3, 32, seed=4), sensitivity_design(3, 32, seed=4))
    assert not torch.equal(sensitivity_design(3, 32, seed=4), sensitivity_design(3, 32, seed=5))


def test_pick_freeze_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[5.0, 6.0], [7.0, 8.0]])
    expected = torch.tensor(
        [[1, 2], [3, 4], [5, 6], [7, 8], [5, 2], [7, 4], [1, 6], [3, 8]], dtype=torch.float32
    )
    assert torch.equal(pick_freeze_design(a, b), expected)
    # The operands are left as they were.
    assert torch.equal(a, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_pick_freeze_rejects_bad_operands() -> None:
    with pytest.raises(ValueError, match=r"same shape.*got shapes \(2, 3\) and \(2, 2\)"):
        pick_freeze_design(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="got shapes"):
        pick_freeze_design(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"float32 on cpu and torch\.float64"):
        pick_freeze_design(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="ndarray"):
        pick_freeze_design(np.zeros((2, 2)), torch.zeros(2, 2))  # type: ignore[arg-type]


def test_sobol_needs_a_power_of_two() -> None:
    with pytest.raises(ValueError, match=r"power of two.*got 100: use 64 or 128"):
        sample("sobol", 100, 3)
    # Other samplers take any size.
    assert sample("halton", 100, 3).shape == (100, 6)
    assert sample("lhs", 100, 3).shape == (100, 6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sampler": "sobel"}, ValueError, r"'sobol', 'halton', 'lhs', 'random'; got 'sobel'"),
        ({"nb_design": 1}, ValueError, "nb_design must be an int >= 2; got 1"),
        ({"nb_design": 32.0}, TypeError, "nb_design must be an int >= 2; got 32.0 (float)"),
        ({"nb_dims": 0}, ValueError, "nb_dims must be a positive int; got 0"),
        ({"seed": -1}, ValueError, "seed must be a non-negative int below 2**32; got -1"),
        ({"seed": True}, TypeError, "seed must be a non-negative int below 2**32; got True (bool)"),
        ({"nb_dims": 20_000}, ValueError, "at most 10600 inputs"),
    ],
)
def test_sample_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"sampler": "sobol", "nb_design": 32, "nb_dims": 3, "seed": 0}
    arguments.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        sample(**arguments)  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    result = doctest.testmod(designs_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_sobol_attribution_uses_the_shared_matched_design_and_reports_it() -> None:
    from torch import nn

    from spyglass.attributions import SobolAttribution

    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sobol = SobolAttribution(model, grid_size=11, nb_design=32, seed=2, progress=False)
    assert torch.equal(sobol.design, sensitivity_design(121, 32, seed=2))
    assert sobol.design_report.pairing == "matched" and sobol.design_report.max_correlation < 0.1
    with pytest.warns(CorrelatedDesignWarning, match="pairing='halves'"):
        old = SobolAttribution(model, grid_size=11, nb_design=32, seed=2, pairing="halves", progress=False)
    assert old.design_report.max_correlation > 0.6
    with pytest.raises(ValueError, match="pairing must be one of"):
        SobolAttribution(model, pairing="random")
