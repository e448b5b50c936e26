"""Soundness and tightness: random networks of every supported operation, random boxes.

Every sampled input (and random corners of the box) must map inside the bounds, for IBP
and CROWN, with and without a spec; CROWN ∩ IBP is never looser than IBP; on networks
whose exact range is known (affine, one input), the bounds are that range.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from spyglass import models
from spyglass.bounds import interval_bounds, layer_bounds, linear_bounds
from spyglass.bounds.linear import _crown

D = torch.float64
CHANNELS = 3
SIZE = 6
ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky": lambda: nn.LeakyReLU(0.2),
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
OPERATIONS = [
    "conv",
    "depthwise",
    "dilated",
    "batchnorm",
    *ACTIVATIONS,
    "maxpool",
    "avgpool",
    "residual",
    "concat",
    "pad",
    "same",
    "scale",
]


class RandomNet(nn.Module):
    """A stack of the named operations on (N, 3, 6, 6) inputs, then a head to 3 logits."""

    def __init__(self, operations: list[str], head: str, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.operations = operations
        self.head = head
        self.layers = nn.ModuleList()
        for name in operations:
            self.layers.append(self._layer(name))
        self.pool = nn.AdaptiveAvgPool2d(2) if head == "pool" else nn.AdaptiveMaxPool2d(2)
        self.linear = nn.Linear(CHANNELS * 4, 3)
        self.double().eval()

    @staticmethod
    def _layer(name: str) -> nn.Module:
        c = CHANNELS
        if name == "conv":
            return nn.Conv2d(c, c, 3, padding=1)
        if name == "depthwise":
            return nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        if name == "dilated":
            return nn.Conv2d(c, c, 3, padding=2, dilation=2, padding_mode="reflect")
        if name == "batchnorm":
            norm = nn.BatchNorm2d(c)
            with torch.no_grad():
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.3, 2.0)
                norm.weight.uniform_(-1.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
            return norm
        if name in ACTIVATIONS:
            return ACTIVATIONS[name]()
        if name == "maxpool":
            return nn.MaxPool2d(3, stride=1, padding=1)
        if name == "avgpool":
            return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        if name in ("residual", "concat"):
            return nn.Conv2d(
                c if name == "residual" else 2 * c, c, 3 if name == "residual" else 1, padding="same"
            )
        if name == "pad":
            return nn.Conv2d(c, c, 3)
        if name == "same":
            from timm.layers import Conv2dSame

            return Conv2dSame(c, c, 2, stride=1)
        return nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for name, layer in zip(self.operations, self.layers, strict=True):
            if name == "residual":
                x = x + layer(torch.relu(x))
            elif name == "concat":
                x = layer(torch.cat([x, -0.5 * x], dim=1))
            elif name == "pad":
                x = layer(F.pad(x, (1, 1, 1, 1), value=0.25))
            elif name == "scale":
                x = (x * 1.5 - 0.2) / 2
            else:
                x = layer(x)
        x = self.pool(x)
        if self.head == "mean":
            x = x.mean((2, 3), keepdim=True).expand(-1, -1, 2, 2)
        return self.linear(torch.flatten(x, 1))


def _box(seed: int, radius: float, n: int = 2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, CHANNELS, SIZE, SIZE, generator=generator, dtype=D) * 2 - 1
    return centre - radius, centre + radius


def _samples(lower: Tensor, upper: Tensor, count: int, seed: int) -> Tensor:
    """``count`` points per box: uniform inside, and as many random corners."""
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *lower.shape)
    inside = lower + torch.rand(shape, generator=generator, dtype=D) * (upper - lower)
    corners = torch.where(torch.rand(shape, generator=generator, dtype=D) < 0.5, lower, upper)
    return torch.cat([inside, corners, lower.unsqueeze(0), upper.unsqueeze(0)])


def _inside(values: Tensor, low: Tensor, high: Tensor) -> bool:
    scale = 1e-9 * (1 + values.abs())
    return bool(((values >= low - scale) & (values <= high + scale)).all())


@settings(max_examples=20)
@given(
    operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=4),
    head=st.sampled_from(["pool", "max", "mean"]),
    seed=st.integers(0, 10_000),
    radius=st.floats(0.001, 0.5),
    with_spec=st.booleans(),
)
def test_every_sampled_input_maps_inside_the_bounds(
    operations: list[str], head: str, seed: int, radius: float, with_spec: bool
) -> None:
    model = RandomNet(operations, head, seed)
    lower, upper = _box(seed, radius)
    spec = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed), dtype=D) if with_spec else None
    points = _samples(lower, upper, 64, seed)
    with torch.no_grad():
        outputs = model(points.flatten(0, 1)).unflatten(0, points.shape[:2])
    if spec is not None:
        outputs = outputs @ spec.T
    ibp = interval_bounds(model, lower, upper, spec=spec)
    crown = linear_bounds(model, lower, upper, spec)
    crown_ibp = linear_bounds(model, lower, upper, spec, intermediate="ibp")
    for low, high in (ibp, crown, crown_ibp):
        assert _inside(outputs, low, high)
    # Intersected with IBP at every op and at the output: never looser than IBP.
    assert (crown[0] >= ibp[0]).all() and (crown[1] <= ibp[1]).all()
    assert (crown_ibp[0] >= ibp[0]).all() and (crown_ibp[1] <= ibp[1]).all()


@settings(max_examples=10)
@given(
    operations=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3).map(lambda ops: [*ops, "same"]),
    seed=st.integers(0, 10_000),
    radius=st.floats(0.01, 0.3),
)
def test_every_layer_bound_holds_the_layer_values(operations: list[str], seed: int, radius: float) -> None:
    model = RandomNet(operations, "pool", seed)
    lower, upper = _box(seed, radius, n=1)
    traced = models.trace(model)
    points = _samples(lower, upper, 32, seed)
    values: dict[str, Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> object:
            result = super().run_node(node)
            if isinstance(result, Tensor):
                values[node.name] = result
            return result

    with torch.no_grad():
        Recorder(traced).run(points.flatten(0, 1))
    for method in ("ibp", "crown"):
        bounds = layer_bounds(model, lower, upper, method=method)
        checked = 0
        for name, (low, high) in bounds.items():
            if name in values:
                assert _inside(values[name], low, high), (method, name)
                checked += 1
        assert checked >= len(operations)


def test_crown_intersected_with_ibp_fixes_the_negated_relu_example() -> None:
    """y = -ReLU(x), x ∈ [-1, 2]: IBP [-2, 0]; CROWN alone [-2, 1]; intersected [-2, 0]."""
    model = nn.Sequential(nn.ReLU(), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        model[1].weight.fill_(-1.0)
    lower, upper = torch.tensor([[-1.0]], dtype=D), torch.tensor([[2.0]], dtype=D)
    assert [t.item() for t in interval_bounds(model, lower, upper)] == [-2.0, 0.0]
    alone = _crown(model, lower, upper, None, "crown", 2**30, intersect=False)[2]
    assert [t.item() for t in alone] == pytest.approx([-2.0, 1.0])
    assert [t.item() for t in linear_bounds(model, lower, upper)] == [-2.0, 0.0]


def test_crown_on_a_one_input_relu_network_matches_a_brute_force_scan() -> None:
    """On 1,000 sub-intervals (one batch), CROWN's extremes converge to the scanned ones.

    On a whole interval with unstable ReLUs CROWN is a relaxation, not the range; on
    narrow sub-intervals almost every ReLU is stable, the rest are relaxed over a width
    of 5e-4, so the bound of the union is within a few Lipschitz constants times that.
    """
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    edges = torch.linspace(-0.3, 0.2, 1001, dtype=D)
    lower, upper = edges[:-1].unsqueeze(1), edges[1:].unsqueeze(1)
    grid = torch.linspace(-0.3, 0.2, 200_001, dtype=D).unsqueeze(1)
    with torch.no_grad():
        values = model(grid)
        lipschitz = float(model(grid[1:]).sub(values[:-1]).abs().max() / (grid[1] - grid[0]))
    low, high = linear_bounds(model, lower, upper)
    step = float(edges[1] - edges[0])
    assert _inside(values, low.amin(0), high.amax(0))
    torch.testing.assert_close(low.amin(0), values.amin(0), rtol=0, atol=lipschitz * step)
    torch.testing.assert_close(high.amax(0), values.amax(0), rtol=0, atol=lipschitz * step)
    # Over the whole interval: sound, and tighter than IBP on this network.
    whole = linear_bounds(model, edges[:1].unsqueeze(1), edges[-1:].unsqueeze(1))
    ibp = interval_bounds(model, edges[:1].unsqueeze(1), edges[-1:].unsqueeze(1))
    assert _inside(values, whole[0], whole[1])
    assert float((whole[1] - whole[0]).sum()) < float((ibp[1] - ibp[0]).sum())


def _exact_affine_range(model: nn.Module, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of an affine model over a box, from its Jacobian split by sign."""
    x = ((lower + upper) / 2)[:1]
    jacobian = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
    with torch.no_grad():
        centre = model((lower + upper) / 2).flatten(1)
    radius = ((upper - lower) / 2).flatten(1)
    spread = radius @ jacobian.abs().T
    return centre - spread, centre + spread


