"""LIME and KernelSHAP against exact Shapley values, additive models, axioms and Captum."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spyglass import attributions
from spyglass.attributions._surrogate import segment, weighted_least_squares
from spyglass.attributions.kernel_shap import shapley_kernel
from spyglass.models import VisionModel


def cell_means(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``(N, grid²)``: the mean over channels and pixels of each grid cell, row-major."""
    return F.adaptive_avg_pool2d(x.mean(1, keepdim=True), grid).flatten(1)


class Additive(torch.nn.Module):
    """Logit 0 is Σ_k w_k · (mean of cell k): with a fill of 0, additive in the kept cells."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = cell_means(x, math.isqrt(self.weight.numel())) @ self.weight
        return torch.stack([score, -score], 1)


class Interacting(torch.nn.Module):
    """A 2×2-cell model with interactions, a non-linearity and a square: not additive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = cell_means(x, 2)
        score = (
            4 * m[:, 0] * m[:, 3]
            + torch.sin(3 * m[:, 1])
            + (m[:, 2] - 0.2) ** 2
            - m[:, 0] * m[:, 1] * m[:, 2]
        )
        return torch.stack([score, 2 * score], 1)


def cell_values(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """One value per grid cell of ``(N, H, W)`` maps (maps are constant on cells)."""
    return maps[:, :: maps.shape[1] // grid, :: maps.shape[2] // grid].flatten(1)


def blocks(n: int, size: int, seed: int) -> torch.Tensor:
    """Images of 4×4 random-colour blocks with a little noise: SLIC finds real superpixels there
    (on pure noise it merges everything into one segment)."""
    generator = torch.Generator().manual_seed(seed)
    colours = F.interpolate(torch.rand(n, 3, 4, 4, generator=generator), size=(size, size), mode="nearest")
    return (0.9 * colours + 0.1 * torch.rand(n, 3, size, size, generator=generator)).clamp(0, 1)


def exact_shapley(model: torch.nn.Module, image: torch.Tensor, target: int, fill: float) -> torch.Tensor:
    """Shapley values of the four cells of a 2×2 grid, from the definition (all 16 coalitions)."""
    labels = segment(image, "grid", grid_size=2)

    def value(coalition: tuple[int, ...]) -> float:
        mask = torch.tensor(coalition, dtype=torch.float32)[labels]
        with torch.no_grad():
            return float(model((image * mask + (1 - mask) * fill)[None])[0, target])

    players = 4
    phi = torch.zeros(players, dtype=torch.float64)
    for j in range(players):
        for coalition in itertools.product((0, 1), repeat=players):
            if coalition[j]:
                continue
            size = sum(coalition)
            joined = tuple(1 if k == j else c for k, c in enumerate(coalition))
            share = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
            phi[j] += share * (value(joined) - value(coalition))
    return phi


@pytest.fixture
def additive() -> tuple[Additive, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5, 0.25, 2.0, -0.75, 1.25])
    images = torch.rand(2, 3, 12, 12, generator=generator)
    return Additive(weight), weight, images


# --- KernelSHAP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nb_samples", [512, 40])  # all 2^9 coalitions enumerated; sampled
def test_kernel_shap_on_an_additive_model_is_exact(
    additive: tuple[Additive, torch.Tensor, torch.Tensor], nb_samples: int
) -> None:
    """φ_k = w_k · v_k: the model is linear in the coalition, so any full-rank design is exact."""
    model, weight, images = additive
    method = attributions.KernelShap(
        model, segmentation="grid", grid_size=3, nb_samples=nb_samples, value=0.0, progress=False
    )
    phi = cell_values(method(images, 0), 3)
    torch.testing.assert_close(phi, cell_means(images, 3) * weight, rtol=1e-4, atol=1e-5)


def test_kernel_shap_equals_the_shapley_definition_when_all_coalitions_fit() -> None:
    model = Interacting()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    method = attributions.KernelShap(
        model, segmentation="grid", grid_size=2, nb_samples=16, value=0.0, progress=False
    )
    phi = cell_values(method(image, 1), 2)[0].double()
    torch.testing.assert_close(phi, exact_shapley(model, image[0], 1, fill=0.0), rtol=1e-4, atol=1e-6)


def test_kernel_shap_efficiency_on_a_non_linear_model_with_superpixels() -> None:
    """Σ_segments φ = f(x) − f(all removed), exactly, however few coalitions are sampled."""
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 24 * 24, 3),
    )
    torch.nn.init.normal_(network[3].weight, std=0.2, generator=torch.Generator().manual_seed(0))
    mean = (0.2, 0.4, 0.6)
    model = VisionModel(network, input_size=(24, 24), mean=mean, std=(0.3, 0.3, 0.3), class_names=list("abc"))
    images = blocks(2, 24, seed=4)
    method = attributions.KernelShap(model, n_segments=12, nb_samples=30, progress=False)
    maps = method(images, torch.tensor([0, 2]))
    removed = torch.tensor(mean).view(1, 3, 1, 1).expand_as(images)  # default fill: the model's mean
    with torch.no_grad():
        gap = model(images)[[0, 1], [0, 2]] - model(removed)[[0, 1], [0, 2]]
    for i in range(2):
        labels = segment(images[i], "slic", n_segments=12)
        assert int(labels.max()) + 1 > 4, "want a real superpixel problem"
        per_segment = torch.stack([maps[i][labels == k][0] for k in range(int(labels.max()) + 1)])
        torch.testing.assert_close(per_segment.sum(), gap[i], rtol=1e-4, atol=1e-5)


