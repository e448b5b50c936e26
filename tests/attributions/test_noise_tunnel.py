"""The noise tunnel around any method, and its three presets (SmoothGrad, VarGrad, SquareGrad)."""

import numpy as np
import pytest
import torch

from spyglass import attributions
from spyglass.models import VisionModel
from tests.helpers import mixed_mode, module_flags

TARGETS = torch.tensor([0, 1, 2, 3, 4])


def noisy_copy(image: torch.Tensor, sigma: float, seed: int, row: int) -> torch.Tensor:
    """Row ``row`` of the noise stream: the contract the maps' seed determinism rests on."""
    state = int(np.random.SeedSequence([seed, row]).generate_state(1)[0])
    return image + sigma * torch.randn(image.shape, generator=torch.Generator().manual_seed(state))


def statistic(values: torch.Tensor, name: str) -> torch.Tensor:
    values = values.double()
    if name == "mean":
        return values.mean(0)
    if name == "var":
        return values.var(0, unbiased=False)
    return values.square().mean(0)


PRESETS = {"smoothgrad": "mean", "vargrad": "var", "squaregrad": "square"}


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_presets_are_the_statistic_of_signed_gradients_then_the_channel_max(
    name: str, batch_size: int, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    n, sigma, seed = 5, 0.15, 7
    maps = attributions.create(
        name, tiny, nb_samples=n, noise=sigma, seed=seed, batch_size=batch_size, progress=False
    )(tiny_images, TARGETS)
    expected = []
    for i, image in enumerate(tiny_images):
        gradients = []
        for k in range(n):
            x = noisy_copy(image, sigma, seed, i * n + k)[None].requires_grad_(True)
            (gradient,) = torch.autograd.grad(tiny(x)[0, TARGETS[i]], x)
            gradients.append(gradient[0])
        per_channel = statistic(torch.stack(gradients), PRESETS[name])
        expected.append((per_channel.abs() if name == "smoothgrad" else per_channel).amax(0))
    torch.testing.assert_close(maps, torch.stack(expected).float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("statistic_name", ["mean", "var", "square"])
def test_smoothgrad_of_gradcam_is_gradcam_on_each_noisy_copy(
    statistic_name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    n, sigma, seed = 4, 0.1, 3
    cam = attributions.GradCAM(tiny, layer="3", progress=False)
    tunnel = attributions.NoiseTunnel(cam, nb_samples=n, noise=sigma, statistic=statistic_name, seed=seed)
    maps = tunnel(tiny_images, TARGETS)
    per_image = []
    for i, image in enumerate(tiny_images):  # Grad-CAM on one noisy copy at a time
        copies = [noisy_copy(image, sigma, seed, i * n + k)[None] for k in range(n)]
        cams = torch.stack([cam.explain(copy, TARGETS[i : i + 1])[0] for copy in copies])
        per_image.append(statistic(cams, statistic_name))
    slow = torch.stack(per_image).float()
    assert float(slow.std()) > 0
    torch.testing.assert_close(maps, slow, rtol=1e-5, atol=1e-6)
    if statistic_name == "mean":  # the registry spells the same thing by name
        by_name = attributions.create(
            "smoothgrad", tiny, base="gradcam", base_options={"layer": "3"}, nb_samples=n, noise=sigma,
            seed=seed, progress=False,
        )  # fmt: skip
        torch.testing.assert_close(by_name(tiny_images, TARGETS), maps, rtol=0, atol=0)


def wrapped(name: str, model: VisionModel, **options: object) -> attributions.Attribution:
    if name == "smoothgrad_of_gradcam":
        return attributions.create(
            "smoothgrad", model, base="gradcam", nb_samples=3, progress=False, **options
        )
    guided = attributions.GuidedBackprop(model, progress=False)
    return attributions.NoiseTunnel(guided, nb_samples=3, statistic="var", **options)  # type: ignore[arg-type]


WRAPPED = ["smoothgrad_of_gradcam", "vargrad_of_guided_backprop"]


@pytest.mark.parametrize("name", WRAPPED)
def test_wrapped_methods_keep_batch_size_invariance_and_seed_determinism(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    one = wrapped(name, tiny, batch_size=1)(tiny_images, 3)
    many = wrapped(name, tiny, batch_size=64)(tiny_images, 3)
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-5)
    assert float(one.std()) > 0
    first = wrapped(name, tiny, seed=3)(tiny_images, 1)
    torch.testing.assert_close(wrapped(name, tiny, seed=3)(tiny_images, 1), first, rtol=0, atol=0)
    assert not torch.equal(wrapped(name, tiny, seed=4)(tiny_images, 1), first)


@pytest.mark.parametrize("name", WRAPPED)
def test_wrapped_methods_leave_the_model_as_found(
    name: str, tiny: VisionModel, tiny_images: torch.Tensor
) -> None:
    model = mixed_mode(tiny)
    before = module_flags(model)
    wrapped(name, model)(tiny_images[:2], 0)
    assert module_flags(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not (m._forward_hooks or m._backward_hooks or m._forward_pre_hooks) for m in model.modules())


def test_without_noise_the_tunnel_returns_the_method(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    guided = attributions.GuidedBackprop(tiny, progress=False)
    plain = guided(tiny_images, TARGETS)
    mean = attributions.NoiseTunnel(guided, nb_samples=3, noise=0.0)(tiny_images, TARGETS)
    torch.testing.assert_close(mean, plain)
    var = attributions.NoiseTunnel(guided, nb_samples=3, noise=0.0, statistic="var")(tiny_images, TARGETS)
    torch.testing.assert_close(var, torch.zeros_like(var), rtol=0, atol=1e-10)


def test_a_built_base_of_the_same_model_is_accepted(tiny: VisionModel, tiny_images: torch.Tensor) -> None:
    cam = attributions.GradCAM(tiny, progress=False)
    by_instance = attributions.VarGrad(tiny, base=cam, nb_samples=3, progress=False)(tiny_images, 2)
    by_class = attributions.NoiseTunnel(cam, nb_samples=3, statistic="var")(tiny_images, 2)
    torch.testing.assert_close(by_instance, by_class, rtol=0, atol=0)


def test_bad_compositions_are_reported(tiny: VisionModel) -> None:
    with pytest.raises(TypeError, match="method must be an attribution method"):
        attributions.NoiseTunnel(tiny, nb_samples=3)  # type: ignore[arg-type]
    saliency = attributions.Saliency(tiny)
    with pytest.raises(ValueError, match="statistic must be one of 'mean', 'var', 'square'"):
        attributions.NoiseTunnel(saliency, statistic="variance")
    with pytest.raises(ValueError, match="nb_samples must be a positive int"):
        attributions.NoiseTunnel(saliency, nb_samples=0)
    other = attributions.Saliency(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)))
    with pytest.raises(ValueError, match="same model"):
        attributions.SmoothGrad(tiny, base=other)
    with pytest.raises(ValueError, match="set its options"):
        attributions.SmoothGrad(tiny, base=saliency, base_options={"batch_size": 2})
    with pytest.raises(ValueError, match="without a base method"):
        attributions.SmoothGrad(tiny, base_options={"layer": "3"})
    with pytest.raises(TypeError, match="base must be None"):
        attributions.SmoothGrad(tiny, base=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Did you mean gradcam"):
        attributions.SmoothGrad(tiny, base="gradcm")
