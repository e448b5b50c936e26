"""HeadFineTuning on the shared loop: the head it trains is, bit for bit, the textbook full-batch Adam."""

import copy

import pytest
import torch
from torch import nn

from spyglass import metrics, training
from spyglass.models import VisionModel
from tests.tiny import tiny_model


@pytest.fixture
def tiny_images() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_head_finetuning_trains_a_copy_and_leaves_the_backbone_alone(tiny_images: torch.Tensor) -> None:
    backbone = tiny_model()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    labels = torch.tensor([0, 1, 2, 3, 4])
    model = metrics.HeadFineTuning(backbone, epochs=200, learning_rate=0.05, weight_decay=0.0)(
        tiny_images, labels
    )
    assert model is not backbone and isinstance(model, VisionModel)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    with torch.no_grad():
        accuracy = float((model(tiny_images).argmax(1) == labels).float().mean())
    assert accuracy == 1.0  # 5 images, 8 features: separable
    assert torch.equal(model.network[0].weight, backbone.network[0].weight)  # backbone frozen
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        metrics.HeadFineTuning(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"not the output of its last nn\.Linear"):
        metrics.HeadFineTuning(torch.nn.Sequential(backbone, torch.nn.Softmax(dim=1)))(tiny_images, labels)
    assert metrics.HeadFineTuning is training.HeadFineTuning


def textbook_head(backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> nn.Linear:
    """Full-batch Adam on the frozen features, written out: what HeadFineTuning did before the loop."""
    head = backbone.network[7]
    features: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: features.append(args[0]))
    with torch.no_grad():
        backbone(images)
    handle.remove()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = nn.Linear(head.in_features, head.out_features)
    optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(fresh(features[0]), labels) + 1e-4 * fresh.weight.square().sum()
        loss.backward()
        optimizer.step()
    return fresh


def test_the_loop_gives_the_textbook_head_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(5)
    images = (
        torch.rand(12, 3, 1, 1, generator=generator) * 0.8
        + torch.rand(12, 3, 32, 32, generator=generator) * 0.2
    )
    labels = torch.tensor([1, 3, 0] * 4)
    backbone = tiny_model()
    expected = textbook_head(copy.deepcopy(backbone), images, labels)
    model = training.HeadFineTuning(backbone)(images, labels)
    assert torch.equal(model.network[7].weight, expected.weight)
    assert torch.equal(model.network[7].bias, expected.bias)


def test_head_finetuning_instances_that_train_alike_are_equal() -> None:
    backbone = tiny_model()
    assert training.HeadFineTuning(backbone) == training.HeadFineTuning(backbone, epochs=100)
    assert training.HeadFineTuning(backbone) != training.HeadFineTuning(backbone, epochs=10)
    assert training.HeadFineTuning(backbone) != training.HeadFineTuning(tiny_model())
    assert len({training.HeadFineTuning(backbone), training.HeadFineTuning(backbone)}) == 1
