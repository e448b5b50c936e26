"""Gradient-family methods against hand computation, axioms and Captum."""

import pytest
import torch

from spyglass import attributions, data
from spyglass.models import VisionModel
from tests.attributions.peers import agree


def linear_vision_model(weight: torch.Tensor, bias: float = 0.0) -> VisionModel:
    """f_k(x) = <W_k, x> + b on raw pixels (identity normalisation): attributions known by hand."""
    classes, *shape = weight.shape
    linear = torch.nn.Linear(weight[0].numel(), classes)
    with torch.no_grad():
        linear.weight.copy_(weight.reshape(classes, -1))
        linear.bias.fill_(bias)
    network = torch.nn.Sequential(torch.nn.Flatten(), linear)
    return VisionModel(
        network,
        input_size=(shape[1], shape[2]),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        class_names=[str(k) for k in range(classes)],
    )


@pytest.fixture
def linear() -> tuple[VisionModel, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 3, 4, 5, generator=generator)
    images = torch.rand(2, 3, 4, 5, generator=generator)
    return linear_vision_model(weight, bias=0.7), weight, images


def test_saliency_by_hand(linear: tuple[VisionModel, torch.Tensor, torch.Tensor]) -> None:
    model, weight, images = linear
    maps = attributions.Saliency(model, progress=False)(images, torch.tensor([2, 0]))
    torch.testing.assert_close(maps, torch.stack([weight[2].abs().amax(0), weight[0].abs().amax(0)]))


def test_gradient_input_by_hand(linear: tuple[VisionModel, torch.Tensor, torch.Tensor]) -> None:
    model, weight, images = linear
    maps = attributions.GradientInput(model, progress=False)(images, 1)
    torch.testing.assert_close(maps, (weight[1] * images).sum(1))


def test_integrated_gradients_on_a_linear_model_is_exact(
    linear: tuple[VisionModel, torch.Tensor, torch.Tensor],
) -> None:
    model, weight, images = linear
    baseline = torch.full((3, 4, 5), 0.25)
    maps = attributions.IntegratedGradients(model, steps=3, baseline=baseline, progress=False)(images, 2)
    torch.testing.assert_close(maps, (weight[2] * (images - baseline)).sum(1))


