"""Grad-CAM and Grad-CAM++: by hand on GAP networks, a float64 textbook Grad-CAM++, Captum on Lite0."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from spyglass import attributions
from spyglass.attributions.gradcam import default_cam_layer
from spyglass.models import VisionModel
from tests.attributions.peers import agree, captum_attr, imagenet_photos
from tests.helpers import mixed_mode, module_flags

PHOTO_CLASSES = [0, 281, 967]  # tench, tabby, espresso


def wrap(network: torch.nn.Module, size: int, classes: int) -> VisionModel:
    """Identity normalisation, so that the hand computations work on raw pixels."""
    return VisionModel(
        network, input_size=(size, size), mean=(0, 0, 0), std=(1, 1, 1), class_names=list("abcde")[:classes]
    )


def gap_model(stride: int = 1, seed: int = 0) -> VisionModel:
    """conv → ReLU → global average pooling → linear: the network CAM (Zhou et al., 2016) was made for."""
    torch.manual_seed(seed)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, stride=stride),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    return wrap(network, 8, 3)


def hand_features(model: VisionModel, x: torch.Tensor) -> torch.Tensor:
    conv = model.network[0]
    return F.conv2d(x, conv.weight, conv.bias, stride=conv.stride, padding=conv.padding).clamp_min(0)


def images(n: int = 3, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_gradcam_of_a_gap_network_is_cam_by_hand() -> None:
    """∂y/∂A_kij = W_yk / hw, so Grad-CAM = ReLU(Σ_k W_yk A_k) / hw: the CAM, up to 1/hw."""
    model, x, targets = gap_model(), images(), torch.tensor([0, 2, 1])
    method = attributions.GradCAM(model, progress=False)
    assert method.layer == "1"  # the ReLU feature map, the last one before pooling
    features = hand_features(model, x)
    weight = model.network[4].weight[targets]  # (N, C)
    cam = torch.einsum("nc,nchw->nhw", weight, features).clamp_min(0) / 64
    assert (cam == 0).any() and (cam > 0).any(), "the ReLU must matter for this test to mean anything"
    torch.testing.assert_close(method(x, targets), cam.detach())


def test_gradcam_upsamples_bilinearly_without_aligned_corners() -> None:
    """A stride-2 conv gives a 4 × 4 map; the 8 × 8 result is its bilinear resampling."""
    model, x = gap_model(stride=2), images()
    features = hand_features(model, x)
    cam = torch.einsum("c,nchw->nhw", model.network[4].weight[1], features).clamp_min(0) / 16
    expected = F.interpolate(cam[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(attributions.GradCAM(model, progress=False)(x, 1), expected.detach())
    nearest = F.interpolate(cam[:, None], size=(8, 8), mode="nearest")[:, 0]
    assert not torch.allclose(expected, nearest)


def test_gradcam_pp_of_a_gap_network_by_hand() -> None:
    """g = W_yk / hw everywhere: a = 1 / (2 + W_yk Ā_k), w_k = ReLU(W_yk) / (2 + W_yk Ā_k)."""
    model, x, targets = gap_model(seed=3), images(), torch.tensor([2, 0, 1])
    features = hand_features(model, x)
    weight = model.network[4].weight[targets]
    channel = weight.clamp_min(0) / (2 + weight * features.mean(dim=(2, 3)))
    expected = torch.einsum("nc,nchw->nhw", channel, features).clamp_min(0)
    maps = attributions.GradCAMPlusPlus(model, progress=False)(x, targets)
    torch.testing.assert_close(maps, expected.detach())


def test_gradcam_pp_matches_the_paper_with_exp_and_higher_derivatives_in_float64() -> None:
    """The paper's coefficients from the 2nd and 3rd derivatives of exp(S), by autograd in float64.

    A non-GAP network (a second conv and a linear layer on the flattened map), so the
    gradient varies over space. Our maps drop the common factor exp(S) of the weights.
    """
    torch.manual_seed(5)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(3, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * 5 * 5, 3),
    )
    x, target = images(n=2, size=5, seed=6), 2
    maps = attributions.GradCAMPlusPlus(wrap(network, 5, 3), layer="1", progress=False)(x, target)
    bottom, top = copy.deepcopy(network[:2]).double(), copy.deepcopy(network[2:]).double()
    for n in range(2):
        activations = bottom(x[n : n + 1].double()).detach().requires_grad_(True)
        score = top(activations)[0, target]
        (first,) = torch.autograd.grad(score.exp(), activations, create_graph=True)
        second, third = torch.zeros_like(first), torch.zeros_like(first)
        for index in range(first.numel()):
            (row,) = torch.autograd.grad(
                first.flatten()[index], activations, create_graph=True, retain_graph=True
            )
            second.view(-1)[index] = row.flatten()[index].detach()
            (column,) = torch.autograd.grad(row.flatten()[index], activations, retain_graph=True)
            third.view(-1)[index] = column.flatten()[index]
        first, a = first.detach(), activations.detach()
        denominator = 2 * second + a.sum(dim=(2, 3), keepdim=True) * third
        alpha = torch.where(denominator != 0, second / denominator, 0.0)  # 0/0 where g = 0
        weights = (alpha * first.clamp_min(0)).sum(dim=(2, 3))
        textbook = torch.einsum("nc,nchw->nhw", weights, a).clamp_min(0)[0]
        assert float(textbook.std()) > 0
        ours = maps[n].double() * score.exp().detach()
        torch.testing.assert_close(ours, textbook, rtol=1e-4, atol=1e-6 * float(textbook.max()))


def test_default_layer_is_the_last_feature_map_that_splits(lite0: VisionModel) -> None:
    assert attributions.GradCAM(lite0, progress=False).layer == "bn2"
    resnet = torchvision.models.resnet18(num_classes=5)
    assert default_cam_layer(resnet) == "layer4"


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp"])
def test_bad_layers_are_reported(name: str, tiny: VisionModel) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown layer 'network\.4'.*drop the 'network\.' prefix.*Its last .* are 1, 2, 3, 4",
    ):
        attributions.create(name, tiny, layer="network.4")
    with pytest.raises(ValueError, match=r"layer '7' outputs shape \(5,\).*feature map.*layer='4'"):
        attributions.create(name, tiny, layer="7")
    with pytest.raises(TypeError, match="layer must be a layer name"):
        attributions.create(name, tiny, layer=4)


def test_the_model_may_be_cast_or_moved_after_construction(
    tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    """The split is rebuilt at each call: a cached one would keep the old normalisation buffers."""
    cam = attributions.GradCAM(tiny, progress=False)
    expected = cam(tiny_images, 2)
    tiny.double()
    torch.testing.assert_close(cam(tiny_images.double(), 2), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp"])
def test_model_left_as_found_when_the_objective_raises(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    def failing(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model(x)
        raise RuntimeError("objective failed")

    model = mixed_mode(tiny)
    before = module_flags(model)
    method = attributions.create(name, model, objective=failing, progress=False)
    with pytest.raises(RuntimeError, match="objective failed"):
        method(tiny_images, 0)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not (m._forward_hooks or m._backward_hooks or m._forward_pre_hooks) for m in model.modules())


# --- A peer implementation: Captum's LayerGradCam, on the default model and real photos ----------


@pytest.mark.parametrize("layer", ["bn2", "blocks.5"])
def test_gradcam_agrees_with_captum_on_real_photos(
    lite0: VisionModel, imagenet_samples: Path, layer: str
) -> None:
    x, targets = imagenet_photos(imagenet_samples, lite0, PHOTO_CLASSES)
    ours = attributions.GradCAM(lite0, layer=layer, progress=False)(x, targets)
    module = lite0.network.get_submodule(layer)
    coarse = captum_attr().LayerGradCam(lite0, module).attribute(x, target=targets, relu_attributions=True)
    # Captum's interpolate defaults to nearest; ask for the resampling Grad-CAM documents.
    theirs = captum_attr().LayerAttribution.interpolate(coarse, x.shape[2:], interpolate_mode="bilinear")
    agree(ours, theirs[:, 0])
    torch.testing.assert_close(ours, theirs[:, 0].detach(), rtol=1e-4, atol=1e-5 * float(ours.max()))
