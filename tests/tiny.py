"""The tiny models of the test suite, each with what is known about it by hand.

One module for all of them (fixtures in ``tests/conftest.py``): a family's tests reach for
the model whose truth they need, and a new family finds them here rather than writing a
fifth.

- :func:`tiny_model`: a small CNN with batch norm (32 px, 5 classes), the registry-wide
  attribution and metric tests; :func:`tiny_cnn` its network alone with named layers.
- :func:`pixel_sum_model`: a weighted pixel sum whose exact attributions are its weights.
- :func:`block_reader`: a model that reads only :data:`BLOCK` of a 32 px image; the truth
  check of every attribution method.
- :class:`TinyNet` and :func:`block_images`: planted concepts, for CRAFT.
- :func:`colour_model`: logits ``[r̄, ḡ, r̄ + ḡ]`` with named layers, for feature
  visualization.
- :class:`ResidualNet`, :class:`TupleNet`, :class:`GatedNet`: a run-time constant and a
  training-only branch, a tuple output, untraceable control flow; for the models tests.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from spyglass.models import VisionModel

__all__ = [
    "BLOCK",
    "N_FEATURES",
    "Block",
    "GatedNet",
    "PixelSum",
    "ResidualNet",
    "TinyNet",
    "TupleNet",
    "block_images",
    "block_mask",
    "block_reader",
    "colour_model",
    "colour_network",
    "pixel_sum_model",
    "tinted_images",
    "tiny_cnn",
    "tiny_images",
    "tiny_model",
]


# --- the registry-wide model -----------------------------------------------------------------


def _tiny_layers() -> list[tuple[str, nn.Module]]:
    torch.manual_seed(0)
    return [
        ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
        ("bn", nn.BatchNorm2d(8)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 8, 3, padding=1, stride=2)),
        ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flat", nn.Flatten()),
        ("fc", nn.Linear(8, 5)),
    ]


def tiny_cnn() -> nn.Sequential:
    """:func:`tiny_model`'s network alone, with named layers, in train mode.

    32 px in: conv1 (8, 32, 32) → bn → relu1 → conv2 stride 2 (8, 16, 16) → relu2 → pool →
    flat (8,) → fc (5,).
    """
    return nn.Sequential(OrderedDict(_tiny_layers()))


def tiny_model(*, named_layers: bool = False) -> VisionModel:
    """A small CNN with batch norm, ReLUs and a residual-free head (32 px, 5 classes).

    Its layers are ``0`` … ``7`` (``conv1`` … ``fc`` with ``named_layers``: the same weights).
    """
    layers = _tiny_layers()
    network = nn.Sequential(OrderedDict(layers)) if named_layers else nn.Sequential(*(m for _, m in layers))
    model = VisionModel(
        network,
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=[f"c{i}" for i in range(5)],
        name="tiny",
    )
    with torch.no_grad():  # non-trivial running statistics, so eval and train modes differ
        model.network[1].running_mean.uniform_(-0.5, 0.5)
        model.network[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def tiny_images(n: int = 5, *, seed: int = 1) -> torch.Tensor:
    """``n`` seeded random 32 px images in [0, 1]."""
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def tinted_images(n: int, *, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tinted 32 px images, labelled by :func:`tiny_model` itself.

    Two or three classes that a fresh classifier head can learn again (MeGe, ReCo, training).
    """
    generator = torch.Generator().manual_seed(seed)
    images = (
        torch.rand(n, 3, 1, 1, generator=generator) * 0.8
        + torch.rand(n, 3, 32, 32, generator=generator) * 0.2
    )
    with torch.no_grad():
        labels = tiny_model()(images).argmax(1)
    return images, labels


# --- known attributions: a weighted pixel sum ------------------------------------------------


class PixelSum(nn.Module):
    """``f(x) = Σ_p w_p · Σ_c x_{c,p}``: one logit, a known weight per pixel."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.sum(dim=1) * self.weights).flatten(1).sum(dim=1, keepdim=True)


def pixel_sum_model(weights: torch.Tensor) -> VisionModel:
    """The weighted pixel sum behind a wrapper that does not change the pixels (mean 0, std 1)."""
    size = tuple(weights.shape)
    return VisionModel(
        PixelSum(weights), input_size=size, mean=(0, 0, 0), std=(1, 1, 1), class_names=["f"]
    ).eval()


# --- the truth check: a model that reads one block -------------------------------------------

# Rows 8-15, columns 16-23 of a 32 px image: 1/16 of it, one cell of a 4 × 4 grid, and off the
# diagonal, so that a transposed or flipped map puts its mass elsewhere.
BLOCK = (slice(8, 16), slice(16, 24))


def block_mask(size: int = 32) -> torch.Tensor:
    """``(size, size)`` booleans, true on :data:`BLOCK`."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[BLOCK] = True
    return mask


