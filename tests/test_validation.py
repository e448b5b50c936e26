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
