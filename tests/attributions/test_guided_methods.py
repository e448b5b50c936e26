"""Guided Backprop and DeconvNet: by hand on small ReLU / ReLU6 networks, Captum, a reference on Lite0.

What is compared with what:

* by hand: the rewritten backward pass of a small MLP, written out layer by layer;
* Captum (``GuidedBackprop``, ``Deconvolution``): Captum rewrites ``nn.ReLU`` modules only,
  so it is compared on networks whose activations are all ``nn.ReLU``: the tiny CNN, and
  Lite0's architecture and real weights with every ``ReLU6`` swapped for ``nn.ReLU`` (a
  different function from Lite0, the same for both implementations), on real photos;
* the default model as it is (``ReLU6``, in place): a hand-written reference that
  swaps each activation for an out-of-place one whose backward is rewritten by a tensor
  hook, a mechanism independent of ours (forward hooks and an autograd function).
"""

import copy
from pathlib import Path

import pytest
import torch

from spyglass import attributions
from spyglass.models import VisionModel
from spyglass.objectives import target_logit
from tests.attributions.peers import agree, captum_attr, imagenet_photos
from tests.helpers import mixed_mode, module_flags

PHOTO_CLASSES = [0, 281, 967]  # tench, tabby, espresso
METHODS = {"guided_backprop": True, "deconvnet": False}  # name → whether the forward gate is kept


def wrap(network: torch.nn.Module, size: int, classes: int) -> VisionModel:
    """Identity normalisation, so that the hand computations work on raw pixels."""
    return VisionModel(
        network, input_size=(size, size), mean=(0, 0, 0), std=(1, 1, 1), class_names=list("abcd")[:classes]
    )


