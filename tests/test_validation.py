import numpy as np
import pytest
import torch

from spyglass.validation import check_images, check_targets


def test_check_images_accepts_a_valid_batch() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert check_images(x) is x


@pytest.mark.parametrize(
    ("images", "error", "fragment"),
    [
        ([[0.0]], TypeError, "got list"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), TypeError, "dtype torch.uint8"),
        (torch.rand(3, 8, 8), ValueError, "add a batch dimension"),
        (torch.rand(2, 1, 8, 8), ValueError, "shape (2, 1, 8, 8)"),
        (torch.rand(0, 3, 8, 8), ValueError, "empty batch"),
        (torch.rand(2, 3, 8, 8) * 255, ValueError, "divide by 255"),
        (torch.rand(2, 3, 8, 8) - 0.5, ValueError, "already normalised"),
    ],
)
def test_check_images_rejects_bad_input(images: object, error: type, fragment: str) -> None:
    with pytest.raises(error, match=r"must be") as info:
        check_images(images)
    assert fragment in str(info.value)


def test_check_images_counts_nan_and_inf() -> None:
    x = torch.rand(2, 3, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    x[1, 2, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="2 NaN or infinite"):
        check_images(x)


def test_check_targets_forms() -> None:
    assert check_targets(3, 4).tolist() == [3, 3, 3, 3]
    assert check_targets(torch.tensor(2), 3).tolist() == [2, 2, 2]
    assert check_targets(torch.tensor([1, 2], dtype=torch.int32), 2).dtype == torch.long
    assert check_targets([0, 9], 2, num_classes=10).tolist() == [0, 9]


@pytest.mark.parametrize(
    ("targets", "error", "fragment"),
    [
        (True, TypeError, "bool"),
        (1.5, TypeError, "float"),
        (torch.tensor([0.0, 1.0]), TypeError, "float32"),
        (torch.tensor([1, 2, 3]), ValueError, "shape (3,)"),
        ([1], ValueError, "got 1"),
        (10, ValueError, "[0, 9]"),
        (-1, ValueError, "[-1, -1]"),
    ],
)
def test_check_targets_rejects_bad_input(targets: object, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        check_targets(targets, 2, num_classes=10)
    assert fragment in str(info.value)


# --- scalars -----------------------------------------------------------------------------
from spyglass.validation import (  # noqa: E402
    InvalidArgumentError,
    check_choice,
    check_float,
    check_fraction,
    check_int,
    check_mapping,
    check_probability,
    check_seed,
)


def test_check_int_accepts_ints_in_bounds_and_numpy_integers() -> None:
    assert check_int(3, "n", 1) == 3
    assert check_int(np.int64(7), "n", 0, maximum=7) == 7
    assert type(check_int(np.int32(2), "n")) is int


@pytest.mark.parametrize("bad", [2.0, True, np.bool_(True), "3", None])
def test_check_int_refuses_other_types_as_both_value_and_type_errors(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="steps must be an int >= 2") as info:
        check_int(bad, "steps", 2)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("value", "minimum", "maximum", "phrase"),
    [(0, 1, None, "a positive int"), (-1, 0, None, "a non-negative int"), (9, 1, 8, r"an int in \[1, 8\]")],
)
def test_check_int_bounds(value: int, minimum: int, maximum: int | None, phrase: str) -> None:
    with pytest.raises(ValueError, match=f"k must be {phrase}; got {value}"):
        check_int(value, "k", minimum, maximum=maximum)


def test_check_seed_range_is_that_of_numpy() -> None:
    assert check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 2**64):
        with pytest.raises(ValueError, match="seed must be a non-negative int below 2"):
            check_seed(bad)
    with pytest.raises(TypeError):
        check_seed(1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_float_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        check_float(bad, "lr", minimum=0, low_open=True)


def test_check_float_open_and_closed_bounds() -> None:
    assert check_probability(0, "p") == 0.0 and check_probability(1, "p") == 1.0
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match=r"f must be a finite number in \(0, 1\)"):
            check_fraction(bad, "f")
    assert check_float(np.float32(0.5), "x", maximum=0.5) == 0.5
    with pytest.raises(ValueError, match=r"x must be a finite number <= 0.5 \(half\)"):
        check_float(0.6, "x", maximum=0.5, hint="half")


def test_check_choice_and_mapping() -> None:
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b'; got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    assert check_mapping(None, "options") == {}
    with pytest.raises(TypeError, match="options must be a mapping"):
        check_mapping([("a", 1)], "options")
    with pytest.raises(TypeError, match="str keys"):
        check_mapping({1: 2}, "options")


def test_check_targets_refuses_indices_beyond_64_bits() -> None:
    with pytest.raises(ValueError, match="no class index can be"):
        check_targets(2**70, 2)
    with pytest.raises(ValueError, match="no class index can be"):
        check_targets([0, 2**64], 2)
    assert check_targets(np.int64(3), 2).tolist() == [3, 3]
    with pytest.raises(TypeError, match="numpy array"):
        check_targets(np.array([1, 2]), 2)