class KeepBlock(nn.Module):
    """Zero every pixel outside :data:`BLOCK`: what follows sees the block only."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.register_buffer("mask", block_mask(size).float()[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def block_reader() -> VisionModel:
    """Logits that depend on the pixels of :data:`BLOCK` only (32 px, 5 classes).

    ``KeepBlock → conv 1×1 → ReLU → conv 1×1 → ReLU → global average → linear``, without
    convolution biases: the gradient of every logit is exactly zero outside the block, and
    so is every activation of the convolutional feature maps, which keep the image's full
    resolution, so a CAM method sees the same locality as a gradient method (and Guided
    Backprop its ``nn.ReLU`` modules). The logits are nonlinear in the block's pixels.
    """
    generator = torch.Generator().manual_seed(0)
    first = nn.Conv2d(3, 8, kernel_size=1, bias=False)
    second = nn.Conv2d(8, 8, kernel_size=1, bias=False)
    head = nn.Linear(8, 5)
    with torch.no_grad():
        first.weight.copy_(torch.randn(first.weight.shape, generator=generator))
        second.weight.copy_(torch.randn(second.weight.shape, generator=generator) / 2)
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator))
        head.bias.zero_()
    network = nn.Sequential(
        OrderedDict(
            block=KeepBlock(),
            conv1=first,
            relu1=nn.ReLU(),
            conv2=second,
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=head,
        )
    )
    return VisionModel(
        network,
        input_size=(32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=[f"c{i}" for i in range(5)],
        name="block_reader",
    ).eval()


# --- planted concepts, for CRAFT -------------------------------------------------------------

N_FEATURES = 6


class TinyNet(nn.Module):
    """``conv1x1 → ReLU → conv1x1 (stride 2) → ReLU → GAP → linear``, wired colour by colour.

    The convolution weights are non-negative and have no bias: on images in ``[0, 1]``
    both ReLUs pass everything, so the activation of every position at ``relu2`` is
    ``x_pixel M`` with ``M = (M2 M1)ᵀ`` ``(3, p)`` (:meth:`planted_bank`). An image of
    uniform 8 × 8 blocks of colour (:func:`block_images`) therefore has crops (8 px, on
    the block grid) whose averaged activations are exactly ``colour @ M``: a rank-3
    non-negative matrix with the planted concept bank ``M``. And ``h`` (GAP → linear) is
    affine, which makes the importance of a concept computable by hand.
    """

    def __init__(self, *, signed: bool = False, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 5, kernel_size=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(5, N_FEATURES, kernel_size=1, stride=2, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(N_FEATURES, 4)
        with torch.no_grad():
            # Hidden unit k sees colour k % 3 only; feature f only units of colour f // 2. The
            # planted concepts (one per colour) then have disjoint supports: NMF is unique.
            colour_of_unit, colour_of_feature = torch.arange(5) % 3, torch.arange(N_FEATURES) // 2
            first = F.one_hot(colour_of_unit, 3).float() * (0.5 + torch.rand(5, 1, generator=generator))
            self.conv1.weight.copy_(first[:, :, None, None])
            wiring = (colour_of_feature[:, None] == colour_of_unit[None, :]).float()
            second = wiring * (0.5 + torch.rand(N_FEATURES, 5, generator=generator))
            self.conv2.weight.copy_((second - 0.5 if signed else second)[:, :, None, None])
            self.fc.weight.copy_(torch.randn(4, N_FEATURES, generator=generator))
            self.fc.bias.copy_(torch.randn(4, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))

    def planted_bank(self) -> torch.Tensor:
        """``M`` ``(3, p)``: the activation at ``relu2`` of a pixel of colour ``c`` is ``c @ M``."""
        m1, m2 = self.conv1.weight[:, :, 0, 0], self.conv2.weight[:, :, 0, 0]
        return (m2 @ m1).T.detach()


def block_images(n: int, *, seed: int = 0, block: int = 8, size: int = 32) -> torch.Tensor:
    """Images of uniform ``block`` × ``block`` squares, each a sparse non-negative mix of R, G, B."""
    generator = torch.Generator().manual_seed(seed)
    cells = size // block
    colours = torch.rand(n, 3, cells, cells, generator=generator)
    colours = colours * (torch.rand(n, 3, cells, cells, generator=generator) < 0.6)
    return colours.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)


# --- known activations, for feature visualization --------------------------------------------


def colour_network() -> nn.Sequential:
    """conv: channel 0 = red, channel 1 = green (1×1, no bias); logits = [r̄, ḡ, r̄ + ḡ]."""
    conv = nn.Conv2d(3, 2, kernel_size=1, bias=False)
    fc = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    return nn.Sequential(
        OrderedDict(
            conv=conv,
            bn=nn.BatchNorm2d(2),  # identity in eval mode: running mean 0, var 1
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=fc,
        )
    )


def colour_model(input_size: int = 16) -> VisionModel:
    """:func:`colour_network` as a VisionModel that does not change the pixels (mean 0, std 1)."""
    return VisionModel(
        colour_network(),
        input_size=(input_size, input_size),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        class_names=["red", "green", "both"],
        name="tiny",
    )


# --- tracing, layer lookup, probing and hooks: graphs with known shapes ---------------------


class Block(nn.Module):
    """A residual block: conv → relu, plus its input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(x))


class ResidualNet(nn.Module):
    """Residual blocks, a tensor constant made in ``forward`` and a training-only branch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A constant created at run time: fx stores it as an attribute of the traced module.
        shift = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
        features = self.blocks(self.stem(x + shift))
        if self.training:  # the traced graph must follow the eval branch
            features = features * 0.0
        return self.head(features.mean(dim=(2, 3)))


class Pair(nn.Module):
    """Returns a tuple: (its input doubled, its input's channel means)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2 * x, x.mean(dim=(2, 3))


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.pair = Pair()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        doubled, means = self.pair(self.conv(x))
        return self.head(means) + doubled.mean()


class Gate(nn.Module):
    """Data-dependent control flow: symbolic tracing cannot follow it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class GatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 2, 1)
        self.gate = Gate()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.conv(x)).mean(dim=(2, 3)))
