"""EVA: exact zeros where the model provably does not look, hand-computed overlaps, the modes' order.

The analytic cases: for an affine ``f(x) = W x + b`` every bound is exact, so the margin
form's overlap over a ball is ``max_{c′} (w_{c′} − w_c)·x + (b_{c′} − b_c) + ε ‖w_{c′} − w_c‖₁``
with the norm over the free pixels only, and EVA is a closed form.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import Tensor, nn

from spyglass import attributions, bounds
from spyglass.attributions.eva import default_eva_layer
from spyglass.engines.grid import cell_of_pixel
from tests.helpers import left_as_found, mixed_mode
from tests.tiny import ResidualNet, tiny_model

# --- the models ------------------------------------------------------------------------------

SIZE = 8


class KeepLeft(nn.Module):
    """Zero the right half of the image: what follows provably reads the left half only."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[..., : SIZE // 2] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


def mlp(*, left_only: bool = False, seed: int = 0, classes: int = 4) -> nn.Sequential:
    """``(3, 8, 8)`` images → flatten → 16 ReLUs → ``classes`` logits (optionally blind to the right half)."""
    torch.manual_seed(seed)
    layers: list[tuple[str, nn.Module]] = [("left", KeepLeft())] if left_only else []
    layers += [
        ("flat", nn.Flatten()),
        ("fc1", nn.Linear(3 * SIZE * SIZE, 16)),
        ("relu", nn.ReLU()),
        ("fc2", nn.Linear(16, classes)),
    ]
    return nn.Sequential(OrderedDict(layers)).eval()


def affine(seed: int = 0, classes: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(flat=nn.Flatten(), fc=nn.Linear(3 * SIZE * SIZE, classes))).eval()


