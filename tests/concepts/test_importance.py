"""Concept importance applies the pixel methods' own rules to the concept coefficients ``U``.

Truths that a wrong rule fails: completeness and the trapezoidal rule's closed-form error for
Integrated Gradients, RISE's expectation ``E[s | m_i = 1]`` at any ``keep_probability``, and
the same numbers as the pixel methods when the concepts *are* the pixels.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from spyglass import attributions
from spyglass.attributions.integrated_gradients import StraightPath, trapezoid_rule
from spyglass.attributions.rise import rise_average, rise_masks
from spyglass.concepts import Craft
from spyglass.concepts._importance import ConceptSpace
from spyglass.objectives import Objective, target_logit
from tests.concepts.test_craft import TinyNet, block_images, split_scores


@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet()


def fit(model: nn.Module, **options: object) -> Craft:
    craft = Craft(model, layer="relu2", n_concepts=3, patch_size=8, progress=False, **options)  # type: ignore[arg-type]
    return craft.fit(block_images(6), 1)


def contributions(craft: Craft, images: Tensor) -> tuple[Tensor, Tensor]:
    """``c`` ``(N, r)`` and ``s(0)`` ``(N,)`` of the affine top: ``s(U ⊙ m) = Σ_i m_i c_i + s(0)``."""
    codes = craft.transform(images).mean(dim=(1, 2))  # GAP then linear: c_i = ū_i (W w_class)_i
    c = codes * (craft.components_ @ craft.model.fc.weight[craft.class_id_].detach())
    empty = split_scores(craft, images, torch.zeros(1, craft.n_concepts))[:, 0]
    return c, empty


def power_of_logit(power: int) -> Objective:
    def objective(model: nn.Module, activations: Tensor, targets: Tensor) -> Tensor:
        return target_logit(model, activations, targets) ** power

    return objective


# --- Integrated Gradients: the trapezoidal rule, as in pixel space ----------------------------


def test_trapezoid_rule_points_and_weights() -> None:
    alphas, weights = trapezoid_rule(5, dtype=torch.float64)
    assert alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert weights.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        trapezoid_rule(1)


def test_integrated_gradients_is_complete_and_equals_gradient_input_on_an_affine_top(tiny: TinyNet) -> None:
    craft = fit(tiny)
    images = block_images(3, seed=11)
    c, empty = contributions(craft, images)
    full = split_scores(craft, images, torch.ones(1, 3))[:, 0]
    gxi = craft.importance(images, "gradient_input", per_image=True)
    assert torch.allclose(gxi, c, atol=1e-6)  # the known contrasts
    for steps in (2, 7):
        ig = craft.importance(images, "integrated_gradients", per_image=True, steps=steps)
        assert torch.allclose(ig, gxi, atol=1e-6)
        assert torch.allclose(ig.sum(dim=1), full - empty, atol=1e-6)  # completeness


def test_integrated_gradients_is_exact_for_a_quadratic_score_even_at_two_points(tiny: TinyNet) -> None:
    # s(αU) = (α a + b)²: ∂s along the path is affine in α, which the trapezoid integrates exactly.
    craft = fit(tiny, objective=power_of_logit(2))
    images = block_images(3, seed=12)
    a, b = contributions(craft, images)
    ig = craft.importance(images, "integrated_gradients", per_image=True, steps=2).double()
    exact = a.double() * (2 * b.double()[:, None] + a.double().sum(dim=1, keepdim=True))
    assert torch.allclose(ig, exact, atol=1e-5, rtol=1e-5)
    assert torch.allclose(ig.sum(dim=1), (a.sum(dim=1) + b).double() ** 2 - b.double() ** 2, atol=1e-5)


def test_integrated_gradients_has_the_trapezoid_error_on_a_cubic_score(tiny: TinyNet) -> None:
    # s(αU) = (α a + b)³ with a = Σ_i a_i: IG_i = a_i ∫₀¹ 3 (α a + b)² dα. The trapezoid with
    # h = 1/(steps − 1) overshoots that integral by g''·h²/12 = a² h² / 2; the midpoint rule
    # (what concept IG used before) would undershoot it by a² h² / 4, with h = 1/steps.
    craft = fit(tiny, objective=power_of_logit(3))
    images = block_images(3, seed=13)
    contrast, b = (t.double() for t in contributions(craft, images))
    a = contrast.sum(dim=1, keepdim=True)
    integral = ((a + b[:, None]) ** 3 - b[:, None] ** 3) / a
    steps = 4
    ig = craft.importance(images, "integrated_gradients", per_image=True, steps=steps).double()
    trapezoid = contrast * (integral + a**2 / (2 * (steps - 1) ** 2))
    midpoint = contrast * (integral - a**2 / (4 * steps**2))
    assert float((trapezoid - midpoint).abs().max()) > 1e-3  # the two rules are told apart here
    assert torch.allclose(ig, trapezoid, atol=1e-5, rtol=1e-4), (ig, trapezoid)
    assert not torch.allclose(ig, contrast * integral, atol=1e-4)


# --- RISE: keep_probability, and the paper's normalisation by N p -----------------------------


@pytest.mark.parametrize("keep_probability", [0.25, 0.8])
def test_rise_converges_to_the_mean_score_when_a_concept_is_kept(
    tiny: TinyNet, keep_probability: float
) -> None:
    # s(U ⊙ m) = Σ_j m_j c_j + s(0), m ~ Bernoulli(p)^r: E[s | m_i = 1] = c_i + p Σ_{j≠i} c_j + s(0),
    # so φ_i − φ_j → (1 − p)(c_i − c_j).
    craft = fit(tiny)
    images = block_images(2, seed=2)
    c, empty = contributions(craft, images)
    p, n = keep_probability, 8192
    rise = craft.importance(images, "rise", per_image=True, nb_samples=n, keep_probability=p, seed=5).double()
    c, empty = c.double(), empty.double()
    expected = c + p * (c.sum(dim=1, keepdim=True) - c) + empty[:, None]
    # Monte Carlo: φ_i is a mean of N terms s_k m_ki / p, so its standard error is at most
    # max|s| · sqrt((1 − p) / (N p)); allow four of them.
    bound = 4 * float((c.abs().sum(dim=1) + empty.abs()).max()) * ((1 - p) / (n * p)) ** 0.5
    assert float((rise - expected).abs().max()) < bound, (rise, expected, bound)
    contrast = (rise[:, :, None] - rise[:, None, :]) - (1 - p) * (c[:, :, None] - c[:, None, :])
    assert float(contrast.abs().max()) < 2 * bound


def test_rise_is_the_average_of_the_scores_over_the_drawn_masks(tiny: TinyNet) -> None:
    # Written from the split: the same masks (rise_masks from the seed) and φ = S M / (N p).
    craft = fit(tiny)
    images = block_images(2, seed=3)
    n, p = 64, 0.3
    masks = rise_masks(n, (3,), p, torch.Generator().manual_seed(7)).float()
    expected = split_scores(craft, images, masks).double() @ masks.double() / (n * p)
    rise = craft.importance(images, "rise", per_image=True, nb_samples=n, keep_probability=p, seed=7)
    assert torch.allclose(rise.double(), expected, atol=1e-6)
    # Dividing by each concept's drawn count instead (the old concept RISE) is a different number.
    counted = split_scores(craft, images, masks).double() @ masks.double() / masks.double().sum(dim=0)
    assert float((counted - expected).abs().max()) > 1e-3
    # p = 1 keeps everything: every concept gets the full score.
    full = split_scores(craft, images, torch.ones(1, 3))
    always = craft.importance(images, "rise", per_image=True, nb_samples=8, keep_probability=1.0)
    assert torch.allclose(always, full.expand(-1, 3), atol=1e-6)


def test_pixel_rise_and_concept_rise_draw_the_same_masks() -> None:
    generator = torch.Generator().manual_seed(3)
    grids = rise_masks(5, (4, 4), 0.4, generator)
    again = rise_masks(5, (16,), 0.4, torch.Generator().manual_seed(3))
    assert grids.dtype == torch.bool and torch.equal(grids.reshape(5, 16), again)
    scores, masks = torch.rand(2, 5, dtype=torch.float64), again.double()
    whole = rise_average([(scores, masks)], 5, 0.4)
    blocks = rise_average([(scores[:, :2], masks[:2]), (scores[:, 2:], masks[2:])], 5, 0.4)
    assert torch.allclose(whole, scores @ masks / 2.0) and torch.allclose(blocks, whole)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"keep_probability": 0.0}, ValueError, r"keep_probability must be a finite number in \(0, 1\]"),
        ({"keep_probability": 1.5}, ValueError, "keep_probability"),
        ({"keep_probability": True}, TypeError, "keep_probability"),
        ({"steps": 1}, ValueError, "steps must be an int >= 2"),
    ],
)
def test_bad_options_are_refused(
    tiny: TinyNet, options: dict[str, object], error: type, message: str
) -> None:
    craft = fit(tiny)
    with pytest.raises(error, match=message):
        craft.importance(block_images(1), "rise", **options)  # type: ignore[arg-type]


# --- the same numbers in both spaces when the concepts are the pixels --------------------------


class _Identity:
    """``Ψ(U) = U``: each concept is one pixel value (or the pixels scaled by a fixed image)."""

    def __init__(self, scale: Tensor | None = None) -> None:
        self.scale = scale

    def inverse_transform(self, codes: Tensor) -> Tensor:
        return codes if self.scale is None else (codes[:, None, :] * self.scale).flatten(1)


class _Unflatten(nn.Module):
    """Activations ``(B, 3·H·W, 1, 1)`` → the images ``(B, 3, H, W)`` → the pixel model."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, activations: Tensor) -> Tensor:
        output: Tensor = self.model(activations.reshape(-1, 3, self.size, self.size))
        return output


