"""Bad input is refused clearly, unsupported operations are named with their node, the model left as found."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from spyglass import models
from spyglass.bounds import UnsupportedOperationError, interval_bounds, layer_bounds, linear_bounds
from tests.helpers import left_as_found, mixed_mode

FUNCTIONS = [interval_bounds, linear_bounds]


class Gate(nn.Module):
    """A squeeze-excitation gate: the product of two bounded tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.conv(x))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self.norm = nn.LayerNorm(4)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.gate(x))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_an_unsupported_operation_is_named_with_its_node(function: object) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), Block())
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(UnsupportedOperationError, match=r"product of two bounded tensors") as error:
        function(model, x, x + 0.1)  # type: ignore[operator]
    assert "node 'mul'" in str(error.value)
    norm_only = nn.Sequential(nn.Conv2d(1, 2, 1), nn.LayerNorm(4))
    with pytest.raises(UnsupportedOperationError, match=r"the module LayerNorm at node '_1' \(module '1'\)"):
        function(norm_only, x, x + 0.1)  # type: ignore[operator]
    assert issubclass(UnsupportedOperationError, ValueError)


def test_batch_norm_without_running_statistics_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, track_running_stats=False))
    x = torch.rand(2, 1, 3, 3)
    with pytest.raises(UnsupportedOperationError, match="statistics of each batch"):
        interval_bounds(model, x, x)


def test_dropout_in_training_mode_by_function_is_refused() -> None:
    class Dropping(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return nn.functional.dropout(x, 0.5, training=True)

    x = torch.rand(1, 3)
    with pytest.raises(UnsupportedOperationError, match="dropout in training mode"):
        interval_bounds(Dropping(), x, x)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_bad_boxes_are_refused_with_what_was_expected(function: object) -> None:
    model = nn.Linear(3, 2)
    x = torch.rand(2, 3)
    cases: list[tuple[object, object, type[Exception], str]] = [
        (x + 0.1, x, ValueError, r"lower must be <= upper everywhere; it is larger at 6 of 6"),
        (x, torch.rand(2, 4), ValueError, r"same shape; got \(2, 3\) and \(2, 4\)"),
        (x.numpy(), x, TypeError, r"lower must be a torch.Tensor"),
        (x.long(), x.long(), TypeError, r"floating-point"),
        (torch.rand(3), torch.rand(3) + 1, ValueError, r"batch dimension first"),
        (x * float("nan"), x, ValueError, r"finite"),
        (torch.rand(2, 5), torch.rand(2, 5) + 1, ValueError, r"cannot run on inputs of shape \(2, 5\)"),
        (x.double(), x.double(), ValueError, r"inputs' dtype, torch.float64, but the model's parameters"),
    ]
    for lower, upper, kind, message in cases:
        with pytest.raises(kind, match=message):
            function(model, lower, upper)  # type: ignore[operator]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_spec_of_the_wrong_shape_says_what_was_expected(function: object) -> None:
    model = nn.Linear(3, 4)
    x = torch.rand(2, 3)
    for spec in (torch.ones(2, 5), torch.ones(3, 2, 4), torch.ones(4), torch.ones(0, 4)):
        with pytest.raises(
            ValueError, match=r"spec must be a \(K, 4\) matrix or a \(2, K, 4\) batch of them"
        ):
            function(model, x, x + 0.1, spec=spec)  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"spec must be a torch\.Tensor"):
        function(model, x, x + 0.1, spec=[[1.0, 0.0, 0.0, 0.0]])  # type: ignore[operator]
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match=r"outputs of shape \(N, classes\)"):
        function(conv, torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), spec=torch.ones(1, 2))  # type: ignore[operator]


def test_bad_options_are_refused() -> None:
    model, x = nn.Linear(3, 2), torch.rand(1, 3)
    with pytest.raises(ValueError, match="intermediate"):
        linear_bounds(model, x, x, intermediate="forward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_limit"):
        linear_bounds(model, x, x, memory_limit=0)
    with pytest.raises(ValueError, match="method"):
        layer_bounds(model, x, x, method="exact")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        interval_bounds(lambda t: t, x, x)  # type: ignore[arg-type]


def test_crown_over_its_memory_limit_raises_before_computing_and_points_to_the_cheaper_modes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"GiB of linear coefficients.*intermediate='ibp'.*bounds='hybrid'"):
        linear_bounds(model, x, x + 0.01, memory_limit=10 * 1024**2)
    low, high = linear_bounds(model, x, x + 0.01, intermediate="ibp", memory_limit=10 * 1024**2)
    assert low.shape == (1, 10) and (low <= high).all()


def test_the_model_is_left_as_found(tiny: nn.Module) -> None:
    model = mixed_mode(
        nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(3)
        )
    )
    model(
        torch.rand(1, 3, 5, 5)
    )  # materialise the lazy layer (train mode moves running stats: before the check)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    x = torch.rand(2, 3, 5, 5)
    with left_as_found(model):
        interval_bounds(model, x, x + 0.1)
        linear_bounds(model, x, x + 0.1, torch.ones(1, 3))
        layer_bounds(model, x, x + 0.1, method="crown")
        with pytest.raises(ValueError):
            interval_bounds(model, x + 0.1, x)
    assert torch.is_grad_enabled()
    images = torch.rand(1, 3, 32, 32)
    with left_as_found(mixed_mode(tiny)):
        low, high = interval_bounds(tiny, images - 0.01, images + 0.01)
        margins = torch.eye(5)[:2] - torch.eye(5)[2]
        crown = linear_bounds(tiny, images - 0.01, images + 0.01, margins, intermediate="ibp")
    with torch.no_grad():
        logits = tiny.eval()(images)
    assert (low <= logits + 1e-5).all() and (logits <= high + 1e-5).all()
    assert crown[0].shape == (1, 2)


def test_the_halves_of_a_split_are_bounded_on_activations() -> None:
    """EVA's hybrid mode bounds h: a graph module taking (N, C, h, w) or (N, features) activations."""
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
    model = models.VisionModel(
        network, input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, class_names=list("abcde")
    )
    for layer, shape in (("0", (2, 4, 6, 6)), ("3", (2, 4))):
        g, h = models.split(model, layer, input_size=(8, 8))
        activations = g(torch.rand(2, 3, 8, 8)).detach()
        assert activations.shape == shape
        lower, upper = activations - 0.05, activations + 0.05
        with torch.no_grad():
            inside = h(lower + torch.rand_like(lower) * 0.1)
        for low, high in (interval_bounds(h, lower, upper), linear_bounds(h, lower, upper)):
            assert low.shape == (2, 5)
            assert (low <= inside + 1e-5).all() and (inside <= high + 1e-5).all()


def test_bounds_that_overflow_to_nan_are_refused() -> None:
    model = nn.Sequential(nn.Linear(1, 2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3e38], [-3e38]]))
        model[1].weight.fill_(3e38)
    x = torch.tensor([[1.0]])  # the first layer's centres are +inf and -inf, their sum NaN
    with pytest.raises(ValueError, match="overflowed"):
        interval_bounds(model, x, x + 2)
