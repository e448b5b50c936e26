"""HSIC attribution against a textbook estimator in float64 and models with known dependence."""

import math
import statistics

import numpy as np
import pytest
import torch

from spyglass import attributions
from spyglass.attributions.hsic import hsic_design, hsic_indices


def textbook_hsic(x: list[float], y: list[float], kernel: str) -> float:
    """tr(K H L H) / (n − 1)², every kernel entry by an explicit double loop, in float64.

    K is the Dirac kernel δ(x_a = x_b) ("binary") or exp(−(x_a − x_b)² / (2 · 0.5²)) ("rbf");
    L is the RBF kernel on y with σ the median of the non-zero |y_a − y_b|, a < b.
    """
    n = len(y)
    sigma = statistics.median(abs(y[a] - y[b]) for a in range(n) for b in range(a + 1, n) if y[a] != y[b])
    k = np.zeros((n, n))
    gram = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if kernel == "binary":
                k[a, b] = 1.0 if x[a] == x[b] else 0.0
            else:
                k[a, b] = math.exp(-((x[a] - x[b]) ** 2) / (2 * 0.5**2))
            gram[a, b] = math.exp(-((y[a] - y[b]) ** 2) / (2 * sigma**2))
    centring = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ centring @ gram @ centring)) / (n - 1) ** 2


class OneCell(torch.nn.Module):
    """Logit 0 depends on the top-left 8×8 pixels only (cell 0 of a 4×4 grid on 32 px)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 3 * x[:, :, :8, :8].mean((1, 2, 3))
        return torch.stack([score, -score], 1)


class Curved(torch.nn.Module):
    """A non-linear model of a few regions, with outputs of order one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = x[:, :, :12].mean((1, 2, 3)), x[:, :, 12:].mean((1, 2, 3))
        score = torch.sin(5 * top) + (2 * bottom - 0.3) ** 2 + 3 * x[:, 0, :4, :4].mean((1, 2))
        return torch.stack([score, top], 1)


def cells(maps: torch.Tensor, grid: int) -> torch.Tensor:
    """One value per grid cell of ``(N, H, W)`` maps (maps are constant on cells)."""
    return maps[:, :: maps.shape[1] // grid, :: maps.shape[2] // grid].flatten(1)


@pytest.mark.parametrize("kernel", ["binary", "rbf"])
def test_estimator_equals_the_textbook(kernel: str) -> None:
    rng = np.random.default_rng(0)
    design = hsic_design(2, 40, kernel=kernel, seed=1).reshape(40, 4)
    outputs = torch.tensor(
        np.sin(3 * design[:, 0].numpy()) + 0.5 * design[:, 2].numpy() + 0.1 * rng.normal(size=40)
    )
    expected = [textbook_hsic(design[:, i].tolist(), outputs.tolist(), kernel) for i in range(4)]
    torch.testing.assert_close(
        hsic_indices(design, outputs, kernel=kernel), torch.tensor(expected, dtype=torch.float64)
    )


@pytest.mark.parametrize("kernel", ["binary", "rbf"])
def test_method_equals_the_textbook_on_a_non_linear_model(kernel: str) -> None:
    """End to end: the maps are the textbook HSIC of the design and the model's scores, cell by cell."""
    model, grid, n = Curved(), 3, 36
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    method = attributions.HsicAttribution(
        model, grid_size=grid, nb_design=n, kernel=kernel, seed=5, progress=False
    )
    maps = method(image, 0)
    design = hsic_design(grid, n, kernel=kernel, seed=5)
    masks = torch.nn.functional.interpolate(design[:, None], size=(24, 24), mode="nearest")
    with torch.no_grad():  # the definition, one perturbed image at a time; fill 0.5 for a plain module
        outputs = [float(model(image * m + (1 - m) * 0.5)[0, 0]) for m in masks]
    flat = design.reshape(n, grid * grid)
    expected = [textbook_hsic(flat[:, i].tolist(), outputs, kernel) for i in range(grid * grid)]
    torch.testing.assert_close(
        cells(maps, grid)[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("kernel", ["binary", "rbf"])
def test_a_model_of_one_cell_puts_all_the_dependence_there(kernel: str) -> None:
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    method = attributions.HsicAttribution(
        OneCell(), grid_size=4, nb_design=128, kernel=kernel, progress=False
    )
    scores = cells(method(image, 0), 4)
    assert scores.min() >= -1e-12, "a (biased) HSIC estimate is a trace of two PSD matrices"
    for row in scores:
        top, rest = row[0], row[1:]
        assert float(rest.max()) < 0.1 * float(top), row
        assert float(rest.mean()) < 0.03 * float(top), row


def test_indices_do_not_change_when_the_score_is_shifted_or_scaled() -> None:
    """The median-heuristic bandwidth follows the scores: HSIC sees dependence, not units."""
    design = hsic_design(3, 50, seed=2).reshape(50, 9)
    outputs = (
        torch.tanh(design[:, 4] - 0.5 * design[:, 0] * design[:, 1]).double()
        + 0.01 * torch.arange(50.0).double()
    )
    reference = hsic_indices(design, outputs)
    torch.testing.assert_close(hsic_indices(design, 7 * outputs - 100), reference)
    assert int(reference.argmax()) == 4


def test_a_constant_output_depends_on_nothing() -> None:
    design = hsic_design(2, 16).reshape(16, 4)
    torch.testing.assert_close(
        hsic_indices(design, torch.full((16,), 3.0)), torch.zeros(4, dtype=torch.float64)
    )


def test_design() -> None:
    binary = hsic_design(4, 64, seed=3)
    assert binary.shape == (64, 4, 4) and binary.dtype == torch.float32
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    # A rounded Latin hypercube keeps every cell in exactly half of the masks.
    assert torch.equal(binary.sum(0), torch.full((4, 4), 32.0))
    continuous = hsic_design(4, 64, kernel="rbf", seed=3)
    assert float(continuous.min()) >= 0 and float(continuous.max()) <= 1 and continuous.unique().numel() > 64
    assert torch.equal(hsic_design(4, 64, seed=3), binary)
    assert not torch.equal(hsic_design(4, 64, seed=4), binary)


def test_bad_input_is_reported() -> None:
    model = OneCell()
    with pytest.raises(ValueError, match="kernel must be one of 'binary', 'rbf'"):
        attributions.HsicAttribution(model, kernel="sobolev")
    with pytest.raises(ValueError, match="perturbation must be one of 'inpainting', 'blurring'"):
        attributions.HsicAttribution(model, perturbation="noise")
    with pytest.raises(ValueError, match="power of two"):
        attributions.HsicAttribution(model, sampler="sobol", nb_design=500)
    with pytest.raises(ValueError, match="sampler must be one of"):
        attributions.HsicAttribution(model, sampler="grid")
    with pytest.raises(ValueError, match="grid_size must be at most the image size"):
        attributions.HsicAttribution(model, grid_size=40, nb_design=8, progress=False)(
            torch.rand(1, 3, 32, 32), 0
        )
    with pytest.raises(ValueError, match="0s and 1s"):
        hsic_indices(torch.rand(10, 3), torch.rand(10))
    with pytest.raises(ValueError, match="same n"):
        hsic_indices(torch.ones(10, 3), torch.rand(9))
