"""Each bound rule against a slow float64 reference written neuron by neuron, with loops.

IBP of an affine neuron ``y = b + Σ w_i x_i`` over a box is ``b + Σ (w⁺ l + w⁻ u)`` below
and ``b + Σ (w⁺ u + w⁻ l)`` above: the references compute that per output neuron, from
the weights and the input window the neuron reads, with no convolution routine.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass import models
from spyglass.bounds import interval_bounds, linear_bounds
from spyglass.bounds._activations import _CURVATURE, clamp, leaky_relu, smooth

D = torch.float64


def _box(shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centre = torch.randn(shape, generator=generator, dtype=D)
    radius = torch.rand(shape, generator=generator, dtype=D) * 0.7
    return centre - radius, centre + radius


def _neuron(weights: list[float], lows: list[float], highs: list[float], bias: float) -> tuple[float, float]:
    low = high = bias
    for w, a, b in zip(weights, lows, highs, strict=True):
        low += w * a if w >= 0 else w * b
        high += w * b if w >= 0 else w * a
    return low, high


def _conv_reference(
    conv: nn.Conv2d, lower: Tensor, upper: Tensor, pads: tuple[int, int, int, int]
) -> tuple[Tensor, Tensor]:
    """Per output neuron: the window it reads (zero outside the padded input) and its weights."""
    left, right, top, bottom = pads
    n, c_in, h, w = lower.shape
    sh, sw = conv.stride
    dh, dw = conv.dilation
    kh, kw = conv.kernel_size
    groups = conv.groups
    c_out = conv.out_channels
    per_group_in, per_group_out = c_in // groups, c_out // groups
    out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    low = torch.zeros(n, c_out, out_h, out_w, dtype=D)
    high = torch.zeros_like(low)
    weight = conv.weight.detach()
    for b in range(n):
        for o in range(c_out):
            group = o // per_group_out
            for i in range(out_h):
                for j in range(out_w):
                    ws, ls, us = [], [], []
                    for ci in range(per_group_in):
                        channel = group * per_group_in + ci
                        for p in range(kh):
                            for q in range(kw):
                                row = i * sh + p * dh - top
                                col = j * sw + q * dw - left
                                inside = 0 <= row < h and 0 <= col < w
                                ws.append(float(weight[o, ci, p, q]))
                                ls.append(float(lower[b, channel, row, col]) if inside else 0.0)
                                us.append(float(upper[b, channel, row, col]) if inside else 0.0)
                    bias = 0.0 if conv.bias is None else float(conv.bias.detach()[o])
                    low[b, o, i, j], high[b, o, i, j] = _neuron(ws, ls, us, bias)
    return low, high


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups", "bias"),
    [(1, 0, 1, 1, True), (2, 1, 1, 1, False), (1, 2, 2, 2, True), (2, 1, 1, 4, True), (1, 1, 1, 4, False)],
)
def test_conv2d_matches_a_per_neuron_reference(
    stride: int, padding: int, dilation: int, groups: int, bias: bool
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(
        4, 4, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias
    ).double()
    lower, upper = _box((2, 4, 7, 6))
    got = interval_bounds(conv, lower, upper)
    expected = _conv_reference(conv, lower, upper, (padding,) * 4)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_timm_same_padding_convolution_matches_a_per_neuron_reference() -> None:
    """timm's Conv2dSame pads by TF's rule: ``max((⌈h/s⌉ - 1) s + (k - 1) d + 1 - h, 0)``, less on top."""
    from timm.layers import Conv2dSame

    torch.manual_seed(1)
    conv = Conv2dSame(3, 5, 3, stride=2).double()
    lower, upper = _box((1, 3, 8, 7))

    def pad(size: int) -> tuple[int, int]:
        total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
        return total // 2, total - total // 2

    (top, bottom), (left, right) = pad(8), pad(7)
    expected = _conv_reference(conv, lower, upper, (left, right, top, bottom))
    torch.testing.assert_close(interval_bounds(conv, lower, upper), expected, rtol=0, atol=1e-12)


def test_linear_matches_a_per_neuron_reference() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(5, 3).double()
    lower, upper = _box((2, 5))
    low, high = interval_bounds(layer, lower, upper)
    for b in range(2):
        for o in range(3):
            expected = _neuron(
                layer.weight[o].tolist(), lower[b].tolist(), upper[b].tolist(), float(layer.bias.detach()[o])
            )
            assert (float(low[b, o]), float(high[b, o])) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dims", [1, 2])
def test_batch_norm_in_eval_mode_matches_a_per_channel_reference(dims: int) -> None:
    torch.manual_seed(3)
    norm = (nn.BatchNorm1d(3) if dims == 1 else nn.BatchNorm2d(3)).double()
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.2, 2)
        norm.weight.copy_(torch.tensor([1.5, -0.5, 0.0]))  # a negative scale swaps the bounds
        norm.bias.uniform_(-1, 1)
    norm.train()  # bounded as its eval-mode function, whatever its mode
    shape = (2, 3) if dims == 1 else (2, 3, 2, 2)
    lower, upper = _box(shape)
    low, high = interval_bounds(norm, lower, upper)
    for index in torch.cartesian_prod(*[torch.arange(s) for s in shape]).tolist():
        c = index[1]
        scale = float(norm.weight.detach()[c]) / math.sqrt(float(norm.running_var[c]) + norm.eps)
        shift = float(norm.bias.detach()[c]) - float(norm.running_mean[c]) * scale
        expected = _neuron([scale], [float(lower[tuple(index)])], [float(upper[tuple(index)])], shift)
        assert (float(low[tuple(index)]), float(high[tuple(index)])) == pytest.approx(expected, abs=1e-12)
    assert norm.training


def test_pooling_matches_window_references() -> None:
    lower, upper = _box((1, 2, 5, 5))
    max_low, max_high = interval_bounds(nn.MaxPool2d(2, stride=2, padding=1), lower, upper)
    avg_low, avg_high = interval_bounds(nn.AvgPool2d(3, stride=2), lower, upper)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                rows = [r for r in range(2 * i - 1, 2 * i + 1) if 0 <= r < 5]
                cols = [q for q in range(2 * j - 1, 2 * j + 1) if 0 <= q < 5]
                window_low = [float(lower[0, c, r, q]) for r in rows for q in cols]
                window_high = [float(upper[0, c, r, q]) for r in rows for q in cols]
                assert float(max_low[0, c, i, j]) == max(window_low)
                assert float(max_high[0, c, i, j]) == max(window_high)
        for i in range(2):
            for j in range(2):
                cells = [(2 * i + p, 2 * j + q) for p in range(3) for q in range(3)]
                assert float(avg_low[0, c, i, j]) == pytest.approx(
                    sum(float(lower[0, c, r, q]) for r, q in cells) / 9
                )
                assert float(avg_high[0, c, i, j]) == pytest.approx(
                    sum(float(upper[0, c, r, q]) for r, q in cells) / 9
                )
    adaptive = interval_bounds(nn.AdaptiveAvgPool2d(1), lower, upper)
    torch.testing.assert_close(adaptive[0][..., 0, 0], lower.mean((2, 3)))
    adaptive_max = interval_bounds(nn.AdaptiveMaxPool2d(1), lower, upper)
    torch.testing.assert_close(adaptive_max[1][..., 0, 0], upper.amax((2, 3)))


def test_vision_model_normalisation_is_bounded_per_channel() -> None:
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    # A VisionModel returns logits (N, classes): the flattened normalised pixels are its "logits".
    model = models.VisionModel(
        nn.Flatten(), mean=mean, std=std, input_size=(4, 4), class_names=[str(i) for i in range(48)]
    ).double()
    lower = torch.rand(1, 3, 4, 4, dtype=D) * 0.5
    upper = lower + 0.3
    low, high = (bound.view(1, 3, 4, 4) for bound in interval_bounds(model, lower, upper))
    for c in range(3):
        torch.testing.assert_close(low[0, c], (lower[0, c] - mean[c]) / std[c])
        torch.testing.assert_close(high[0, c], (upper[0, c] - mean[c]) / std[c])


ACTIVATIONS = {
    "relu": (nn.ReLU(), clamp(0.0, None)),
    "relu6": (nn.ReLU6(), clamp(0.0, 6.0)),
    "leaky": (nn.LeakyReLU(0.1), leaky_relu(0.1)),
    "leaky_negative": (nn.LeakyReLU(-0.5), leaky_relu(-0.5)),  # not monotone: the kink is the minimum
    "sigmoid": (nn.Sigmoid(), smooth("sigmoid")),
    "tanh": (nn.Tanh(), smooth("tanh")),
    "silu": (nn.SiLU(), smooth("silu")),
    "gelu": (nn.GELU(), smooth("gelu")),
    "gelu_tanh": (nn.GELU(approximate="tanh"), smooth("gelu_tanh")),
}


def _intervals() -> tuple[Tensor, Tensor]:
    # Intervals left of, right of and across every kink and minimum, and near-points.
    ends = torch.tensor([-8.0, -3.0, -1.3, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 5.5, 6.5, 9.0], dtype=D)
    low, high = torch.meshgrid(ends, ends, indexing="ij")
    keep = low <= high
    low, high = low[keep], high[keep]
    return torch.cat([low, torch.tensor([0.5, -1.0], dtype=D)]), torch.cat(
        [high, torch.tensor([0.5 + 1e-9, -1.0], dtype=D)]
    )


def _dense(low: Tensor, high: Tensor, points: int = 4001) -> Tensor:
    steps = torch.linspace(0, 1, points, dtype=D).unsqueeze(1)
    return low + steps * (high - low)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_interval_matches_a_dense_scan(name: str) -> None:
    module, _ = ACTIVATIONS[name]
    low, high = _intervals()
    got_low, got_high = interval_bounds(module, low.unsqueeze(0), high.unsqueeze(0))
    values = module(_dense(low, high))
    # Exact up to the scan's resolution, and never inside the scanned range.
    assert (got_low[0] <= values.amin(0) + 1e-12).all()
    assert (got_high[0] >= values.amax(0) - 1e-12).all()
    # Between scan points f moves by at most sup|f'| (< 1.2 for all of these) times the step.
    resolution = 1.2 * (high - low) / 4000 + 1e-12
    assert (values.amin(0) - got_low[0] <= resolution).all()
    assert (got_high[0] - values.amax(0) <= resolution).all()


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_relaxation_lines_enclose_the_function(name: str) -> None:
    module, activation = ACTIVATIONS[name]
    low, high = _intervals()
    a_l, b_l, a_u, b_u = activation.relaxation(low, high)
    x = _dense(low, high)
    values = module(x)
    assert (a_l * x + b_l <= values + 1e-12).all()
    assert (a_u * x + b_u >= values - 1e-12).all()
    # Tight: each line touches the function to within the grid's margin on a wide interval.
    gap_low = (values - (a_l * x + b_l)).amin(0)
    gap_high = ((a_u * x + b_u) - values).amin(0)
    assert (gap_low < 1e-3 * (1 + high - low) ** 2).all()
    assert (gap_high < 1e-3 * (1 + high - low) ** 2).all()


def test_relu_relaxation_is_the_triangle_with_the_adaptive_lower_slope() -> None:
    low = torch.tensor([-1.0, -2.0, -3.0, 1.0, -4.0], dtype=D)
    high = torch.tensor([2.0, 1.0, 3.5, 2.0, -1.0], dtype=D)
    a_l, b_l, a_u, b_u = clamp(0.0, None).relaxation(low, high)
    torch.testing.assert_close(a_l, torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=D))
    torch.testing.assert_close(b_l, torch.zeros(5, dtype=D))
    torch.testing.assert_close(a_u[:3], high[:3] / (high[:3] - low[:3]))
    torch.testing.assert_close(b_u[:3], -low[:3] * high[:3] / (high[:3] - low[:3]))
    torch.testing.assert_close(a_u[3:], torch.tensor([1.0, 0.0], dtype=D))  # stable: exact lines
    torch.testing.assert_close(b_u[3:], torch.zeros(2, dtype=D))


@pytest.mark.parametrize("name", list(_CURVATURE))
def test_curvature_constants_bound_the_second_derivative(name: str) -> None:
    function = smooth(name).function
    x = torch.linspace(-12, 12, 240001, dtype=D)
    h = x[1] - x[0]
    second = (function(x[2:]) - 2 * function(x[1:-1]) + function(x[:-2])) / h**2
    assert float(second.abs().max()) <= _CURVATURE[name]
    assert float(second.abs().max()) >= 0.95 * _CURVATURE[name]  # and not wastefully large


def test_reshapes_concatenation_padding_and_constants_follow_their_reference() -> None:
    class Mixed(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            y = F.pad(x, (1, 0, 0, 2), value=0.5)
            z = torch.cat([y, -2 * y + 1], dim=1)
            z = z.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return z / 4 - 1

    lower, upper = _box((2, 1, 2, 2))
    low, high = interval_bounds(Mixed(), lower, upper)
    y_low, y_high = F.pad(lower, (1, 0, 0, 2), value=0.5), F.pad(upper, (1, 0, 0, 2), value=0.5)
    z_low = torch.cat([y_low, -2 * y_high + 1], 1).permute(0, 2, 3, 1).reshape(2, -1) / 4 - 1
    z_high = torch.cat([y_high, -2 * y_low + 1], 1).permute(0, 2, 3, 1).reshape(2, -1) / 4 - 1
    torch.testing.assert_close(low, z_low)
    torch.testing.assert_close(high, z_high)


def test_crown_through_an_affine_layer_is_its_exact_range() -> None:
    """One Linear: CROWN's bound is w⁺ l + w⁻ u per neuron, the exact range (as the reference)."""
    torch.manual_seed(4)
    layer = nn.Linear(4, 3).double()
    lower, upper = _box((1, 4))
    low, high = linear_bounds(layer, lower, upper)
    for o in range(3):
        expected = _neuron(
            layer.weight[o].tolist(), lower[0].tolist(), upper[0].tolist(), float(layer.bias.detach()[o])
        )
        assert (float(low[0, o]), float(high[0, o])) == pytest.approx(expected, abs=1e-12)


