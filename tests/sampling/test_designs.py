import doctest

import numpy as np
import pytest
import torch

from spyglass.sampling import SAMPLERS, pick_freeze_design, sample, sensitivity_design
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


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_design_layout(sampler: str) -> None:
    nb_design, nb_dims = 16, 4
    points = sample(sampler, nb_design, nb_dims, seed=1)
    design = sensitivity_design(nb_dims, nb_design, sampler, seed=1)
    assert design.shape == (nb_design * (nb_dims + 2), nb_dims)
    assert design.dtype == torch.float32
    assert float(design.min()) >= 0.0 and float(design.max()) <= 1.0
    a, b = design[:nb_design], design[nb_design : 2 * nb_design]
    # A and B are the two halves of one 2d-dimensional sample.
    assert torch.equal(a, points[:, :nb_dims])
    assert torch.equal(b, points[:, nb_dims:])
    for i in range(nb_dims):
        c_i = design[(2 + i) * nb_design : (3 + i) * nb_design]
        others = [j for j in range(nb_dims) if j != i]
        assert torch.equal(c_i[:, others], a[:, others])
        assert torch.equal(c_i[:, i], b[:, i])
        assert not torch.equal(c_i[:, i], a[:, i])


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
        ({"nb_design": 32.0}, TypeError, "nb_design must be an int >= 2; got float"),
        ({"nb_dims": 0}, ValueError, "nb_dims must be an int >= 1; got 0"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0; got -1"),
        ({"seed": True}, TypeError, "seed must be an int >= 0; got bool"),
        ({"nb_dims": 20_000}, ValueError, "at most 10600 inputs"),
    ],
)
def test_sample_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"sampler": "sobol", "nb_design": 32, "nb_dims": 3, "seed": 0}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        sample(**arguments)  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    result = doctest.testmod(designs_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