def test_kernel_shap_agrees_with_captum() -> None:
    from captum.attr import KernelShap as CaptumKernelShap

    model = Interacting()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    ours = attributions.KernelShap(
        model, segmentation="grid", grid_size=2, nb_samples=16, value=0.0, progress=False
    )
    phi = cell_values(ours(image, 0), 2)[0]
    feature_mask = segment(image[0], "grid", grid_size=2).expand(1, 3, 8, 8)
    torch.manual_seed(0)  # captum samples coalitions from torch's global generator
    captum = CaptumKernelShap(lambda x: model(x)[:, 0]).attribute(
        image, baselines=0.0, feature_mask=feature_mask, n_samples=2000, perturbations_per_eval=250
    )
    theirs = cell_values(captum[:, 0], 2)[0]
    # Captum samples with replacement (about 1.5 % off here); LIME's answer is 20 % off.
    torch.testing.assert_close(phi, theirs, rtol=0.0, atol=0.05 * float(phi.abs().max()))


def test_kernel_shap_coalitions() -> None:
    model = Additive(torch.ones(4))
    enumerated, weights = attributions.KernelShap(model, nb_samples=100).coalitions(4)
    assert enumerated.shape == (16, 4), "2^M ≤ nb_samples: every coalition, once"
    assert len({tuple(row.tolist()) for row in enumerated}) == 16
    assert enumerated[0].eq(1).all() and enumerated[1].eq(0).all() and weights[:2].eq(0).all()
    for row, weight in zip(enumerated[2:], weights[2:], strict=True):
        assert float(weight) == pytest.approx(shapley_kernel(4, int(row.sum())))
    sampled, weights = attributions.KernelShap(model, nb_samples=64, seed=1).coalitions(30)
    assert sampled.shape == (64, 30)
    sizes = sampled[2:].sum(1)
    assert sizes.min() >= 1 and sizes.max() <= 29
    # The 60 coalitions of sizes 1 and 29 do not fit: all are sampled, in complementary pairs.
    torch.testing.assert_close(sampled[2::2] + sampled[3::2], torch.ones(31, 30))
    total = sum((30 - 1) / (s * (30 - s)) for s in range(1, 30))
    assert float(weights[2:].sum()) == pytest.approx(total)
    # With 1,000 samples and 50 segments, sizes 1 and 49 (100 coalitions) are enumerated exactly.
    mixed, weights = attributions.KernelShap(model, nb_samples=1000).coalitions(50)
    assert mixed.shape == (1000, 50)
    assert mixed[2:102].sum(1).tolist() == [1.0] * 50 + [49.0] * 50
    assert float(weights[2]) == pytest.approx(shapley_kernel(50, 1))


# --- LIME ---------------------------------------------------------------------------------------


def test_lime_on_an_additive_model_recovers_the_coefficients(
    additive: tuple[Additive, torch.Tensor, torch.Tensor],
) -> None:
    model, weight, images = additive
    expected = cell_means(images, 3) * weight
    plain = attributions.Lime(
        model, segmentation="grid", grid_size=3, nb_samples=200, alpha=1e-9, value=0.0, progress=False
    )
    torch.testing.assert_close(cell_values(plain(images, 0), 3), expected, rtol=1e-4, atol=1e-5)
    ridge = attributions.Lime(
        model, segmentation="grid", grid_size=3, nb_samples=200, value=0.0, progress=False
    )
    shrunk = cell_values(ridge(images, 0), 3)  # LIME's default ridge (alpha = 1) shrinks, keeps the shape
    for got, want in zip(shrunk, expected, strict=True):
        assert float(torch.corrcoef(torch.stack([got, want]))[0, 1]) >= 0.99
        assert torch.equal(got.sign(), want.sign())
        assert float(got.abs().sum()) < float(want.abs().sum())