def test_integrated_gradients_on_a_quadratic_by_hand() -> None:
    """f(x) = Σ x², baseline 0: ∫ 2αx dα · x = x², exactly, by the trapezoidal rule."""

    class Square(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x**2).flatten(1).sum(1, keepdim=True)

    model = VisionModel(Square(), input_size=(2, 2), mean=(0, 0, 0), std=(1, 1, 1), class_names=["s"])
    x = torch.rand(3, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    maps = attributions.IntegratedGradients(model, steps=5, progress=False)(x, 0)
    torch.testing.assert_close(maps, (x**2).sum(1))


def test_integrated_gradients_completeness_on_the_default_model(lite0: VisionModel) -> None:
    photo = data.sample_photos(["coffee"])["coffee"]
    x = lite0.preprocess(photo)[None]
    ig = attributions.IntegratedGradients(lite0, steps=256, batch_size=64, progress=False)
    maps = ig(x, 967)
    with torch.no_grad():
        gap = float(lite0(x)[0, 967] - lite0(torch.zeros_like(x))[0, 967])
    assert abs(float(maps.sum()) - gap) <= 0.01 * abs(gap), (float(maps.sum()), gap)


def test_integrated_gradients_rejects_bad_options(
    linear: tuple[VisionModel, torch.Tensor, torch.Tensor],
) -> None:
    model, _, images = linear
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        attributions.IntegratedGradients(model, steps=1)
    with pytest.raises(ValueError, match=r"baseline must be a finite number in \[0, 1\]"):
        attributions.IntegratedGradients(model, baseline=2.0)
    with pytest.raises(ValueError, match="baseline must have shape"):
        attributions.IntegratedGradients(model, baseline=torch.zeros(3, 2, 2), progress=False)(images, 0)


# --- A peer implementation: Captum (a test dependency, never a runtime one) ----------------

captum_attr = pytest.importorskip("captum.attr")


@pytest.fixture(scope="module")
def photos(lite0: VisionModel) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = data.sample_photos(["chelsea", "coffee", "motorcycle"])
    images = torch.stack([lite0.preprocess(p) for p in chosen.values()])
    return images, torch.tensor([282, 967, 665])


def test_saliency_agrees_with_captum(lite0: VisionModel, photos: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, targets = photos
    ours = attributions.Saliency(lite0, progress=False)(images, targets)
    theirs = captum_attr.Saliency(lite0).attribute(images, target=targets, abs=True).amax(1)
    agree(ours, theirs)


def test_gradient_input_agrees_with_captum(
    lite0: VisionModel, photos: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, targets = photos
    ours = attributions.GradientInput(lite0, progress=False)(images, targets)
    theirs = captum_attr.InputXGradient(lite0).attribute(images, target=targets).sum(1)
    agree(ours, theirs)


def test_integrated_gradients_agrees_with_captum(
    lite0: VisionModel, photos: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, targets = photos
    ours = attributions.IntegratedGradients(lite0, steps=32, progress=False)(images, targets)
    theirs = captum_attr.IntegratedGradients(lite0).attribute(
        images, target=targets, n_steps=32, method="riemann_trapezoid", internal_batch_size=32
    )
    agree(ours, theirs.sum(1).detach())


# --- The noise tunnel: analytic cases ----------------------------------------------------


def square_model(size: int = 3) -> VisionModel:
    class Square(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x**2).flatten(1).sum(1, keepdim=True)

    return VisionModel(Square(), input_size=(size, size), mean=(0, 0, 0), std=(1, 1, 1), class_names=["s"])


def test_noise_tunnel_on_a_linear_model(linear: tuple[VisionModel, torch.Tensor, torch.Tensor]) -> None:
    """The gradient does not depend on x: mean = W, variance = 0, square = W²."""
    model, weight, images = linear
    smooth = attributions.SmoothGrad(model, nb_samples=7, progress=False)(images, 1)
    torch.testing.assert_close(smooth, weight[1].abs().amax(0).expand(2, -1, -1))
    var = attributions.VarGrad(model, nb_samples=7, progress=False)(images, 1)
    assert float(var.abs().max()) < 1e-10
    square = attributions.SquareGrad(model, nb_samples=7, progress=False)(images, 1)
    torch.testing.assert_close(square, (weight[1] ** 2).amax(0).expand(2, -1, -1))


def test_noise_tunnel_on_a_quadratic_matches_its_moments() -> None:
    """∇Σx² = 2(x + ε): mean 2x, variance 4σ², mean square 4(x² + σ²)."""
    model = square_model()
    x = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(5))
    sigma, n = 0.2, 4000
    var = attributions.VarGrad(model, nb_samples=n, noise=sigma, batch_size=1000, progress=False)(x, 0)
    torch.testing.assert_close(var, torch.full_like(var, 4 * sigma**2), rtol=0.12, atol=0)
    square = attributions.SquareGrad(model, nb_samples=n, noise=sigma, batch_size=1000, progress=False)(x, 0)
    torch.testing.assert_close(square, (4 * (x**2 + sigma**2)).amax(1), rtol=0.08, atol=0)
    smooth = attributions.SmoothGrad(model, nb_samples=n, noise=sigma, batch_size=1000, progress=False)(x, 0)
    torch.testing.assert_close(smooth, (2 * x).amax(1), rtol=0, atol=0.05)
    exact = attributions.SmoothGrad(model, nb_samples=3, noise=0.0, progress=False)(x, 0)
    torch.testing.assert_close(exact, (2 * x).amax(1))


def test_noise_tunnel_rejects_bad_options(linear: tuple[VisionModel, torch.Tensor, torch.Tensor]) -> None:
    model, _, _ = linear
    with pytest.raises(ValueError, match="nb_samples must be a positive int"):
        attributions.SmoothGrad(model, nb_samples=0)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        attributions.VarGrad(model, noise=-0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative int below 2"):
        attributions.SquareGrad(model, seed=-1)
