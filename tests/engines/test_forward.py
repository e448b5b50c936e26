import pytest
import torch

from spyglass.engines import batched_forward, iter_batches
from tests.helpers import mixed_mode, module_flags


def test_iter_batches_cover_everything_once() -> None:
    assert list(iter_batches(7, 3)) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    with pytest.raises(ValueError, match="positive int"):
        list(iter_batches(7, 0))


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_batched_forward_equals_one_pass(batch_size: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Dropout(0.5), torch.nn.Tanh())
    x = torch.randn(9, 6)
    expected = model.eval()(x)
    model.train()  # the engine must switch dropout off and give train mode back
    out = batched_forward(model, x, batch_size=batch_size, progress=False)
    torch.testing.assert_close(out, expected)
    assert model.training and not out.requires_grad


def test_custom_fn_sees_rows_and_model() -> None:
    model = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)
    rows_seen = []

    def first_logit(m: torch.nn.Module, batch: torch.Tensor, rows: slice) -> torch.Tensor:
        rows_seen.append(rows)
        return m(batch)[:, 0]

    out = batched_forward(model, x, batch_size=2, progress=False, fn=first_logit)
    torch.testing.assert_close(out, model(x)[:, 0].detach())
    assert rows_seen == [slice(0, 2), slice(2, 4), slice(4, 5)]


def test_modes_of_submodules_restored() -> None:
    model = mixed_mode(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2)))
    before = module_flags(model)
    batched_forward(model, torch.rand(2, 3, 4, 4), progress=False)
    assert module_flags(model) == before
