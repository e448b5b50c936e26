import pytest
import torch

from spyglass.engines import batched_gradients, iter_gradients
from spyglass.objectives import target_log_probability, target_logit, target_probability
from tests.helpers import mixed_mode, module_flags


def linear_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_gradient_of_a_linear_model_is_its_weight_row(batch_size: int) -> None:
    model = linear_model()
    weight = model[1].weight.detach()
    x = torch.rand(7, 3, 2, 2)
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    grads, scores = batched_gradients(
        model, x, targets, batch_size=batch_size, progress=False, return_scores=True
    )
    torch.testing.assert_close(grads, weight[targets].view(7, 3, 2, 2))
    torch.testing.assert_close(scores, model(x).gather(1, targets[:, None]).squeeze(1).detach())


@pytest.mark.parametrize("objective", [target_probability, target_log_probability])
def test_gradient_of_softmax_objectives_matches_by_hand(objective) -> None:  # type: ignore[no-untyped-def]
    model = linear_model()
    weight = model[1].weight.detach()
    x = torch.rand(4, 3, 2, 2)
    targets = torch.tensor([2, 0, 4, 1])
    p = model(x).softmax(1).detach()
    # d log p_y / dx = W_y - sum_k p_k W_k ; d p_y / dx = p_y * that.
    d_log = weight[targets] - p @ weight
    expected = d_log if objective is target_log_probability else p.gather(1, targets[:, None]) * d_log
    grads = batched_gradients(model, x, targets, objective=objective, batch_size=3, progress=False)
    torch.testing.assert_close(grads.view(4, -1), expected, rtol=1e-5, atol=1e-6)


def test_leaves_no_grad_on_parameters_and_modes_as_found() -> None:
    model = mixed_mode(
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 1),
            torch.nn.BatchNorm2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 3),
        )
    )
    before = module_flags(model)
    x = torch.rand(2, 3, 2, 2)
    batched_gradients(model, x, torch.tensor([0, 2]), progress=False)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and x.grad is None


def test_bad_objective_and_targets_are_reported() -> None:
    model = linear_model()
    x = torch.rand(2, 3, 2, 2)
    with pytest.raises(ValueError, match=r"one score per input, shape \(2,\)"):
        batched_gradients(model, x, torch.tensor([0, 1]), objective=lambda m, a, y: m(a), progress=False)
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        batched_gradients(model, x, torch.tensor([0]), progress=False)
    assert target_logit(model, x, torch.tensor([0, 1])).shape == (2,)


class Doubled:
    """A lazy source: row i is 2 * base[i], built only when asked for."""

    def __init__(self, base: torch.Tensor) -> None:
        self.base = base
        self.built: list[slice] = []

    def __len__(self) -> int:
        return int(self.base.shape[0])

    def __getitem__(self, rows: slice) -> torch.Tensor:
        self.built.append(rows)
        return 2 * self.base[rows]


def test_lazy_sources_are_built_one_batch_at_a_time() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh())
    base = torch.rand(5, 3, 2, 2)
    targets = torch.tensor([0, 1, 2, 3, 4])
    source = Doubled(base)
    grads = batched_gradients(model, source, targets, batch_size=2, progress=False)
    expected = batched_gradients(model, 2 * base, targets, batch_size=5, progress=False)
    torch.testing.assert_close(grads, expected)
    assert source.built == [slice(0, 2), slice(2, 4), slice(4, 5)]
    rows = [rows for rows, _, _ in iter_gradients(model, base, targets, batch_size=3, progress=False)]
    assert rows == [slice(0, 3), slice(3, 5)]