def test_timm_same_padding_pools_match_window_references() -> None:
    """MaxPool2dSame pads with -inf, AvgPool2dSame with zeros (counted): 5 px, k 3, s 2 → one each side."""
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    lower, upper = _box((1, 2, 5, 5), seed=3)
    max_low, max_high = interval_bounds(MaxPool2dSame(3, stride=2), lower, upper)
    avg_low, avg_high = interval_bounds(AvgPool2dSame(3, stride=2), lower, upper)
    for c in range(2):
        for i in range(3):
            for j in range(3):
                cells = [(r, q) for r in range(2 * i - 1, 2 * i + 2) for q in range(2 * j - 1, 2 * j + 2)]
                inside = [(r, q) for r, q in cells if 0 <= r < 5 and 0 <= q < 5]
                assert float(max_low[0, c, i, j]) == max(float(lower[0, c, r, q]) for r, q in inside)
                assert float(max_high[0, c, i, j]) == max(float(upper[0, c, r, q]) for r, q in inside)
                total_low = sum(float(lower[0, c, r, q]) for r, q in inside)
                total_high = sum(float(upper[0, c, r, q]) for r, q in inside)
                assert float(avg_low[0, c, i, j]) == pytest.approx(total_low / 9)
                assert float(avg_high[0, c, i, j]) == pytest.approx(total_high / 9)