def pixel_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3), nn.Softplus()
    ).eval()


def pixel_space(model: nn.Module, images: Tensor, target: int) -> ConceptSpace:
    """Concept space with one concept per pixel value: ``U = x``, ``E = 0``, ``s(U) = f(x)``."""
    codes = images.reshape(images.shape[0], 1, -1)
    return ConceptSpace(
        _Unflatten(model, images.shape[-1]),
        _Identity(),  # type: ignore[arg-type]
        target_logit,
        codes,
        torch.zeros_like(codes),
        (1, 1),
        target,
    )


def test_gradient_rules_give_the_pixel_methods_numbers_when_concepts_are_pixels() -> None:
    model = pixel_model()
    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    space = pixel_space(model, images, 2)
    per_value = {
        "integrated_gradients": space.integrated_gradients(steps=3, batch_size=4),
        "gradient_input": space.gradient_input(batch_size=1),
        "saliency": space.saliency(batch_size=2),
    }
    for name, options in [("integrated_gradients", {"steps": 3}), ("gradient_input", {}), ("saliency", {})]:
        pixels = attributions.create(name, model, progress=False, **options)(images, 2)
        values = per_value[name].reshape(2, 3, 5, 5)
        pooled = values.amax(dim=1) if name == "saliency" else values.sum(dim=1)
        assert float(pixels.abs().max()) > 1e-4
        assert torch.allclose(pooled, pixels, atol=1e-7, rtol=1e-6), name
    # What the old midpoint rule of concept IG gave is visibly another number on this model.
    midpoint = (
        space.codes
        * sum(
            torch.autograd.functional.jacobian(
                lambda u: space.objective(space.top, u.reshape(2, -1, 1, 1), torch.full((2,), 2)).sum(),
                alpha * space.codes,
            )
            for alpha in (1 / 6, 1 / 2, 5 / 6)
        )
        / 3
    )
    gap = midpoint.reshape(2, 3, 5, 5).sum(dim=1) - per_value["integrated_gradients"].reshape(2, 3, 5, 5).sum(
        1
    )
    assert float(gap.abs().max()) > 1e-3 * float(midpoint.abs().max())


