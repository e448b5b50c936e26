"""1-Lipschitz classifiers: bounds on the constant, hKR training, export, model files, OT counterfactuals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from deel.torchlip import SpectralConv2d
from torch import nn
from torch.utils.data import TensorDataset

from spyglass import models
from spyglass.alignment import (
    alpha_from_lambda,
    export_lipschitz,
    hkr_loss,
    layer_bound,
    lipschitz_classifier,
    lipschitz_constant,
    ot_counterfactual,
    train_lipschitz,
)
from spyglass.models import VisionModel

SIZE = 16


def squares(n: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Dim noise with a bright 6×4 bar whose column says the class."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.rand(n, 3, SIZE, SIZE, generator=generator)
    labels = torch.arange(n) % classes
    step = SIZE // classes
    for i in range(n):
        k = int(labels[i])
        images[i, :, SIZE // 2 - 3 : SIZE // 2 + 3, k * step : k * step + 4] = 1.0
    return images, labels


def wrap(network: nn.Module, classes: int, std: float = 1.0) -> VisionModel:
    return VisionModel(
        network,
        input_size=(4, 4),
        mean=(0.5, 0.5, 0.5),
        std=(std, std, std),
        class_names=[str(i) for i in range(classes)],
    )


def linear_with_singular_values(values: list[float], inputs: int = 48) -> nn.Linear:
    generator = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=generator))
    v, _ = torch.linalg.qr(torch.randn(inputs, len(values), generator=generator))
    layer = nn.Linear(inputs, len(values))
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(torch.tensor(values)) @ v.T)
    return layer


# ------------------------------------------------------------------ the estimate, on analytic cases


@pytest.mark.parametrize("std", [1.0, 0.5])
def test_a_linear_map_has_its_largest_singular_value_as_constant(std: float) -> None:
    model = wrap(nn.Sequential(nn.Flatten(), linear_with_singular_values([2.5, 1.0, 0.3])), 3, std)
    estimate = lipschitz_constant(model, torch.rand(2, 3, 4, 4), iterations=30, ascent_steps=0)
    assert estimate.upper == pytest.approx(2.5 / std, rel=1e-6)
    assert estimate.lower == pytest.approx(2.5 / std, rel=1e-4)
    assert torch.allclose(
        estimate.gradient_norms, torch.full((2,), 2.5 / std, dtype=torch.float64), rtol=1e-4
    )


def test_a_scaled_relu_network_is_found_at_its_constant() -> None:
    # f(x) = 1.5 · relu(2 · (x_0 - 0.5)): constant 3 where x_0 > 0.5, gradient 0 elsewhere.
    first, second = nn.Linear(48, 48, bias=False), nn.Linear(48, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(2.0 * torch.eye(48))
        second.weight.zero_()
        second.weight[0, 0] = 1.5
    model = wrap(nn.Sequential(nn.Flatten(), first, nn.ReLU(), second), 1)
    images = torch.rand(3, 3, 4, 4)
    images[:, 0, 0, 0] = torch.tensor([0.9, 0.2, 0.1])  # one image on the active side
    estimate = lipschitz_constant(model, images, iterations=10, ascent_steps=0)
    assert estimate.upper == pytest.approx(3.0)
    assert estimate.lower == pytest.approx(3.0, rel=1e-6)
    assert estimate.gradient_norms.tolist() == pytest.approx([3.0, 0.0, 0.0], abs=1e-6)
    # The ascent's ratios ‖f(a) - f(b)‖ / ‖a - b‖ reach the constant and never pass it.
    searched = lipschitz_constant(model, images, iterations=1, ascent_steps=30, step_size=0.05)
    assert searched.lower == pytest.approx(3.0, rel=1e-9)
    # From the dead side, where f is flat, nothing local finds it: a lower bound, not the constant.
    assert lipschitz_constant(model, images[1:], iterations=5, ascent_steps=10).lower == 0.0


def test_the_convolution_bound_is_above_the_exact_operator_norm() -> None:
    torch.manual_seed(0)
    for stride in (1, 2):
        conv = nn.Conv2d(3, 5, 3, stride=stride, padding=1).requires_grad_(False)
        x = torch.randn(1, 3, 12, 12)
        for _ in range(200):  # power iteration on the operator itself (bias-free)
            y = nn.functional.conv2d(x, conv.weight, stride=stride, padding=1)
            x = nn.functional.conv_transpose2d(
                y, conv.weight, stride=stride, padding=1, output_padding=stride - 1
            )
            x = x / x.norm()
        exact = float(nn.functional.conv2d(x, conv.weight, stride=stride, padding=1).norm())
        bound = layer_bound(conv)
        assert bound is not None and exact <= bound + 1e-6
        # and not a trivially loose bound: within the patch count of the kernel matrix's norm
        assert bound <= math.sqrt(9) * float(torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)) + 1e-6


def test_an_unknown_layer_makes_the_upper_bound_infinite_and_says_which() -> None:
    model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(48, 2), nn.Tanh()), 2)
    estimate = lipschitz_constant(model, torch.rand(1, 3, 4, 4), iterations=3, ascent_steps=0)
    assert math.isinf(estimate.upper) and "Tanh" in estimate.unbounded[0]
    assert 0 < estimate.lower < math.inf


# ------------------------------------------------------------------ built models: ≤ 1 throughout


def test_built_models_are_1_lipschitz_before_and_after_training_and_after_export() -> None:
    torch.manual_seed(0)
    model = lipschitz_classifier(3, input_size=(SIZE, SIZE), widths=(4, 8), depth=1)
    images, labels = squares(48, 3)
    probe = images[:6]
    before = lipschitz_constant(model, probe, iterations=10, ascent_steps=5)
    assert before.lower <= before.upper <= 1 + 1e-3
    history = train_lipschitz(
        model, TensorDataset(images, labels), epochs=4, lr=1e-2, batch_size=16, progress=False
    )
    assert not model.training  # modes as found
    after = lipschitz_constant(model, probe, iterations=10, ascent_steps=5)
    assert after.lower <= after.upper <= 1 + 1e-3
    assert after.lower > before.lower  # training moved the network (conv nets start at ≈ (1/3)² per conv)
    plain = export_lipschitz(model)
    exported = lipschitz_constant(plain, probe, iterations=10, ascent_steps=5)
    assert exported.lower <= exported.upper <= 1 + 1e-3
    assert exported.lower == pytest.approx(after.lower, rel=1e-4)
    assert len(history.losses) == 12


def test_dense_models_are_gradient_norm_preserving() -> None:
    model = lipschitz_classifier(1, input_size=(SIZE, SIZE), widths=(), hidden=(32,))
    estimate = lipschitz_constant(model, torch.rand(4, 3, SIZE, SIZE), iterations=3, ascent_steps=0)
    assert torch.allclose(estimate.gradient_norms, torch.ones(4, dtype=torch.float64), atol=1e-4)


# ------------------------------------------------------------------ training, export, files


def test_hkr_training_reduces_the_loss() -> None:
    torch.manual_seed(0)
    model = lipschitz_classifier(2, input_size=(SIZE, SIZE), widths=(4,), depth=1, head="frobenius")
    images, labels = squares(32, 2)
    history = train_lipschitz(
        model, TensorDataset(images, labels), epochs=6, lr=1e-2, batch_size=16, progress=False
    )
    assert sum(history.losses[-3:]) / 3 < sum(history.losses[:3]) / 3 - 0.05


def test_the_papers_lambda_maps_to_torchlips_alpha() -> None:
    assert alpha_from_lambda(500) == pytest.approx(500 / 501)
    logits, labels = torch.tensor([[0.3]]), torch.tensor([1])
    # alpha = 1: hinge only, relu(m/2 - y f) = relu(0.5 - 0.3)
    assert float(hkr_loss(1, alpha=1.0, min_margin=1.0)(logits, labels)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha_from_lambda"):
        hkr_loss(3, alpha=500.0)


def test_export_gives_identical_outputs_and_leaves_the_model_as_found() -> None:
    torch.manual_seed(0)
    model = lipschitz_classifier(3, input_size=(SIZE, SIZE), widths=(4,), depth=2, hidden=(8,))
    images, labels = squares(16, 3)
    train_lipschitz(model, TensorDataset(images, labels), epochs=1, batch_size=8, progress=False)
    plain = export_lipschitz(model)
    assert isinstance(model.network[0], SpectralConv2d)
    assert type(plain.network[0]) is nn.Conv2d and not any(
        hasattr(module, "parametrizations") for module in plain.modules()
    )
    assert torch.allclose(plain(images), model(images), atol=1e-6)


def test_model_files_round_trip_trained_and_exported_models(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = lipschitz_classifier(
        2, input_size=(SIZE, SIZE), widths=(4,), depth=1, class_names=["left", "right"]
    )
    images, labels = squares(16, 2)
    train_lipschitz(model, TensorDataset(images, labels), epochs=1, batch_size=8, progress=False)
    for candidate, name in ((model, "trained.pt"), (export_lipschitz(model), "plain.pt")):
        loaded = models.load(str(models.save(candidate, tmp_path / name)))
        assert torch.equal(loaded(images), candidate(images))
        assert loaded.class_names == ["left", "right"] and not loaded.training


def test_model_files_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read"):
        models.load(str(tmp_path / "corrupt.pt"))
    torch.save({"weight": torch.zeros(1)}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="not a spyglass model file"):
        models.load(str(tmp_path / "state.pt"))
    model = lipschitz_classifier(2, input_size=(SIZE, SIZE), widths=(4,), depth=1)
    path = models.save(model, tmp_path / "model.pt")
    content = torch.load(path, weights_only=True)
    content["spec"]["builder"] = "os.system"
    torch.save(content, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="does not know"):
        models.load(str(tmp_path / "foreign.pt"))
    content["spec"]["builder"] = "lipschitz_classifier"
    content["spec"]["arguments"]["widths"] = [6]
    torch.save(content, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not fit"):
        models.load(str(tmp_path / "mismatch.pt"))
    with pytest.raises(ValueError, match="does not exist"):
        models.load(str(tmp_path / "missing.pt"))
    with pytest.raises(TypeError, match="no builder spec"):
        models.save(wrap(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), 2), tmp_path / "x.pt")


# ------------------------------------------------------------------ the OT counterfactual


def test_the_counterfactual_of_a_unit_linear_score_is_on_its_boundary() -> None:
    layer = linear_with_singular_values([1.0])  # f(x) = w·(x - 0.5) + b with ‖w‖ = 1
    model = wrap(nn.Sequential(nn.Flatten(), layer), 1)
    result = ot_counterfactual(model, torch.rand(4, 3, 4, 4))
    assert result.scores.abs().min() > 1e-3
    assert result.scores_after.abs().max() < 1e-5
    with torch.no_grad():  # ‖w‖ = 2: f(x') = f(x)(1 - 4), the formula, not a search
        layer.weight.mul_(2.0)
    result = ot_counterfactual(model, torch.rand(4, 3, 4, 4))
    assert torch.allclose(result.scores_after, -3.0 * result.scores, atol=1e-5)


def test_the_multiclass_counterfactual_lands_on_the_margin_of_the_runner_up() -> None:
    # Rows orthonormal / √2: every difference of two rows has norm 1.
    layer = linear_with_singular_values([2**-0.5] * 3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.0, 0.1, -0.1]))
    model = wrap(nn.Sequential(nn.Flatten(), layer), 3)
    images = torch.rand(5, 3, 4, 4)
    logits = model(images).detach()
    result = ot_counterfactual(model, images)
    assert torch.equal(result.classes, logits.argmax(1))
    assert torch.equal(result.rivals, logits.topk(2, dim=1).indices[:, 1])
    assert result.scores_after.abs().max() < 1e-5


def test_the_counterfactual_of_a_trained_binary_otnn_is_on_its_boundary() -> None:
    torch.manual_seed(0)
    images, labels = squares(64, 2)
    dense = lipschitz_classifier(1, input_size=(SIZE, SIZE), widths=(), hidden=(32,))
    train_lipschitz(
        dense,
        TensorDataset(images, labels),
        epochs=15,
        lr=1e-2,
        batch_size=16,
        alpha=0.9,
        min_margin=0.5,
        progress=False,
    )
    assert ((dense(images)[:, 0] > 0).long() == labels).all()
    result = ot_counterfactual(dense, images)
    assert result.scores.abs().min() > 0.5
    # Prop. 2: f(x') = 0; the dense network's gradient has norm 1, so it gets there.
    assert (result.scores_after.abs() / result.scores.abs()).max() < 1e-4
    # A convolutional one has ‖∇f‖ < 1 and stops short, at about f(x)(1 - ‖∇f‖²).
    conv = lipschitz_classifier(1, input_size=(SIZE, SIZE), widths=(4, 8), depth=1)
    train_lipschitz(
        conv,
        TensorDataset(images, labels),
        epochs=15,
        lr=1e-2,
        batch_size=16,
        alpha=0.9,
        min_margin=0.5,
        progress=False,
    )
    result = ot_counterfactual(conv, images)
    norms = result.gradient_norms
    assert bool((norms < 1).all()) and bool((norms > 0.5).all())
    shrink = result.scores_after / result.scores
    assert bool((shrink > 0).all()) and bool((shrink < 0.5).all())
    assert torch.allclose(shrink, 1 - norms**2, atol=0.15)


# ------------------------------------------------------------------ bad input


def test_bad_arguments_are_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="even"):
        lipschitz_classifier(3, widths=(5,))
    with pytest.raises(ValueError, match="divisible"):
        lipschitz_classifier(3, input_size=(18, 18), widths=(4, 8))
    with pytest.raises(ValueError, match="head"):
        lipschitz_classifier(3, head="orthogonal")
    model = lipschitz_classifier(2, input_size=(SIZE, SIZE), widths=(4,), depth=1)
    with pytest.raises(ValueError, match="class indices"):
        train_lipschitz(
            model, TensorDataset(*squares(8, 2)[:1], torch.full((8,), 5)), batch_size=8, progress=False
        )
    with pytest.raises(ValueError, match="targets"):
        ot_counterfactual(model, torch.rand(2, 3, SIZE, SIZE), targets=torch.tensor([0, 7]))
    with pytest.raises(ValueError):
        lipschitz_constant(model, torch.rand(2, 3, SIZE, SIZE) + 2)


def test_methods_that_split_the_model_work_on_a_1_lipschitz_network() -> None:
    from spyglass import attributions

    model = lipschitz_classifier(3, input_size=(SIZE, SIZE), widths=(4, 8), depth=1)
    images = torch.rand(2, 3, SIZE, SIZE)
    traced = models.trace(model)
    assert torch.equal(traced(images), model(images))
    for plain in (model, export_lipschitz(model)):
        maps = attributions.create("gradcam", plain)(images, torch.tensor([0, 2]))
        assert maps.shape == (2, SIZE, SIZE) and bool(torch.isfinite(maps).all())