def test_lime_coalitions_and_kernel() -> None:
    lime = attributions.Lime(Additive(torch.ones(4)), nb_samples=50, kernel_width=0.25)
    kept, weights = lime.coalitions(10)
    assert kept.shape == (50, 10) and kept[0].eq(1).all() and float(weights[0]) == 1.0
    size = kept.sum(1).double()
    cosine = 1 - size / (size.sqrt() * math.sqrt(10)).clamp_min(1e-12)  # cosine distance to all-ones
    cosine[size == 0] = 1.0
    torch.testing.assert_close(weights, torch.exp(-(cosine**2) / (2 * 0.25**2)))
    assert 0.3 < float(kept[1:].mean()) < 0.7


def test_weighted_least_squares_matches_scikit_learn() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x, y, w = rng.integers(0, 2, (80, 6)).astype(float), rng.normal(size=80), rng.uniform(0.1, 1, 80)
    reference = Ridge(alpha=0.7).fit(x, y, sample_weight=w)
    beta, intercept = weighted_least_squares(
        torch.tensor(x), torch.tensor(y), torch.tensor(w), alpha=0.7, intercept=True
    )
    np.testing.assert_allclose(beta.numpy(), reference.coef_, rtol=1e-8, atol=1e-10)
    assert float(intercept) == pytest.approx(reference.intercept_, rel=1e-8)
    beta, intercept = weighted_least_squares(torch.tensor(x), torch.tensor(y), torch.tensor(w))
    expected = np.linalg.lstsq(x * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    np.testing.assert_allclose(beta.numpy(), expected, rtol=1e-8, atol=1e-10)
    assert float(intercept) == 0.0


# --- the shared core ----------------------------------------------------------------------------


def test_segmentations() -> None:
    image = torch.rand(3, 30, 20, generator=torch.Generator().manual_seed(6))
    grid = segment(image, "grid", grid_size=4)
    cells = F.interpolate(torch.arange(16.0).view(1, 1, 4, 4), size=(30, 20), mode="nearest")[0, 0]
    assert torch.equal(grid, cells.long()), "grid cells are the cells of the nearest-upsampled masks"
    superpixels = segment(blocks(1, 24, seed=6)[0], "slic", n_segments=10)
    assert superpixels.dtype == torch.long and superpixels.shape == (24, 24)
    assert torch.equal(superpixels.unique(), torch.arange(int(superpixels.max()) + 1))
    assert 3 <= int(superpixels.max()) + 1 <= 20
    halves = segment(image, lambda x: (torch.arange(20) >= 10).long().expand(30, 20) * 7)
    assert halves.unique().tolist() == [0, 1], "any labels are renumbered 0 … M-1"
    with pytest.raises(ValueError, match=r"\(30, 20\) integer labels"):
        segment(image, lambda x: torch.zeros(30, 20))


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_a_map_depends_on_its_image_alone(name: str) -> None:
    """Same seed, same segments → same coalitions: batch company and position change nothing,
    even when another image has so few segments that its plan is padded (KernelSHAP)."""
    model = Interacting()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(7))

    def few_for_the_first(x: torch.Tensor) -> torch.Tensor:
        grid = 2 if torch.equal(x, images[0]) else 4
        return segment(x, "grid", grid_size=grid)

    build = attributions.create
    together = build(name, model, segmentation=few_for_the_first, nb_samples=24, progress=False)(images, 1)
    for i in range(3):
        alone = build(name, model, segmentation=few_for_the_first, nb_samples=24, progress=False)(
            images[i : i + 1], 1
        )
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_bad_options_are_reported(name: str) -> None:
    model = Additive(torch.ones(4))
    for options, message in [
        ({"segmentation": "quickshift"}, "segmentation must be one of 'slic', 'grid'"),
        ({"nb_samples": 1}, "nb_samples must be an int >= 2"),
        ({"value": 2.0}, r"value must be None, a float in \[0, 1\]"),
        ({"value": (0.1, 0.2)}, "value must be None"),
        ({"n_segments": 0}, "n_segments must be a positive int"),
    ]:
        with pytest.raises(ValueError, match=message):
            attributions.create(name, model, **options)
    method = attributions.create(name, model, segmentation="grid", grid_size=9, progress=False)
    with pytest.raises(ValueError, match="grid_size must be at most the image size"):
        method(torch.rand(1, 3, 8, 8), 0)


def test_lime_bad_options_are_reported() -> None:
    model = Additive(torch.ones(4))
    with pytest.raises(ValueError, match="kernel_width must be a finite number > 0"):
        attributions.Lime(model, kernel_width=0)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        attributions.Lime(model, alpha=-1.0)
