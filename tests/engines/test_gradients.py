import pytest
import torch

from spyglass.engines import batched_gradients, input_gradients, iter_gradients
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
    with pytest.raises(ValueError, match=r"one finite score per input, a float tensor of shape \(2,\)"):
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


# --- input_gradients: the primitive, with create_graph and a chosen mode -------------------------


def tanh_model(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)
    ).to(dtype)


def test_create_graph_gradient_differentiates_into_the_weights_as_finite_differences_say() -> None:
    model = tanh_model()
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 1, 0, 1])
    probe = torch.randn(5, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss() -> torch.Tensor:  # a harmonization-like loss on the saliency
        return (input_gradients(model, x, y, create_graph=True) * probe).sum()

    weight = model[1].weight
    loss().backward()
    assert weight.grad is not None
    analytic = weight.grad.clone()
    numeric = torch.zeros_like(analytic)
    step = 1e-6
    with torch.no_grad():
        for index in range(weight.numel()):
            original = weight.view(-1)[index].item()
            weight.view(-1)[index] = original + step
            up = (input_gradients(model, x, y) * probe).sum()
            weight.view(-1)[index] = original - step
            down = (input_gradients(model, x, y) * probe).sum()
            weight.view(-1)[index] = original
            numeric.view(-1)[index] = (up - down) / (2 * step)
    # Not zero: the saliency of a tanh network really depends on the first layer's weights.
    assert float(analytic.abs().max()) > 1e-2
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_create_graph_passes_gradcheck_in_the_weights() -> None:
    model = tanh_model()
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1, 0, 1])
    second = model[3]

    def saliency_of(weight: torch.Tensor) -> torch.Tensor:
        def objective(net: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            hidden = net[:3](images)
            return torch.nn.functional.linear(hidden, weight, second.bias).gather(1, targets[:, None])[:, 0]

        return input_gradients(model, x, y, objective=objective, create_graph=True)

    w = second.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(saliency_of, (w,))
    assert torch.autograd.gradgradcheck(saliency_of, (w,))


def test_without_create_graph_the_gradient_is_detached_and_equals_the_batched_one() -> None:
    model = tanh_model(torch.float32)
    x = torch.rand(4, 1, 2, 2)
    y = torch.tensor([0, 1, 0, 1])
    gradient, scores = input_gradients(model, x, y, return_scores=True)
    assert not gradient.requires_grad and not scores.requires_grad
    torch.testing.assert_close(gradient, batched_gradients(model, x, y, progress=False), rtol=0, atol=0)
    kept, kept_scores = input_gradients(model, x, y, create_graph=True, return_scores=True)
    assert kept.requires_grad and kept_scores.requires_grad
    torch.testing.assert_close(kept.detach(), gradient)


def test_create_graph_leaves_grad_untouched_until_the_caller_backprops() -> None:
    model = tanh_model(torch.float32)
    x = torch.rand(4, 1, 2, 2)
    gradient = input_gradients(model, x, torch.tensor([0, 1, 0, 1]), create_graph=True)
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and x.grad is None
    gradient.square().sum().backward()
    assert model[1].weight.grad is not None and model[3].weight.grad is not None
    assert model[3].bias.grad is None  # the input gradient does not depend on the last bias


def test_an_input_already_in_a_graph_stays_connected_with_create_graph() -> None:
    model = tanh_model()
    source = torch.rand(2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    # tanh's second derivative: the saliency at 2 * source depends on source.
    gradient = input_gradients(model, 2 * source, torch.tensor([0, 1]), create_graph=True)
    (through,) = torch.autograd.grad(gradient.sum(), source)
    assert float(through.abs().max()) > 0


def batch_norm_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 1),
        torch.nn.BatchNorm2d(3),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(12, 2),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1.0, 1.0)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def by_hand(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(leaf).gather(1, y[:, None]).sum(), leaf)
    return gradient


def test_train_mode_uses_batch_statistics_and_restores_every_flag() -> None:
    model = mixed_mode(batch_norm_model())  # train overall, the batch norm frozen in eval
    before = module_flags(model)
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    running = model[1].running_mean.clone()

    train = input_gradients(model, x, y, mode="train")
    assert module_flags(model) == before
    # Batch statistics were used (and, as in any training step, the running ones updated).
    assert not torch.equal(model[1].running_mean, running)
    with torch.no_grad():
        model[1].running_mean.copy_(running)
    model[1].train()
    expected_train = by_hand(model, x, y)
    model[1].eval()
    torch.testing.assert_close(train, expected_train)

    evaluated = input_gradients(model, x, y, mode="eval")
    model.eval()
    torch.testing.assert_close(evaluated, by_hand(model, x, y))
    assert not torch.allclose(train, evaluated, atol=1e-4)

    mixed_mode(model)
    as_is = input_gradients(model, x, y, mode="as_is")
    torch.testing.assert_close(as_is, by_hand(model, x, y))  # the frozen batch norm stays frozen
    assert module_flags(model) == before


def test_bad_mode_targets_and_detached_objectives_are_reported() -> None:
    model = tanh_model(torch.float32)
    x = torch.rand(2, 1, 2, 2)
    with pytest.raises(ValueError, match="mode must be one of 'eval', 'train', 'as_is'"):
        input_gradients(model, x, torch.tensor([0, 1]), mode="training")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"targets must be a tensor of shape \(2,\)"):
        input_gradients(model, x, torch.tensor([0]))
    with pytest.raises(ValueError, match="carry no gradient"):
        input_gradients(model, x, torch.tensor([0, 1]), objective=lambda m, a, t: m(a).detach()[:, 0])


# --- grad modes a notebook user may be in ---------------------------------------------------------


def test_gradients_are_switched_on_under_no_grad() -> None:
    model = tanh_model(torch.float32)
    x = torch.rand(3, 1, 2, 2)
    y = torch.tensor([0, 1, 0])
    expected = batched_gradients(model, x, y, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(batched_gradients(model, x, y, progress=False), expected)
        torch.testing.assert_close(input_gradients(model, x, y), expected)
        assert input_gradients(model, x, y, create_graph=True).requires_grad


def test_under_inference_mode_gradients_are_computed_outside_it_locally() -> None:
    model = tanh_model(torch.float32)
    y = torch.tensor([0, 1])
    x = torch.rand(2, 1, 2, 2)
    expected = input_gradients(model, x, y)
    with torch.inference_mode():
        inference_x, inference_y = x.clone(), y.clone()  # inference tensors
        torch.testing.assert_close(input_gradients(model, inference_x, inference_y), expected)
        torch.testing.assert_close(
            batched_gradients(model, inference_x, inference_y, progress=False), expected
        )
        assert torch.is_inference_mode_enabled()  # the caller's mode is handed back


def test_a_model_built_inside_inference_mode_is_refused_with_the_reason() -> None:
    with torch.inference_mode():
        model = tanh_model(torch.float32)
        with pytest.raises(ValueError, match=r"weights were created inside torch\.inference_mode\(\)"):
            input_gradients(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))