# --- the checks of issue 11 ---------------------------------------------------------------


def test_check_images_converts_any_float_dtype_to_the_models() -> None:
    from spyglass.validation import floating_dtype

    model = torch.nn.Linear(2, 2)
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    assert floating_dtype(model) == torch.float32
    assert check_images(x, model=model).dtype == torch.float32
    assert check_images(x, model=model.double()).dtype == torch.float64
    assert check_images(x).dtype == torch.float64  # no model: as given
    assert floating_dtype(torch.nn.ReLU()) == torch.float32  # no weights: the default


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        (torch.zeros(1, 3, 4, 4, dtype=torch.int64), "images.float() / 255"),
        (torch.zeros(1, 3, 4, 4, device="meta"), "meta device"),
        (torch.zeros(1, 3, 4, 0), "4×0 pixels"),
        (np.zeros((1, 3, 4, 4)), "torch.from_numpy"),
    ],
)
def test_check_images_says_what_to_do(images: object, fragment: str) -> None:
    with pytest.raises((TypeError, ValueError), match="images must be") as info:
        check_images(images)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("logits", "targets", "fragment"),
    [
        (torch.zeros(2), torch.tensor([0, 1]), "got shape (2,) (one score per image"),
        (torch.zeros(2, 5, 1, 1), torch.tensor([0, 1]), "torch.nn.Flatten()"),
        (
            torch.zeros(2, 5),
            torch.tensor([0, 9]),
            "targets must lie in [0, 4] for the model, which returns 5",
        ),
        (torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, 1]), "of a floating dtype"),
        ((torch.zeros(2, 5),), torch.tensor([0, 1]), "got tuple"),
    ],
)
def test_check_logits(logits: object, targets: torch.Tensor, fragment: str) -> None:
    from spyglass.validation import check_logits

    with pytest.raises((TypeError, ValueError)) as info:
        check_logits(logits, targets)
    assert fragment in str(info.value)
    good = torch.zeros(2, 5)
    assert check_logits(good, torch.tensor([0, 4])) is good


def test_check_scores_names_the_objective() -> None:
    from spyglass.objectives import target_logit
    from spyglass.validation import check_scores

    with pytest.raises(
        ValueError, match=r"the objective target_logit returned 1 NaN or infinite score\(s\) among 3"
    ):
        check_scores(torch.tensor([0.0, float("nan"), 1.0]), 3, target_logit)
    with pytest.raises(
        ValueError, match=r"target_logit must return one finite score per input.*\(3,\); got shape"
    ):
        check_scores(torch.zeros(3, 1), 3, target_logit)
    with pytest.raises(TypeError, match=r"got dtype torch\.int64"):
        check_scores(torch.zeros(3, dtype=torch.long), 3, target_logit)


def test_check_finite_tensor_and_rows() -> None:
    from spyglass.validation import check_finite_tensor, check_rows, check_same_shape

    with pytest.raises(
        ValueError, match=r"baseline must be a tensor of finite values in \[0, 1\]; got 1 NaN"
    ):
        check_finite_tensor(torch.tensor([0.5, float("nan")]), "baseline", minimum=0, maximum=1)
    with pytest.raises(ValueError, match=r"got values in \[0, 5\]"):
        check_finite_tensor(torch.tensor([0.0, 5.0]), "baseline", minimum=0, maximum=1)
    with pytest.raises(TypeError, match="numpy array"):
        check_rows(np.zeros((2, 2)), "curves")
    with pytest.raises(ValueError, match=r"x and y must have the same shape; got \(2, 3\) and \(2, 4\)"):
        check_same_shape(torch.zeros(2, 3), torch.zeros(2, 4), ("x", "y"))


def test_check_measured_and_names() -> None:
    from spyglass.validation import check_measured, check_sequence_of_names

    assert check_measured(torch.tensor([1.0, float("nan"), 3.0]), "M", "why") == 2.0
    with pytest.raises(ValueError, match="M has nothing to measure on these 2 value"):
        check_measured(torch.tensor([float("nan")] * 2), "M", "why")
    assert check_sequence_of_names(("a", "b"), "metrics") == ["a", "b"]
    with pytest.raises(TypeError, match=r"write \['deletion'\]"):
        check_sequence_of_names("deletion", "metrics")
    with pytest.raises(TypeError, match="got an item 3"):
        check_sequence_of_names(["a", 3], "metrics")


def test_check_differentiable_model_refuses_inference_weights() -> None:
    from spyglass.validation import check_differentiable_model

    model = torch.nn.Linear(2, 2)
    assert check_differentiable_model(model) is model
    with torch.inference_mode():
        built_there = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"created inside torch.inference_mode\(\)"):
        check_differentiable_model(built_there)


def test_check_targets_refuses_a_meta_tensor() -> None:
    with pytest.raises(ValueError, match="meta device"):
        check_targets(torch.zeros(2, dtype=torch.long, device="meta"), 2)
