import warnings

import pytest
import torch

from spyglass import engines
from spyglass.engines import state
from spyglass.engines.state import eval_mode, train_mode
from tests.helpers import mixed_mode, module_flags


def model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2), torch.nn.Dropout())


@pytest.mark.parametrize(("switch", "flag"), [(eval_mode, False), (train_mode, True)])
def test_every_flag_is_set_inside_and_each_one_restored_after(switch, flag) -> None:  # type: ignore[no-untyped-def]
    net = mixed_mode(model())
    before = module_flags(net)
    with switch(net):
        assert all(m.training is flag for m in net.modules())
    assert module_flags(net) == before
    with pytest.raises(RuntimeError, match="boom"), switch(net):
        raise RuntimeError("boom")
    assert module_flags(net) == before


def test_eval_mode_does_not_touch_grad_mode() -> None:
    with eval_mode(model()):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_the_old_name_still_works_and_warns() -> None:
    net = model().train()
    for module in (engines, state):
        with pytest.warns(DeprecationWarning, match="use spyglass.engines.eval_mode"):
            context = module.inference_mode(net)
        with context:
            assert not net.training
        assert net.training
    assert "inference_mode" not in engines.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
            _ = engines.no_such_name