def images(n: int = 2, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def eva(model: nn.Module, **options: object) -> attributions.EVA:
    return attributions.EVA(model, progress=False, **{"grid_size": 4, "epsilon": 0.05, **options})  # type: ignore[arg-type]


# --- verified modes: exact truths ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ibp", "crown"])
def test_cells_the_model_cannot_read_score_exactly_zero(mode: str) -> None:
    method = eva(mlp(left_only=True), bounds=mode)
    maps = method(images(3), torch.tensor([0, 1, 2]))
    assert method.guaranteed
    assert torch.equal(maps[:, :, SIZE // 2 :], torch.zeros(3, SIZE, SIZE // 2))
    assert (maps[:, :, : SIZE // 2] > 0).any(), "the half the model reads must matter"


def test_ibp_scores_are_never_negative() -> None:
    for seed in range(3):
        maps = eva(mlp(seed=seed), bounds="ibp", epsilon=0.1)(images(4, seed), torch.tensor([0, 1, 2, 3]))
        assert bool((maps >= 0).all())
        assert bool((maps > 0).any())


def closed_form_overlaps(
    model: nn.Sequential, image: Tensor, target: int, epsilon: float, grid: int
) -> Tensor:
    """``(R + 1,)``: the exact margin overlap of an affine model over ``B``, then each ``B_u``."""
    weight, bias = model.fc.weight.detach().double(), model.fc.bias.detach().double()
    cells = cell_of_pixel(SIZE, SIZE, grid).flatten().repeat(3)  # channel-major flattening
    x = image.double().flatten()
    rows = []
    for fixed in range(-1, grid * grid):
        free = (cells != fixed).double()
        best = max(
            float((weight[k] - weight[target]) @ x + bias[k] - bias[target])
            + epsilon * float(((weight[k] - weight[target]).abs() * free).sum())
            for k in range(weight.shape[0])
            if k != target
        )
        rows.append(best)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("mode", ["ibp", "crown"])
def test_affine_model_overlaps_and_scores_match_the_closed_form(mode: str) -> None:
    model, x = affine(), images(2)
    method = eva(model, bounds=mode, epsilon=0.03)
    maps = method(x, torch.tensor([1, 2]))
    for i, target in enumerate([1, 2]):
        expected = closed_form_overlaps(model, x[i], target, 0.03, 4)
        torch.testing.assert_close(method.overlap_[i].double(), expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(method.region_overlap_[i].double(), expected[1:], rtol=1e-5, atol=1e-5)
        scores = (expected[0] - expected[1:]).float().view(4, 4)
        torch.testing.assert_close(maps[i, ::2, ::2], scores, rtol=1e-4, atol=1e-5)  # cells of 2 px


def test_a_hand_computed_overlap_on_a_two_pixel_model() -> None:
    """f = (x₀ + 2 x₁ − x₂, 0, ...) on a 1×1 image of 3 channels: AO = |f₁ − f₀| bounds by hand."""
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]]))
        fc.bias.zero_()
    model = nn.Sequential(nn.Flatten(), fc).eval()
    x = torch.tensor([0.5, 0.25, 0.5]).view(1, 3, 1, 1)
    method = attributions.EVA(model, epsilon=0.1, grid_size=1, bounds="ibp", progress=False)
    maps = method(x, 0)
    # f₁ − f₀ = −(x₀ + 2 x₁ − x₂) = −0.5 at x, + 0.1 · (1 + 2 + 1) over B; with the one cell fixed, −0.5.
    torch.testing.assert_close(method.overlap_, torch.tensor([-0.1]))
    torch.testing.assert_close(method.region_overlap_, torch.tensor([[-0.5]]))
    torch.testing.assert_close(maps, torch.tensor([[[0.4]]]))


def test_margin_form_is_at_least_as_tight_as_the_papers() -> None:
    for seed in range(3):
        model, x, targets = mlp(seed=seed), images(3, seed), torch.tensor([0, 2, 3])
        margin, paper = (
            eva(model, bounds="ibp", epsilon=0.1),
            eva(model, bounds="ibp", epsilon=0.1, form="paper"),
        )
        margin(x, targets), paper(x, targets)
        assert bool((margin.overlap_ <= paper.overlap_ + 1e-6).all())
        assert bool((margin.region_overlap_ <= paper.region_overlap_ + 1e-6).all())
        assert bool((margin.overlap_ < paper.overlap_).any()), "on a ReLU network the margin form is tighter"


def test_targeted_overlap_is_the_margin_towards_that_class() -> None:
    model, x = affine(classes=3), images(1)
    targeted = eva(model, bounds="ibp", epsilon=0.03, adversarial_class=2)
    targeted(x, 0)
    weight, bias = model.fc.weight.detach(), model.fc.bias.detach()
    difference = weight[2] - weight[0]
    expected = difference @ x.flatten() + bias[2] - bias[0] + 0.03 * difference.abs().sum()
    torch.testing.assert_close(targeted.overlap_, expected.view(1), rtol=1e-5, atol=1e-5)
    untargeted = eva(model, bounds="ibp", epsilon=0.03)
    untargeted(x, 0)
    assert float(targeted.overlap_) <= float(untargeted.overlap_) + 1e-6


# --- hybrid and empirical: unguaranteed, and ordered against the verified bound ---------------


def test_hybrid_box_contains_the_clean_features_and_lies_inside_ibps_box() -> None:
    model, x = mlp(seed=1), images(1)[0]
    method = eva(model, bounds="hybrid", layer="relu", nb_samples=32, epsilon=0.1)
    assert method.layer == "relu" and not method.guaranteed
    g, _ = method._parts  # type: ignore[misc]
    cells = cell_of_pixel(SIZE, SIZE, 4)
    lower, upper = method._sampled_boxes(x, cells, torch.Generator().manual_seed(0))
    assert lower.shape == upper.shape == (17, 16)
    with torch.no_grad():
        clean = g(x[None])
    assert bool(((lower <= clean) & (clean <= upper)).all())
    for fixed in range(-1, 16):
        free = (cells != fixed).float()
        ibp_low, ibp_high = bounds.interval_bounds(g, (x - 0.1 * free)[None], (x + 0.1 * free)[None])
        row = fixed + 1
        assert bool((ibp_low[0] <= lower[row] + 1e-6).all() and (upper[row] <= ibp_high[0] + 1e-6).all())
    assert bool((upper[0] - lower[0] > 0).any())


def test_hybrid_on_a_blind_half_gives_zero_there_and_is_seeded() -> None:
    model, x = mlp(left_only=True), images(2)
    maps = eva(model, bounds="hybrid", layer="relu", nb_samples=8)(x, 1)
    assert torch.equal(maps[:, :, SIZE // 2 :], torch.zeros(2, SIZE, SIZE // 2))
    torch.testing.assert_close(eva(model, bounds="hybrid", layer="relu", nb_samples=8)(x, 1), maps)
    assert not torch.equal(eva(model, bounds="hybrid", layer="relu", nb_samples=8, seed=1)(x, 1), maps)


@pytest.mark.parametrize("mode", ["hybrid", "empirical"])
def test_an_images_map_does_not_depend_on_the_other_images_of_the_call(mode: str) -> None:
    model, x = mlp(), images(3)
    options = {"layer": "relu", "nb_samples": 4} if mode == "hybrid" else {"pgd_steps": 3}
    together = eva(model, bounds=mode, batch_size=5, **options)(x, 1)
    alone = eva(model, bounds=mode, batch_size=5, **options)(x[2:], 1)
    torch.testing.assert_close(together[2:], alone)


def test_default_layer_is_the_input_of_the_last_linear() -> None:
    assert default_eva_layer(mlp()) == "relu"
    assert eva(affine(), bounds="hybrid").layer == "flat"


def test_empirical_overlap_never_exceeds_the_verified_one() -> None:
    for seed in range(2):
        model, x, targets = mlp(seed=seed), images(2, seed), torch.tensor([1, 3])
        verified, empirical = (
            eva(model, bounds="ibp", epsilon=0.1),
            eva(model, bounds="empirical", epsilon=0.1),
        )
        verified(x, targets), empirical(x, targets)
        assert not empirical.guaranteed
        assert bool((empirical.overlap_ <= verified.overlap_ + 1e-5).all())
        assert bool((empirical.region_overlap_ <= verified.region_overlap_ + 1e-5).all())
        with torch.no_grad():
            logits = model(x)
        clean = (
            logits.scatter(1, targets.view(-1, 1), -torch.inf).amax(1)
            - logits.gather(1, targets.view(-1, 1))[:, 0]
        )
        assert bool((empirical.overlap_ >= clean - 1e-6).all()), "PGD keeps the best point, x itself included"


def test_empirical_on_an_affine_model_finds_the_exact_overlap() -> None:
    """On an affine model a signed step reaches the corner of the ball that maximises the margin."""
    model, x = affine(classes=2), images(1)
    empirical = eva(model, bounds="empirical", epsilon=0.03, pgd_steps=4)
    empirical(x, 0)
    expected = closed_form_overlaps(model, x[0], 0, 0.03, 4)
    torch.testing.assert_close(empirical.overlap_.double(), expected[:1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(empirical.region_overlap_[0].double(), expected[1:], rtol=1e-5, atol=1e-5)


def test_clip_keeps_the_ball_in_the_pixel_range() -> None:
    model = affine(classes=2)
    white = torch.ones(1, 3, SIZE, SIZE)
    clipped, free = eva(model, bounds="ibp", clip=True), eva(model, bounds="ibp")
    clipped(white, 0), free(white, 0)
    weight = (model.fc.weight[1] - model.fc.weight[0]).detach()
    # Only the pixels whose margin rises as they darken can move: half the ℓ₁ norm, on this side.
    bias = model.fc.bias.detach()
    base = float(weight.sum() + bias[1] - bias[0])
    torch.testing.assert_close(
        float(clipped.overlap_), base + 0.05 * float(weight.clamp(max=0).abs().sum()), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        float(free.overlap_), base + 0.05 * float(weight.abs().sum()), rtol=1e-5, atol=1e-5
    )


# --- errors, and the model left as found -----------------------------------------------------


def test_bad_options_are_reported() -> None:
    model = mlp()
    for epsilon in (0.0, -0.1, float("nan"), float("inf"), 2.0):
        with pytest.raises(ValueError, match="epsilon must be a finite number in"):
            eva(model, epsilon=epsilon)
    with pytest.raises(ValueError, match="bounds must be one of"):
        eva(model, bounds="exact")
    with pytest.raises(ValueError, match="form must be one of"):
        eva(model, form="logits")
    with pytest.raises(ValueError, match="layer is used by bounds='hybrid' only"):
        eva(model, bounds="ibp", layer="relu")
    with pytest.raises(ValueError, match="nope"):
        eva(model, bounds="hybrid", layer="nope")
    with pytest.raises(ValueError, match="grid_size must be at most the image size"):
        eva(model, bounds="ibp", grid_size=9)(images(1), 0)
    with pytest.raises(ValueError, match=r"adversarial_class must lie in \[0, 3\]"):
        eva(model, bounds="ibp", adversarial_class=4)(images(1), 0)
    with pytest.raises(ValueError, match="adversarial_class=2 is the class explained"):
        eva(model, bounds="ibp", adversarial_class=2)(images(1), 2)


def test_a_layer_a_skip_connection_jumps_over_cannot_split() -> None:
    with pytest.raises(ValueError, match="cannot split"):
        attributions.EVA(ResidualNet().eval(), layer="blocks.0.conv", progress=False)


class Sine(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def test_an_unsupported_operation_is_named_and_the_hybrid_mode_suggested() -> None:
    model = nn.Sequential(
        OrderedDict(flat=nn.Flatten(), sine=Sine(), fc=nn.Linear(3 * SIZE * SIZE, 3))
    ).eval()
    with pytest.raises(ValueError, match=r"(?s)EVA cannot bound the model.*sin.*bounds='hybrid'"):
        eva(model, bounds="ibp")(images(1), 0)
    # Cut after the sine, the hybrid mode bounds the classifier only.
    assert eva(model, bounds="hybrid", layer="sine")(images(1), 0).shape == (1, SIZE, SIZE)


def test_model_left_as_found_in_every_mode_and_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    model = mixed_mode(tiny_model())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with left_as_found(model):
        for mode in ("hybrid", "empirical"):
            attributions.EVA(model, bounds=mode, grid_size=2, nb_samples=2, pgd_steps=2, progress=False)(x, 0)
        method = attributions.EVA(model, bounds="hybrid", grid_size=2, nb_samples=2, progress=False)

        def failing(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bound failed")

        monkeypatch.setattr(bounds, "interval_bounds", failing)
        with pytest.raises(RuntimeError, match="bound failed"):
            method(x, 0)


def test_registered_with_its_kind_and_repr() -> None:
    assert attributions.method_class("eva") is attributions.EVA
    assert attributions.list_methods(kind="verified") == ["eva"]
    assert "guaranteed=False" in repr(eva(mlp()))
    assert "guaranteed=True" in repr(eva(mlp(), bounds="crown"))
    # What figures title the maps with (spyglass explain, the demo).
    assert eva(mlp()).label == "eva (hybrid, not guaranteed)"
    assert eva(mlp(), bounds="ibp").label == "eva (ibp, verified)"
    assert attributions.Saliency(mlp()).label == "saliency"


def test_crown_that_does_not_fit_points_to_the_hybrid_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    def too_big(*args: object, **kwargs: object) -> None:
        raise ValueError("CROWN would hold about 1e5 GiB of linear coefficients, over memory_limit = 2 GiB")

    monkeypatch.setattr(bounds, "linear_bounds", too_big)
    with pytest.raises(ValueError, match=r"(?s)could not bound the model with CROWN: .*GiB.*bounds='hybrid'"):
        eva(mlp(), bounds="crown")(images(1), 0)