def mlp(
    activation: torch.nn.Module, *, hidden: int = 6, scale: float = 1.0, shared: bool = True
) -> VisionModel:
    """Flatten → Linear → act → Linear → act → Linear on 3 × 2 × 2 images; one module for both acts."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(12, hidden), torch.nn.Linear(hidden, hidden)
    with torch.no_grad():
        first.weight.mul_(scale)
        second.weight.mul_(scale)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second, self.last = first, second, torch.nn.Linear(hidden, 3)
            self.act = activation
            self.act2 = activation if shared else copy.deepcopy(activation)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.last(self.act2(self.second(self.act(self.first(x.flatten(1))))))

    return wrap(Net(), 2, 3)


def by_hand(model: VisionModel, x: torch.Tensor, target: int, upper: float, guided: bool) -> torch.Tensor:
    """The rewritten backward pass, layer by layer: R ← gate(z) · max(R, 0), then R ← Wᵀ R."""
    net = model.network
    z1 = x.flatten(1) @ net.first.weight.T + net.first.bias
    z2 = z1.clamp(0, upper) @ net.second.weight.T + net.second.bias
    signal = net.last.weight[target].expand(x.shape[0], -1)
    for z, linear in ((z2, net.second), (z1, net.first)):
        gate = ((z > 0) & (z < upper)).to(x.dtype) if guided else torch.ones_like(z)
        signal = (gate * signal.clamp_min(0)) @ linear.weight
    return signal.reshape(x.shape).abs().amax(dim=1)


ACTIVATIONS = {
    "relu": (lambda: torch.nn.ReLU(), float("inf")),
    "relu-inplace": (lambda: torch.nn.ReLU(inplace=True), float("inf")),
    "relu6": (lambda: torch.nn.ReLU6(), 6.0),
    "relu6-inplace": (lambda: torch.nn.ReLU6(inplace=True), 6.0),
}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("name", list(METHODS))
def test_rewritten_backward_by_hand(name: str, activation: str) -> None:
    make, upper = ACTIVATIONS[activation]
    model = mlp(make(), scale=20.0)  # large weights: some pre-activations exceed 6
    x = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    maps = attributions.create(name, model, progress=False)(x, 1)
    torch.testing.assert_close(maps, by_hand(model, x, 1, upper, METHODS[name]).detach())
    # The cases the rules tell apart all occur: negative and positive pre-activations,
    # ReLU6's saturation, and negative backward signals.
    z1 = model.network.first(x.flatten(1))
    z2 = model.network.second(z1.clamp(0, upper))
    assert all((z < 0).any() and (z > 0).any() for z in (z1, z2))
    assert (z1 > 6).any() and (z2 > 6).any()
    assert (model.network.last.weight[1] < 0).any()
    plain = attributions.Saliency(model, progress=False)(x, 1)
    assert not torch.allclose(maps, plain), "the rewrite must change the plain gradient"


@pytest.mark.parametrize("name", list(METHODS))
def test_an_activation_module_called_twice_is_rewritten_each_time(name: str) -> None:
    x = torch.rand(3, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    shared = attributions.create(name, mlp(torch.nn.ReLU6(inplace=True)), progress=False)(x, 0)
    separate = attributions.create(name, mlp(torch.nn.ReLU6(inplace=True), shared=False), progress=False)(
        x, 0
    )
    torch.testing.assert_close(shared, separate)


def test_forward_values_are_unchanged(lite0: VisionModel) -> None:
    """The rewrite touches the backward pass only: the explained logit is the model's."""
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    seen: list[torch.Tensor] = []

    def recording(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        score = target_logit(model, images, targets)
        seen.append(score.detach())
        return score

    attributions.GuidedBackprop(lite0, objective=recording, progress=False)(x, 967)
    with torch.no_grad():
        torch.testing.assert_close(seen[0], lite0(x)[:, 967])


@pytest.mark.parametrize("name", list(METHODS))
def test_a_model_without_relu_modules_is_rejected(name: str) -> None:
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.SiLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    with pytest.raises(ValueError, match=r"no nn\.ReLU or nn\.ReLU6 module.*found: 1 SiLU"):
        attributions.create(name, wrap(network, 8, 2))


@pytest.mark.parametrize("name", list(METHODS))
def test_model_left_as_found_when_the_objective_raises(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    def failing(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model(x)
        raise RuntimeError("objective failed")

    model = mixed_mode(tiny)
    before = module_flags(model)
    plain = attributions.Saliency(copy.deepcopy(model), progress=False)(tiny_images, 0)
    with pytest.raises(RuntimeError, match="objective failed"):
        attributions.create(name, model, objective=failing, progress=False)(tiny_images, 0)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not (m._forward_hooks or m._backward_hooks or m._forward_pre_hooks) for m in model.modules())
    # No rewrite lingers: the model's plain gradient is what it was.
    torch.testing.assert_close(attributions.Saliency(model, progress=False)(tiny_images, 0), plain)


# --- Captum, on networks whose activations are all nn.ReLU ---------------------------------------

CAPTUM = {"guided_backprop": "GuidedBackprop", "deconvnet": "Deconvolution"}


@pytest.mark.parametrize("name", list(METHODS))
def test_agrees_with_captum_on_the_tiny_relu_network(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    targets = torch.tensor([0, 1, 2, 3, 4])
    ours = attributions.create(name, tiny, progress=False)(tiny_images, targets)
    theirs = getattr(captum_attr(), CAPTUM[name])(tiny).attribute(tiny_images, target=targets)
    torch.testing.assert_close(ours, theirs.abs().amax(1).detach())


def with_activations(
    model: VisionModel, make: type[torch.nn.Module] | None, guided: bool = True
) -> VisionModel:
    """A copy of ``model`` whose ReLU6 modules become ``make()`` (or the tensor-hook reference)."""
    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        if isinstance(module, torch.nn.ReLU6):
            parent, _, attribute = name.rpartition(".")
            replacement = make() if make is not None else ReferenceRectifier(6.0, guided)
            setattr(copied.get_submodule(parent), attribute, replacement)
    return copied


@pytest.fixture(scope="module")
def photos(lite0: VisionModel, imagenet_samples: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return imagenet_photos(imagenet_samples, lite0, PHOTO_CLASSES)


@pytest.mark.parametrize("name", list(METHODS))
def test_agrees_with_captum_on_lite0_with_relu_on_real_photos(
    name: str, lite0: VisionModel, photos: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, targets = photos
    relu_lite0 = with_activations(lite0, torch.nn.ReLU)
    ours = attributions.create(name, relu_lite0, progress=False)(x, targets)
    theirs = getattr(captum_attr(), CAPTUM[name])(relu_lite0).attribute(x, target=targets)
    agree(ours, theirs.abs().amax(1))


# --- The default model as it is (ReLU6, in place): a reference by another mechanism --------------


class ReferenceRectifier(torch.nn.Module):
    """An out-of-place ``clamp(z, 0, upper)`` whose backward is rewritten by a tensor hook."""

    def __init__(self, upper: float, guided: bool) -> None:
        super().__init__()
        self.upper, self.guided = upper, guided

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        activated = z.clamp(0, self.upper)
        # Guided: the clamp's own backward gates the signal. DeconvNet: a straight-through
        # estimator with the clamp's value and an identity backward, so no gate.
        out = activated if self.guided else z + (activated - z).detach()
        if out.requires_grad:
            out.register_hook(lambda signal: signal.clamp_min(0))
        return out


@pytest.mark.parametrize("name", list(METHODS))
def test_agrees_with_a_reference_on_lite0_with_relu6_on_real_photos(
    name: str, lite0: VisionModel, photos: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, targets = photos
    ours = attributions.create(name, lite0, progress=False)(x, targets)
    reference = with_activations(lite0, None, guided=METHODS[name]).eval()
    inputs = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(target_logit(reference, inputs, targets).sum(), inputs)
    theirs = gradient.abs().amax(1)
    agree(ours, theirs, minimum=0.999)
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-4 * float(theirs.max()))
    # ReLU6 is really rewritten: the plain gradient (what Captum returns on Lite0) differs.
    plain = attributions.Saliency(lite0, progress=False)(x, targets)
    assert not torch.allclose(ours, plain, rtol=0.1, atol=0.1 * float(plain.max()))