def test_on_an_affine_network_crown_is_the_exact_range() -> None:
    torch.manual_seed(6)
    norm = nn.BatchNorm2d(4)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(-1, 1)
    layers = [nn.Conv2d(CHANNELS, 4, 3, padding=1), norm, nn.AvgPool2d(2), nn.Flatten(), nn.Linear(36, 5)]
    model = nn.Sequential(*layers, nn.Linear(5, 3)).double().eval()
    lower, upper = _box(7, 0.2)
    exact = _exact_affine_range(model, lower, upper)
    torch.testing.assert_close(linear_bounds(model, lower, upper), exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        linear_bounds(model, lower, upper, intermediate="ibp"), exact, rtol=0, atol=1e-10
    )


def test_on_a_single_affine_layer_ibp_is_the_exact_range() -> None:
    """IBP is exact through element-wise affine ops and one mixing layer (not through two)."""
    torch.manual_seed(8)

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(CHANNELS, 4, 3, stride=2)
            self.register_buffer("mean", torch.tensor([0.2, 0.5, -0.1]).view(1, 3, 1, 1))

        def forward(self, x: Tensor) -> Tensor:
            return self.conv((x - self.mean) / -0.5).flatten(1)

    model = Normalised().double()
    lower, upper = _box(9, 0.3)
    torch.testing.assert_close(interval_bounds(model, lower, upper), _exact_affine_range(model, lower, upper))


def test_a_folded_spec_is_at_least_as_tight_as_multiplying_the_logits_box() -> None:
    model = RandomNet(["conv", "relu", "conv", "relu"], "pool", 3)
    lower, upper = _box(3, 0.2)
    spec = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]], dtype=D)
    folded = interval_bounds(model, lower, upper, spec=spec)
    low, high = interval_bounds(model, lower, upper)
    centre, radius = (low + high) / 2, (high - low) / 2
    after = (centre @ spec.T - radius @ spec.abs().T, centre @ spec.T + radius @ spec.abs().T)
    assert (folded[0] >= after[0] - 1e-12).all() and (folded[1] <= after[1] + 1e-12).all()
    assert float((folded[1] - folded[0]).sum()) < float((after[1] - after[0]).sum())
    # A batch of specs, one per sample, gives each sample its own rows.
    batch = torch.stack([spec, spec[[2, 0, 1]]])
    per_sample = interval_bounds(model, lower, upper, spec=batch)
    torch.testing.assert_close(per_sample[0][1], folded[0][1][[2, 0, 1]])