def test_occlusion_rule_gives_pixel_occlusion_when_concepts_are_pixels() -> None:
    # One concept per pixel, its three channels tied: removing concept k blacks pixel k out,
    # which is pixel occlusion with a 1-pixel patch and a black fill.
    model = pixel_model()
    image = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    codes = torch.ones(1, 1, 25)
    space = ConceptSpace(
        _Unflatten(model, 5),
        _Identity(scale=image.reshape(3, 25)),  # type: ignore[arg-type]
        target_logit,
        codes,
        torch.zeros(1, 1, 75),
        (1, 1),
        1,
    )
    concept = space.occlusion(batch_size=7).reshape(1, 5, 5)
    pixels = attributions.Occlusion(model, patch=1, stride=1, value=0.0, progress=False)(image, 1)
    assert float(pixels.abs().max()) > 1e-4
    assert torch.allclose(concept, pixels, atol=1e-7, rtol=1e-6)


def test_straight_path_walks_any_shape_from_its_baseline() -> None:
    inputs = torch.rand(2, 4, 3, dtype=torch.float64)
    baselines = torch.rand(2, 4, 3, dtype=torch.float64)
    path = StraightPath(inputs, baselines, steps=3)
    points = path[slice(0, 6)]
    assert len(path) == 6 and path.sources(slice(2, 5)).tolist() == [0, 1, 1]
    assert torch.allclose(points[1], (inputs[0] + baselines[0]) / 2) and torch.equal(points[5], inputs[1])
    # f(x) = Σ x²: ∂f = 2x is affine along the path, so the trapezoid gives Σ φ = f(x) − f(x') exactly.
    integral = torch.zeros_like(inputs)
    path.accumulate(integral, slice(0, 6), 2 * points)
    phi = path.attributions(integral, dim=(1, 2))
    assert torch.allclose(phi, inputs.square().sum(dim=(1, 2)) - baselines.square().sum(dim=(1, 2)))
    with pytest.raises(ValueError, match="baselines must have the inputs' shape"):
        StraightPath(inputs, baselines[:1], steps=3)
